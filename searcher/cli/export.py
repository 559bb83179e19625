"""``searcher export``: write the vLLM config file of a study's winners."""

from __future__ import annotations

import argparse
import sys

from searcher.cli.common import load, study_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher export`` and its options to the commands."""
    p = sub.add_parser("export", help="write the winners as vLLM's config file",
                       description="Write the best config of every batch size in vLLM's "
                       "file format (E=..,N=..,device_name=...json).")
    study_args(p)
    p.add_argument("--device", default=None,
                   help="the GPU whose results to export (default: the spec's GPU)")
    p.add_argument("--out", default=".", help="directory to write into (default: .)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing file")
    mode.add_argument("--merge", action="store_true",
                      help="update an existing file's batch sizes, keeping its others")
    p.add_argument("--grid", action="store_true",
                   help="export the exhaustive grid's fastest configs (searcher grid) instead "
                   "of the search's winners")
    p.add_argument("--allow-unmeasured", action="store_true",
                   help="write the file even though its results are synthetic (--synthetic) "
                   "or replayed (--replay), not measured on a GPU")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher export``; returns the exit code."""
    from searcher.results.winners import export_study

    spec, storage = load(args)
    done = export_study(spec, storage, args.device or spec.gpu, args.out,
                        overwrite=args.overwrite, merge=args.merge, batch_sizes=args.batch_sizes,
                        kind="grid" if args.grid else "search",
                        allow_unmeasured=args.allow_unmeasured)
    if done.filled:
        print(f"batch sizes not tuned, written with vLLM's default config: "
              f"{', '.join(map(str, done.filled))}", file=sys.stderr)
    if done.all_default:
        print("every batch size of this file is vLLM's default config: vLLM runs the same "
              "with it as without it (no config was shown faster than the default)",
              file=sys.stderr)
    print(done.path)
    return 0
