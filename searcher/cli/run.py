"""``searcher run``: search (or resume) a study's batch sizes, then print its table."""

from __future__ import annotations

import argparse

from searcher.cli.common import (
    AGAINST_HELP, against_configs, check_finalists_share, check_limits, finalists_share_arg, load,
    resolve_against, source_args, source_kwargs, spawn_workers, stored_device, study_args,
    worker_args, worker_index,
)
from searcher.cli.render import print_summaries
from searcher.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher run`` and its options to the commands."""
    p = sub.add_parser("run", help="search the best config of every batch size of a study",
                       description="Run or resume a study: one Optuna study per batch size, "
                       "stored so that a killed run continues where it stopped.")
    study_args(p)
    p.add_argument("--trials-per-m", type=int, default=None,
                   help="override the spec's trial budget per batch size")
    p.add_argument("--time-limit", type=float, default=None,
                   help="override the spec's time budget for this run (seconds)")
    p.add_argument("--against", default=None, metavar="FILE.json|vllm",
                   help="an existing vLLM config file to beat (e.g. the one vLLM ships for "
                   "this shape and GPU): the config it gives each batch size is measured "
                   "first and re-measured among the finalists, so the winner is never "
                   "slower than it side by side" + AGAINST_HELP)
    finalists_share_arg(p)
    source_args(p)
    worker_args(p)
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="live table on stderr (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher run``; returns the exit code."""
    from searcher.tune.run import make_benchmarker
    from searcher.tune.search import SearchOptions, run_search
    from searcher.tune.view import make_view

    spec, storage = load(args, notes=True)
    if args.trials_per_m is not None and args.trials_per_m < 1:
        raise ConfigError(f"--trials-per-m {args.trials_per_m}: must be at least 1")
    check_finalists_share(args)
    check_limits(args)
    # The file for the GPU the results are stored under: the study's, unless
    # --allow-other-gpu measures on another (the only case that opens the GPU here).
    resolve_against(args, spec, stored_device(args, spec) if args.allow_other_gpu else None)
    against = against_configs(spec, args.against)  # a bad file fails before any worker
    code = spawn_workers(args, storage, extra=["--no-live"])
    if code is not None:  # the workers are done: show what the storage holds now
        from searcher.results.winners import stored_summaries

        device = stored_device(args, spec)
        summaries = stored_summaries(spec, storage, device, batch_sizes=args.batch_sizes)
        print_summaries(spec, device, storage, summaries, args.json)
        if code == 130:
            raise KeyboardInterrupt  # stopped on request: say how to resume
        return code
    worker, workers = worker_index(args)
    bencher, device = make_benchmarker(spec, **source_kwargs(args))
    opts = SearchOptions(device=device, storage_url=storage, batch_sizes=args.batch_sizes,
                         trials_per_m=args.trials_per_m, time_limit_s=args.time_limit,
                         worker=worker, workers=workers, against=against,
                         finalists_share=args.finalists_share)
    summaries = run_search(spec, bencher, opts, view=make_view(args.live))
    if args.worker is None:
        print_summaries(spec, device, storage, summaries, args.json)
    return 0
