"""``searcher grid``: measure the exhaustive grid of a study's space (the baseline)."""

from __future__ import annotations

import argparse

from searcher.cli.common import (
    check_limits, load, rich_console, source_args, source_kwargs, spawn_workers,
    stored_device, study_args, worker_args, worker_index,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher grid`` and its options to the commands."""
    p = sub.add_parser("grid", help="measure the exhaustive grid of a study's space",
                       description="Time every valid config of the study's space at every "
                       "batch size (short, then full), stored under the grid's own study "
                       "names; rerun to resume. --dataset writes what is stored as a CSV "
                       "that --replay can serve.")
    study_args(p)
    p.add_argument("--limit-per-m", type=int, default=None,
                   help="measure at most this many configs per batch size (a random sample)")
    p.add_argument("--time-limit", type=float, default=None, help="stop after this long (s)")
    p.add_argument("--dataset", default=None, metavar="FILE.csv",
                   help="afterwards, write the stored grid as a replay dataset")
    p.add_argument("--no-run", action="store_true", help="measure nothing (with --dataset)")
    source_args(p)
    worker_args(p)
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher grid``; returns the exit code."""
    from searcher.tune.grid import run_grid, write_grid_dataset

    spec, storage = load(args, notes=True)
    check_limits(args)
    device = None
    code = None if args.no_run else spawn_workers(args, storage, drop=["--dataset"])
    if code is not None:  # the workers are done: show what the storage holds now
        from searcher.tune.grid import stored_grid_summaries

        device = stored_device(args, spec)
        for g in stored_grid_summaries(spec, storage, device, args.batch_sizes):
            _print_grid_line(g)
        if code == 130:
            raise KeyboardInterrupt  # stopped on request: say how to resume
        if code:
            return code
    elif not args.no_run:
        from searcher.tune.run import make_benchmarker

        worker, workers = worker_index(args)

        bencher, device = make_benchmarker(spec, **source_kwargs(args))
        err = rich_console(stderr=True)

        def progress(g) -> None:
            if g["measured"] % 50 == 0 or g["measured"] == g["size"]:
                err.print(f"grid M={g['M']}: {g['measured']}/{g['size']} measured, best "
                          f"{g['best_us'] or float('nan'):.1f} us")

        for g in run_grid(spec, bencher, device, storage, batch_sizes=args.batch_sizes,
                          limit_per_m=args.limit_per_m, time_limit_s=args.time_limit,
                          progress=progress, worker=worker, workers=workers):
            _print_grid_line(g)
    if args.dataset:
        path = write_grid_dataset(spec, storage, device or spec.gpu, args.dataset,
                                  batch_sizes=args.batch_sizes)
        print(path)
    return 0


def _print_grid_line(g) -> None:
    print(f"M={g['M']}: {g['measured']}/{g['size']} measured ({g['failed']} failed), "
          f"best {g['best_us'] or float('nan'):.1f} us"
          f"{' ' + g['best_config'].short() if g['best_config'] else ''}, "
          f"{g['wall_s']:.0f} s")
