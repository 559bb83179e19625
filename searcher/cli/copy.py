"""``searcher copy``: copy a storage into the record this version writes."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher copy`` and its options to the commands."""
    p = sub.add_parser("copy", help="copy a storage into the record this version writes",
                       description="Copy every study of a storage into a new one as this "
                       "version writes them (config keys as trial attributes, unmeasured "
                       "proposals PRUNED not FAIL, the objective named, claims in one "
                       "study), e.g. to browse an older storage with optuna-dashboard. The "
                       "copy resumes as the original would; the original is not changed.")
    p.add_argument("--storage", required=True, help="the storage to copy (a URL)")
    p.add_argument("--to", required=True, help="a new storage to write (a URL)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher copy``; returns the exit code."""
    from searcher.store.migrate import copy_storage

    for name in copy_storage(args.storage, args.to):
        print(name)
    return 0
