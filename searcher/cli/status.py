"""``searcher status``: what the storage holds for a study, per batch size."""

from __future__ import annotations

import argparse

from searcher.cli.common import load, study_args
from searcher.cli.render import markdown, print_summaries


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher status`` and its options to the commands."""
    p = sub.add_parser("status", help="what the storage holds for a study, per batch size")
    study_args(p)
    p.add_argument("--device", default=None,
                   help="the GPU whose studies to show (default: the spec's GPU)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true",
                     help="the same per batch size as JSON (with the finalists' plan and "
                     "decision)")
    fmt.add_argument("--markdown", action="store_true",
                     help="a Markdown table (for a README or a pull request)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher status``; returns the exit code."""
    from searcher.results.winners import no_stored_study, stored_summaries
    from searcher.store.storage import open_storage

    spec, storage = load(args)
    device = args.device or spec.gpu
    summaries = stored_summaries(spec, storage, device, batch_sizes=args.batch_sizes)
    if all(s is None for s in summaries):
        raise no_stored_study(open_storage(storage, read_only=True), storage, spec, device)
    if args.markdown:
        print(markdown(spec, device, summaries))
        return 0
    print_summaries(spec, device, storage, summaries, args.json)
    return 0
