"""Issue #13's throughput goals, read from a GPU run's storage (no GPU needed).

Per batch size and in total: wall time, measuring, compile waits, finalists, host
overhead (as ``searcher status`` splits them), the finalists' share of the batch size's
wall time (goal <= 15%), and compile waits after the first 10 trials as a share of the
wall time from the 11th trial's start to the last trial's end (goal < 5%). In total:
wall / (measuring + finalists) (goal <= 1.25) and the wall time against a recorded grid's
GPU time (``--grid-s``; goal <= 10%).

    python benchmarks/time_split.py --study h200-e64-n1408 \\
        --storage sqlite:///examples/h200-e64-n1408-throughput/searcher.db --grid-s 2133
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST_TRIALS = 10  # compile waits are counted after this many trials of each M


def compile_after(study, first: int = FIRST_TRIALS) -> tuple[float, float]:
    """(compile waits, wall seconds) of the trials numbered ``first`` and later, from the
    first of them starting to the last of them finishing, and of the finalists' run that
    follows them where its record keeps its compile waits apart (since 2026-12-07): those
    waits, and its cost."""
    later = [t for t in study.get_trials(deepcopy=False)
             if t.number >= first and t.datetime_start and t.datetime_complete]
    if not later:
        return 0.0, 0.0
    # The finalists' run counts only where its record keeps its compile waits apart:
    # an older record's rounds would lengthen the span with their waits unknown.
    final = study.user_attrs.get("final") or {}
    waits = span = 0.0
    if final.get("compile_s") is not None:
        waits, span = float(final["compile_s"]), float(final.get("cost_s") or 0.0)
    waits += sum(float((t.user_attrs.get(f) or {}).get("compile_s") or 0.0)
                 for t in later for f in ("short", "full"))
    span += (max(t.datetime_complete for t in later)
             - min(t.datetime_start for t in later)).total_seconds()
    return waits, span


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--grid-s", type=float, help="the recorded grid's GPU seconds")
    ap.add_argument("--device", default=None, help="vLLM device name (default: the study's)")
    args = ap.parse_args(argv)

    from searcher.errors import SearcherError
    from searcher.results.winners import stored_studies
    from searcher.store.record import summarize_study
    from searcher.study.spec import find_spec, load_spec

    try:
        spec = load_spec(find_spec(args.study))
        studies = stored_studies(spec, args.storage, args.device or spec.gpu)
    except SearcherError as exc:  # e.g. a storage kept gzipped, not unzipped yet
        print(f"time_split.py: {exc}", file=sys.stderr)
        return 2
    summaries = [summarize_study(spec.kernel, study, M) for M, study in studies]
    for s, (_, study) in zip(summaries, studies):
        s.extra["study"] = study
    print("| M | wall s | measuring s | compile s | finalists s | host s | finalists / wall "
          "| compile waits after 10 trials / their wall |")
    print("|---|---|---|---|---|---|---|---|")
    tot = {"wall": 0.0, "meas": 0.0, "comp": 0.0, "fin": 0.0, "waits": 0.0, "span": 0.0}
    worst_fin = 0.0
    for s in summaries:
        t = s.time
        fin = t.finalists_s or 0.0
        waits, span = compile_after(s.extra["study"])
        share = fin / t.wall_s if t.wall_s else 0.0
        worst_fin = max(worst_fin, share)
        print(f"| {s.M} | {t.wall_s:.1f} | {t.measuring_s:.1f} | {t.compile_s:.1f} | {fin:.1f} "
              f"| {t.host_s or 0.0:.1f} | {100 * share:.0f}% "
              f"| {100 * waits / span if span else 0.0:.1f}% |")
        for key, value in (("wall", t.wall_s), ("meas", t.measuring_s), ("comp", t.compile_s),
                           ("fin", fin), ("waits", waits), ("span", span)):
            tot[key] += value
    host = tot["wall"] - tot["meas"] - tot["comp"] - tot["fin"]
    print(f"| total | {tot['wall']:.1f} | {tot['meas']:.1f} | {tot['comp']:.1f} | {tot['fin']:.1f} "
          f"| {host:.1f} | {100 * tot['fin'] / tot['wall']:.0f}% "
          f"| {100 * tot['waits'] / tot['span'] if tot['span'] else 0.0:.1f}% |")
    print()
    print(f"- wall / (measuring + finalists): {tot['wall'] / (tot['meas'] + tot['fin']):.2f} "
          "(goal <= 1.25)")
    print(f"- finalists: {100 * tot['fin'] / tot['wall']:.1f}% of wall in total, at most "
          f"{100 * worst_fin:.1f}% of one batch size's (goal <= 15%)")
    print(f"- compile waits after the first {FIRST_TRIALS} trials of each M: "
          f"{100 * tot['waits'] / tot['span'] if tot['span'] else 0.0:.1f}% of their wall "
          "time (goal < 5%)")
    if args.grid_s:
        print(f"- wall time against the grid's {args.grid_s:.0f} s: "
              f"{100 * tot['wall'] / args.grid_s:.1f}% (goal <= 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
