"""How efficiently each search setup finds the grid's optimum, replayed on a recorded grid.

Replays a dataset written by ``searcher grid --dataset`` (noise drawn from each config's
recorded spread; every measurement charged its recorded cost, so a pruned trial costs its
short measurement only) and runs every setup over many seeds, cold (no warm start: the
sampler alone) and warm (vLLM's default and the nearest batch sizes' winners first; on
Hopper the default is often already the grid's best at large M, so only cold numbers
measure the sampler). Prints, per setup and batch size and over all of them, the median
and 90th percentile of full-cost trials and of simulated GPU seconds until a config
within 1% of the dataset's optimum was measured in full (a run that never got there counts
as the whole budget), how many runs got there, and the final gap of the chosen winner.
Runs on a CPU; not a timed test.

    python benchmarks/sampler_efficiency.py benchmarks/data/grid-h200-e64-n1408-vllm432.csv \
        --study h200-e64-n1408 --seeds 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from searcher.measure.measurement import Status  # noqa: E402
from searcher.measure.replay import ReplayBenchmarker  # noqa: E402
from searcher.tune.search import COUNTED_STATUSES, SearchOptions, run_search  # noqa: E402
from searcher.study.spec import find_spec, load_spec  # noqa: E402
from searcher.kernels.fused_moe.config import KernelConfig  # noqa: E402

#: name -> (sampler, pruner); "searcher" is the default setup (TPE + ratio pruner).
SETUPS = {
    "searcher": ("tpe", "ratio"),
    "tpe": ("tpe", "none"),
    "gp": ("gp", "none"),
    "cmaes": ("cmaes", "none"),
    "random": ("random", "none"),
}


def percentile(values, q):
    values = sorted(values)
    if not values:
        return math.nan
    k = (len(values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def one_run(spec, dataset, records, optimum, setup, warm, seed, budget, batch_sizes):
    sampler, pruner = SETUPS[setup]
    s = dataclasses.replace(spec, sampler=sampler, pruner=pruner, seed=seed)
    bench = ReplayBenchmarker(dataset, seed=seed)
    device = bench.device_info()["vllm_name"]
    opts = SearchOptions(device=device, storage_url="memory://", batch_sizes=batch_sizes,
                         trials_per_m=budget, warm_start=warm)
    searcher_run = run_search(s, bench, opts)
    out = {}
    for summary in searcher_run:
        M = summary.M
        study = summary.extra["study"]
        full_trials, seconds, hit = 0, 0.0, None
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("status") not in COUNTED_STATUSES:
                continue
            seconds += float(t.user_attrs.get("cost_s", 0.0))
            if t.user_attrs["status"] != "ok":
                continue
            full_trials += 1
            true = records[(M, KernelConfig.from_dict(t.user_attrs["config"]))]["median_us"]
            if hit is None and true <= 1.01 * optimum[M]:
                hit = (full_trials, seconds)
        winner = summary.winner or summary.best_config
        gap = records[(M, winner)]["median_us"] / optimum[M] - 1 if winner else math.inf
        total_s = summary.cost_s + summary.extra.get("final_cost_s", 0.0)
        out[M] = {"hit": hit is not None, "trials": hit[0] if hit else full_trials,
                  "seconds": hit[1] if hit else total_s, "gap": gap, "total_s": total_s,
                  "full": summary.complete, "counted": summary.trials}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--study", required=True, help="the study whose space and shape to use")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=None, help="trials per M (default: the spec's)")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--json", default=None, help="also write all runs to this JSON file")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    spec = load_spec(find_spec(args.study))
    probe = ReplayBenchmarker(args.dataset, noise=False)
    records = probe.records
    ok = {}
    for (M, config), r in records.items():
        if r["status"] is Status.OK:
            ok.setdefault(M, []).append(r["median_us"])
    batch_sizes = [M for M in spec.batch_sizes if M in ok]
    optimum = {M: min(v) for M, v in ok.items()}
    grid_seconds = {M: sum(_finite(r["short_cost_s"]) + _finite(r["full_cost_s"])
                           for (m, _), r in records.items() if m == M) for M in batch_sizes}
    budget = args.budget or spec.trials_per_m
    meta = probe.meta
    print(f"dataset {args.dataset}: {meta.get('name')} (torch {meta.get('torch_version')}, "
          f"triton {meta.get('triton_version')}), space {meta.get('space')}, "
          f"{meta.get('measured')}; budget {budget} trials per M, {args.seeds} seeds")
    results: dict = {}
    started = time.time()
    for setup in args.setups.split(","):
        for warm in (False, True):
            key = f"{setup}/{'warm' if warm else 'cold'}"
            runs = []
            for seed in range(args.seeds):
                runs.append(one_run(spec, args.dataset, records, optimum, setup, warm, seed,
                                    budget, batch_sizes))
                print(f"  {key} seed {seed}: {time.time() - started:.0f} s", file=sys.stderr,
                      flush=True)
            results[key] = runs
            print(f"  {key}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)

    header = ("| setup | M | reached 1% | full trials to 1% (median / p90) | GPU s to 1% "
              "(median / p90) | final gap % (median / p90) | GPU s per run | % of grid GPU s |")
    print()
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for key, runs in results.items():
        for M in batch_sizes + ["all"]:
            Ms = batch_sizes if M == "all" else [M]
            trials = [r[m]["trials"] for r in runs for m in Ms]
            secs = [r[m]["seconds"] for r in runs for m in Ms]
            gaps = [100 * r[m]["gap"] for r in runs for m in Ms]
            hits = sum(r[m]["hit"] for r in runs for m in Ms)
            total = statistics.median(sum(r[m]["total_s"] for m in Ms) for r in runs)
            grid = sum(grid_seconds[m] for m in Ms)
            print(f"| {key} | {M} | {hits}/{len(trials)} | {statistics.median(trials):.0f} / "
                  f"{percentile(trials, 0.9):.0f} | {statistics.median(secs):.1f} / "
                  f"{percentile(secs, 0.9):.1f} | {statistics.median(gaps):.2f} / "
                  f"{percentile(gaps, 0.9):.2f} | {total:.0f} | {100 * total / grid:.1f} |")
    print("\ngrid GPU seconds (sum of recorded short + full costs): "
          + ", ".join(f"M={M}: {grid_seconds[M]:.0f}" for M in batch_sizes))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"dataset": args.dataset, "budget": budget, "seeds": args.seeds,
             "optimum": optimum, "results": {k: [{str(m): v for m, v in r.items()} for r in runs]
                                              for k, runs in results.items()}}, indent=1))
    return 0


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


if __name__ == "__main__":
    sys.exit(main())
