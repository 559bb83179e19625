"""``searcher compare``: the search against the grid, vLLM's default and a file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from searcher.cli.common import (
    AGAINST_HELP, load, read_against, resolve_against, rich_console, study_args,
)
from searcher.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher compare`` and its options to the commands."""
    p = sub.add_parser("compare", help="the search against the grid, the default and a file",
                       description="Per batch size: grid best, search winner, gap, trials and "
                       "GPU time of each, trials to 1% and 3% of the grid's best, vLLM's "
                       "default and (--against) an existing vLLM config file. On a GPU the "
                       "finalists are re-measured side by side, interleaved.")
    study_args(p)
    p.add_argument("--device", default=None, help="whose results (default: the spec's GPU)")
    p.add_argument("--against", default=None, metavar="FILE.json|vllm",
                   help="an existing vLLM config file to compare with" + AGAINST_HELP)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the CSV and the PNGs, made if missing (default: "
                   "./compare-STUDY)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved re-measurement rounds")
    p.add_argument("--no-remeasure", action="store_true",
                   help="use stored times only (the default without a GPU)")
    p.add_argument("--replay", metavar="DATASET.csv",
                   help="re-measure by replaying a dataset instead of a GPU")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher compare``; returns the exit code."""
    from searcher.results.compare import compare, plot_best_so_far, write_csv
    from searcher.tune.view import format_us

    spec, storage = load(args)
    device = args.device or spec.gpu
    resolve_against(args, spec, device)
    against = read_against(spec, args.against) if args.against else None
    bencher = None
    if args.replay and not args.no_remeasure:
        from searcher.measure.replay import ReplayBenchmarker, check_dataset_fits

        check_dataset_fits(args.replay, spec.kernel, spec.shape.label(), spec.space.name,
                           spec.name)
        bencher = ReplayBenchmarker(args.replay, seed=spec.seed)
    elif not args.no_remeasure:
        from searcher.measure.device import cuda_available

        if cuda_available():
            from searcher.tune.run import make_benchmarker

            bencher, here = make_benchmarker(spec, allow_other_gpu=True)
            if here != device:
                raise ConfigError(f"re-measuring {device}'s results needs that GPU; this one "
                                  f"is {here} (pass --no-remeasure to compare stored times)")
        else:
            rich_console(stderr=True).print("no CUDA GPU: comparing stored times (no side-by-side "
                                        "re-measurement)")
    from searcher.results.export import output_folder

    from searcher.store.storage import iter_studies, open_storage

    held = open_storage(storage, read_only=True)
    if not any(study is not None for kind in ("search", "grid") for _, study in iter_studies(
            held, kind, spec, device, args.batch_sizes or spec.batch_sizes)):
        raise ConfigError(f"{storage} holds no search or grid of {spec.name} on {device} to "
                          "compare (run it first, or pass --device)")
    out = output_folder(args.out or f"compare-{spec.name}")
    rows = compare(spec, storage, device, against=against, bencher=bencher, rounds=args.rounds,
                   batch_sizes=args.batch_sizes,
                   against_file=Path(args.against).name if args.against else None)
    csv_path = write_csv(rows, out / f"compare-{spec.name}-{device}.csv")
    # Times that no GPU measured say so in every title (issue #12: provenance).
    sources = ", ".join(sorted({r.source for r in rows if r.source}))
    not_gpu = f" [{sources}: not GPU measurements]" if sources else ""
    pngs = [plot_best_so_far(r, out / f"compare-{spec.name}-{device}-M{r.M}.png",
                             f"{spec.name} on {device}, M={r.M}"
                             + (f"\n[{r.source}: not GPU measurements]" if r.source else ""))
            for r in rows]
    if args.json:
        print(json.dumps({"study": spec.name, "device": device, "csv": str(csv_path),
                          "png": [str(p) for p in pngs if p], "rows": [r.to_dict() for r in rows]},
                         indent=2))
        return 0
    from rich.table import Table

    # Without a recorded grid its columns would be "-" and "0/0": leave them out, say why.
    grid = any(r.grid_trials for r in rows)
    baseline = "the grid" if grid else "the default"
    file = f" and {Path(args.against).name}" if against else ""
    table = Table(title=f"{spec.name} on {device}: search against {baseline}{file} "
                  f"({storage}){not_gpu}")
    # Synthetic or replayed: the seconds are the loop's, no GPU was held.
    held = "wall s" if not_gpu else "GPU s"
    cols = ["M", "grid best us", "grid trials", f"grid {held}", "search us", "gap %",
            "search trials", f"search {held}", "to 1%", "to 3%", "default us"]
    grid_cols = {"grid best us", "grid trials", f"grid {held}", "gap %", "to 1%", "to 3%"}
    if against:
        cols.append("file us")
    labels = sorted({k for r in rows for k in r.remeasured})
    cols += [f"re-measured {k}" for k in labels]
    keep = [grid or c not in grid_cols for c in cols]
    for c, shown in zip(cols, keep):
        if shown:
            table.add_column(c, justify="right")
    for r in rows:
        cells = [str(r.M), format_us(r.grid_best_us), f"{r.grid_trials}/{r.grid_size}",
                 f"{r.grid_gpu_s:.0f}", format_us(r.search_best_us),
                 "-" if r.gap_pct is None else f"{r.gap_pct:+.2f}", str(r.search_trials),
                 f"{r.search_gpu_s:.0f}", str(r.trials_to_1pct or "-"),
                 str(r.trials_to_3pct or "-"), format_us(r.default_us)]
        if against:
            cells.append(format_us(r.against_us))
        cells += [format_us(r.remeasured.get(k)) for k in labels]
        table.add_row(*(cell for cell, shown in zip(cells, keep) if shown))
    console = rich_console()
    if not grid:
        rich_console(stderr=True).print(
            f"no grid recorded for this study (`{spec.command('grid', storage)}` records one): "
            "the grid columns are left out", style="yellow")
    console.print(table)
    console.print(f"CSV: {csv_path}; plots: {', '.join(str(p) for p in pngs if p) or 'none'}")
    return 0
