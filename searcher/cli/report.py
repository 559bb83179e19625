"""``searcher report``: a Markdown report with plots, the evidence for a tuned file."""

from __future__ import annotations

import argparse

from searcher.cli.common import load, study_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher report`` and its options to the commands."""
    p = sub.add_parser("report", help="a Markdown report with plots: the evidence for a tuned file",
                       description="Write, from the storage (no GPU), a Markdown report with "
                       "PNG plots: per batch size vLLM's default, the best of each recorded "
                       "grid, searcher's winner, its speedup (within noise or not), % of the "
                       "physical floor, trials and GPU time.")
    study_args(p, model=False)
    p.add_argument("--device", default=None, help="whose results (default: the spec's GPU)")
    p.add_argument("--grid", action="append", default=[], metavar="FILE.csv",
                   help="a grid recorded by `searcher grid --dataset` (repeat for several)")
    p.add_argument("--out", default=".",
                   help="directory for report-<study>-<device>.md and its PNGs (default: .)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher report``; returns the exit code."""
    from searcher.results.report import build_report, report_command, write_report

    spec, storage = load(args)
    device = args.device or spec.gpu
    from searcher.results.export import output_folder

    report = build_report(spec, storage, device, args.grid, batch_sizes=args.batch_sizes)
    output_folder(args.out)  # made if missing, as compare's and export's
    command = report_command(args.study, storage, device, args.grid, args.out,
                             args.batch_sizes)
    print(write_report(report, args.out, command))
    return 0
