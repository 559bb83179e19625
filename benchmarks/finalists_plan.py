"""The finalists' budget replanned on a GPU run's storage (no GPU needed).

For each batch size of a stored study: what its trials measured (seconds, compile waits
excluded), what its finalists' run recorded (seconds, share of measuring plus finalists,
layer calls a graph, measurements, rounds), and what the current plan
(``searcher/strategies/finalists.py``) gives for the same entries from the same trials:
the budget, the calls a graph, the finalists raced, the planned seconds and the share
they would take, and a measurement's cost as recorded and as planned (at the recorded
run's calls a graph and at the plan's, respectively). The planned seconds count the
measurements the decision rule needs at least (rounds it adds while undecided, up to 8,
come on top), so "planned share" is a prediction for the rounds up to the rule's minimum,
not a measurement.

The planned columns are the plan of the code that runs this script: a committed table
reproduces with the code of the commit that made it (``git worktree add /tmp/at REV``,
then run this script from /tmp/at). Since commit 22d73e2 a measurement's rest
(capture, syncs) is the median of all the batch size's measurements, not of its full
ones alone, so older tables' planned columns can read a little differently.

Then, for records that keep each round's seconds (``round_s``, since commit 32789cd), a
measurement's cost round by round (the round's seconds, compile waits included, over the
configs it measured), beside the planned cost: where the plan holds in some rounds and
not in others, the rounds that miss paid for something besides their measurements.

    gunzip -k examples/h200-e64-n1408-throughput/eighth-run/*.db.gz
    python benchmarks/finalists_plan.py --study h200-e64-n1408 \\
        --storage sqlite:///examples/h200-e64-n1408-throughput/eighth-run/searcher.db
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--device", default=None, help="vLLM device name (default: the study's)")
    ap.add_argument("--share", type=float, default=None,
                    help="the finalists' share to plan for (default: searcher's, 0.15)")
    args = ap.parse_args(argv)

    from searcher.errors import SearcherError
    from searcher.measure.measurement import FIDELITIES
    from searcher.results.winners import stored_studies
    from searcher.store import record
    from searcher.store.record import summarize_study
    from searcher.strategies.finalists import SHARE, SHARE_RULE, valid_share
    from searcher.study.spec import find_spec, load_spec
    from searcher.tune.finalists import finalists_plan

    share = SHARE if args.share is None else args.share
    if not valid_share(share):
        print(f"finalists_plan.py: --share {args.share!r}: {SHARE_RULE}", file=sys.stderr)
        return 2
    try:
        spec = load_spec(find_spec(args.study))
        studies = stored_studies(spec, args.storage, args.device or spec.gpu)
    except SearcherError as exc:  # e.g. a storage kept gzipped, not unzipped yet
        print(f"finalists_plan.py: {exc}", file=sys.stderr)
        return 2
    info = next((study.user_attrs[record.DEVICE_INFO] for _, study in studies
                 if study.user_attrs.get(record.DEVICE_INFO)), {})
    source = next((src for _, study in studies
                   if (src := record.unmeasured_source(study.user_attrs))), None)
    measured = (f"measured on {info.get('name', '?')} (torch {info.get('torch_version', '?')}, "
                f"triton {info.get('triton_version', '?')})" if source is None
                else f"not measured on a GPU ({source})")
    print(f"{spec.name} in {args.storage}, {measured}; plan for a share of {share:g}")
    print()
    print("| M | measuring s | recorded: finalists s | share | calls | measurements | rounds "
          "| plan: budget s | calls | finalists | planned s | planned share "
          "| ms a measurement: recorded | planned |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    worst_before = worst_after = 0.0
    by_round: list[tuple[int, list[int], list[float], float | None]] = []
    for M, study in studies:
        final = study.user_attrs.get(record.FINAL)
        if not final or final.get("cost_s") is None:
            continue
        split = summarize_study(spec.kernel, study, M).time
        measuring = split.measuring_s
        entries = [spec.kernel.config_from_dict(e["config"]) for e in final["entries"]]
        fixed = [c for c, e in zip(entries, final["entries"]) if e["default"] or e["against"]]
        racers = [c for c in entries if c not in fixed]  # fastest first, as recorded
        plan = finalists_plan(spec.kernel, study, len(racers), racers + fixed,
                              len(fixed), measuring, final.get("fidelity") or "full", share)
        # The time split's finalists: compile waits in their rounds left out, as the plan
        # leaves them out (recorded apart since 2026-12-07).
        cost = split.finalists_s
        before = cost / (measuring + cost) if measuring + cost else 0.0
        planned = plan.planned_s
        after = None if planned is None else planned / (measuring + planned)
        worst_before = max(worst_before, before)
        worst_after = max(worst_after, after or 0.0)
        calls = final.get("calls_per_graph") or FIDELITIES[final.get("fidelity") or "full"] \
            .calls_per_graph
        measured = sum(len(e["times_us"]) for e in final["entries"])
        print(f"| {M} | {measuring:.2f} | {cost:.2f} | {100 * before:.0f}% | {calls} "
              f"| {measured} | {final['rounds']} "
              f"| {'-' if plan.budget_s is None else f'{plan.budget_s:.2f}'} "
              f"| {plan.fidelity.calls_per_graph} | {plan.finalists} "
              f"| {'-' if planned is None else f'{planned:.2f}'} "
              f"| {'-' if after is None else f'{100 * after:.0f}%'}"
              f"{'' if plan.within_budget else ' (over)'} "
              f"| {1000 * cost / measured:.1f} "
              f"| {'-' if planned is None else f'{1000 * planned / plan.measurements:.1f}'} |")
        if final.get("round_s"):
            # an entry is measured in every round until it leaves the race
            counts = [sum(1 for e in final["entries"] if len(e["times_us"]) > r)
                      for r in range(len(final["round_s"]))]
            by_round.append((M, counts, final["round_s"],
                             None if planned is None else planned / plan.measurements))
    print()
    print(f"- recorded: the finalists at most {100 * worst_before:.1f}% of a batch size's "
          "measuring plus finalists")
    print(f"- planned: at most {100 * worst_after:.1f}% (the rule's minimum rounds; goal "
          f"<= {100 * share:g}%)")
    if by_round:
        print()
        print("Round by round: ms a measurement (configs measured in the round)")
        print()
        print("| M | planned | rounds |")
        print("|---|---|---|")
        for M, counts, seconds, per in by_round:
            cells = ", ".join(f"{1000 * t / n:.1f} ({n})" for t, n in zip(seconds, counts) if n)
            print(f"| {M} | {'-' if per is None else f'{1000 * per:.1f}'} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
