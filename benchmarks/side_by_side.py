"""A study's side-by-side result as a Markdown table: searcher's config against vLLM's
default and an existing vLLM file, with the GPU time searcher spent and an estimate of
what vLLM's exhaustive grid would cost on the same GPU.

    python benchmarks/side_by_side.py examples/h200-deepseek-v3-tp8-fp8 --grid-size 640

Reads ``DIR/compare/*.csv`` (written by ``searcher compare --against FILE --out DIR/compare``,
which re-measures searcher's winner, vLLM's default and the file's config interleaved in
one process) and ``DIR/searcher.db`` (the study's storage). GPU time of the search: every
trial's measurement cost (compile waits included) plus the finalists' re-measurement; and
the wall time the search held the GPU, which adds the host's work between measurements
(what ``searcher status`` calls wall, and what a user pays for).
Per M, the decision rule (``searcher/strategies/decide.py``, the one that picks what is exported)
judges searcher's config against the file's from the paired rounds the comparison stored
with the study: "slower beyond noise" is what the goal "never slower than the file"
counts; a ratio below 1 that the rule calls equal is within the measured noise.
The grid estimate is ``--grid-size`` x the median cost of one full measurement of an
already compiled config at that M in this storage (vLLM's tuner also compiles each
config, which the estimate leaves out, so it is a lower bound of the grid's GPU time).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _storage_costs(db: Path) -> dict[int, tuple[float, float, float, float]]:
    """M -> (search GPU seconds, the part of them spent waiting for compiles, median
    seconds of one full measurement, wall seconds the search held the GPU)."""
    import optuna

    from searcher.store.record import stored_wall_time

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        name = summary.study_name
        if not name.startswith("fused_moe:search:") or not name.rpartition(":")[2].startswith("M="):
            continue  # claims and compare's records
        study = optuna.load_study(study_name=name, storage=storage)
        M = int(name.rpartition(":M=")[2])
        trials = study.get_trials(deepcopy=False)
        spent = sum(float(t.user_attrs.get("cost_s", 0.0)) for t in trials)
        spent += float(study.user_attrs.get("final", {}).get("cost_s", 0.0))
        compiling = sum(float(t.user_attrs[f].get("compile_s") or 0.0) for t in trials
                        for f in ("short", "full") if isinstance(t.user_attrs.get(f), dict))
        full = [t.user_attrs["full"]["cost_s"] for t in trials
                if isinstance(t.user_attrs.get("full"), dict)
                and t.user_attrs["full"].get("status") == "ok"]
        out[M] = (spent, compiling, statistics.median(full) if full else math.nan,
                  stored_wall_time(study.user_attrs))
    return out


def _file_verdicts(db: Path) -> dict[int, str]:
    """M -> the decision rule's verdict on searcher's config against the file's, from the
    paired rounds ``searcher compare --against`` stored with each batch size."""
    import optuna

    from searcher.store import record
    from searcher.strategies.decide import RULE, DecisionRule, judge

    stored = DecisionRule(**{**RULE.__dict__, "max_rounds": 0})  # no more rounds to measure
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        name = summary.study_name
        side = summary.user_attrs.get(record.SIDE_BY_SIDE)
        if not name.startswith("fused_moe:search:") or not side:
            continue
        times = {e["label"]: e["times_us"] for e in side["entries"]}
        if "search" in times and "file" in times:
            verdict = judge(times["search"], times["file"], stored)
            out[int(name.rpartition(":M=")[2])] = verdict.outcome.value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--grid-size", type=int, required=True,
                        help="configs per batch size of the grid to compare with")
    args = parser.parse_args()
    (table,) = sorted((args.dir / "compare").glob("*.csv"))
    rows = list(csv.DictReader(table.open()))
    costs = _storage_costs(args.dir / "searcher.db")
    verdicts = _file_verdicts(args.dir / "searcher.db")
    print("| M | searcher config | searcher us | vLLM default us | vLLM file config | "
          "vLLM file us | vs default | vs file | vs file, decision rule |")
    print("|---|---|---|---|---|---|---|---|---|")
    logs_d, logs_f = [], []
    for r in rows:
        s = float(r["remeasured search us"])
        d = float(r["remeasured vLLM default us"])
        f = float(r["remeasured file us"])
        logs_d.append(math.log(d / s))
        logs_f.append(math.log(f / s))
        print(f"| {r['M']} | {r['search_winner']} | {s:.1f} | {d:.1f} | {r['against']} | "
              f"{f:.1f} | {d / s:.3f}x | {f / s:.3f}x | {verdicts.get(int(r['M']), '-')} |")
    spent = sum(c[0] for c in costs.values())
    compiling = sum(c[1] for c in costs.values())
    grid = sum(args.grid_size * c[2] for c in costs.values())
    wall = sum(c[3] for c in costs.values())
    print()
    print(f"Geometric mean over {len(rows)} batch sizes: {math.exp(sum(logs_d) / len(rows)):.3f}x "
          f"vLLM's default, {math.exp(sum(logs_f) / len(rows)):.3f}x vLLM's file. "
          f"Slower than the file by more than 1%: "
          f"{', '.join(r['M'] for r, lf in zip(rows, logs_f) if lf < math.log(0.99)) or 'none'}; "
          f"slower beyond noise (decision rule): "
          f"{', '.join(str(M) for M, v in sorted(verdicts.items()) if v == 'slower') or 'none'}.")
    print(f"GPU time of the search: {spent:.0f} s measuring (trials and finalists), {wall:.0f} s "
          f"of wall time holding the GPU; a {args.grid_size}-config grid at one "
          f"full measurement per config: at least {grid:.0f} s (searcher: "
          f"{100 * wall / grid:.1f}% of it by wall time, {100 * spent / grid:.1f}% by measuring "
          f"time; without its {compiling:.0f} s of compile waits in measurements, "
          f"which the grid estimate leaves out, {100 * (spent - compiling) / grid:.1f}%).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
