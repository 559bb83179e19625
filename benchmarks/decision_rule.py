"""The finalists' decision rule against the old one, on the synthetic landscape.

For each noise level, seed and batch size: a short search on the synthetic landscape
(``SyntheticBenchmarker``, measured in-process as ``--isolation none``), whose finalists'
run uses the new rule (``searcher/strategies/decide.py``). The old rule (lowest median of 2 rounds,
the default among the entries) is applied to the first 2 rounds of the same finalists'
run, so both rules judge the very same measurements. Truth is the landscape's noiseless
time (``SyntheticBenchmarker.true_time``). Reports, per rule: exports truly slower than
the default, exports of a non-default config, and the geomean of the true speedup of what
is exported (the speedup given up = old / new). Runs on a CPU; not a timed test.

    python benchmarks/decision_rule.py --seeds 50 --out benchmarks/results/decision-rule.md
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from searcher.kernels.fused_moe import FUSED_MOE  # noqa: E402
from searcher.tune.search import SearchOptions, run_search  # noqa: E402
from searcher.study.spec import load_spec  # noqa: E402
from searcher.store.storage import open_storage, study_name  # noqa: E402
from searcher.measure.synthetic import SyntheticBenchmarker  # noqa: E402

DEVICE = "NVIDIA_H100_80GB_HBM3"
OLD_ROUNDS = 2


def one_run(spec, noise: float, seed: int, batch_sizes, budget: int, workdir: Path):
    """[(M, old true speedup, new true speedup, old non-default, new non-default, rounds)]."""
    bencher = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=DEVICE, seed=seed, noise=noise)
    url = f"sqlite:///{workdir / f'n{noise}-s{seed}.db'}"
    run_search(dataclasses.replace(spec, seed=seed), bencher,
               SearchOptions(device=DEVICE, storage_url=url, batch_sizes=batch_sizes,
                             trials_per_m=budget))
    storage = open_storage(url)
    out = []
    for M in batch_sizes:
        study = optuna.load_study(storage=storage, study_name=study_name(
            FUSED_MOE, "search", spec.shape, DEVICE, M))
        final = study.user_attrs["final"]
        entries = [(FUSED_MOE.config_from_dict(e["config"]), e["times_us"], e["default"])
                   for e in final["entries"]]
        default = next(c for c, _, d in entries if d)
        # The finalists' selection is a race (searcher/tune/search.py): the slower half of round
        # 1, and any finalist slower than the default in a round, is not measured again,
        # and a race none can win ends after round 1. So the old rule picks among the
        # entries of round 2 where there is one, else among round 1's.
        rounds = min(OLD_ROUNDS, max(len(e[1]) for e in entries))
        old = min((e for e in entries if len(e[1]) >= rounds),
                  key=lambda e: statistics.median(e[1][:rounds]))[0]
        new = FUSED_MOE.config_from_dict(final["winner"])
        true = lambda c: bencher.true_time(M, c)  # noqa: E731
        out.append((M, true(default) / true(old), true(default) / true(new), old != default,
                    new != default, final["rounds"]))
    return out


def table(rows, seeds: int, batch_sizes, budget: int) -> str:
    lines = [
        f"Synthetic landscape (E=64, N=1408, bf16, {DEVICE}), {seeds} seeds x M = "
        f"{', '.join(map(str, batch_sizes))}, {budget} trials per M, 4 finalists; "
        "true = the landscape's noiseless time.", "",
        "| noise | rule | exports | non-default | truly slower than default | worst true "
        "speedup | geomean true speedup | speedup given up | rounds (mean, max) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for noise in sorted({r[0] for r in rows}):
        rs = [r[1] for r in rows if r[0] == noise]
        geo = {}
        for name, idx, flag in (("old: lowest median of 2 rounds", 1, 3),
                                ("new: paired rule (searcher/strategies/decide.py)", 2, 4)):
            sp = [r[idx] for r in rs]
            geo[idx] = statistics.geometric_mean(sp)
            slower = sum(1 for s in sp if s < 1.0 - 1e-12)
            given = "-" if idx == 1 else f"{100 * (geo[1] / geo[2] - 1):.2f}%"
            rounds = ("2, 2" if idx == 1 else
                      f"{statistics.mean(r[5] for r in rs):.2f}, {max(r[5] for r in rs)}")
            lines.append(f"| {noise:.2f} | {name} | {len(sp)} | {sum(r[flag] for r in rs)} | "
                         f"{slower} | {min(sp):.3f} | {geo[idx]:.4f} | {given} | {rounds} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--noise", default="0.05,0.15")
    ap.add_argument("--batch-sizes", default="16,256,1024")
    ap.add_argument("--trials", type=int, default=16, help="trials per M")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    batch_sizes = [int(m) for m in args.batch_sizes.split(",")]
    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for noise in (float(x) for x in args.noise.split(",")):
            for seed in range(args.seeds):
                for r in one_run(spec, noise, seed, batch_sizes, args.trials, Path(tmp)):
                    rows.append((noise, r))
            print(f"noise {noise}: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    text = table(rows, args.seeds, batch_sizes, args.trials)
    command = "python benchmarks/decision_rule.py " + " ".join(argv or sys.argv[1:])
    print(text)
    if args.out:
        args.out.write_text(f"{text}\n\nProduced by `{command.strip()}`.\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
