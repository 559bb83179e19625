"""The finalists' run: a batch size's best configs, vLLM's default and a file's config
re-measured side by side once its search is done, and the winner the decision rule picks
(issue #9: not a lucky sample), at a bounded share of the batch size's GPU time (issue
#13). The plan's arithmetic is :mod:`searcher.strategies.finalists`; the rule is
:mod:`searcher.strategies.decide`; the search loop (:mod:`searcher.tune.search`) runs this
when a batch size's budget is spent, and ``searcher decide`` again
(:mod:`searcher.tune.decide`).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from searcher.measure.measurement import FIDELITIES, Status
from searcher.store import record
from searcher.store.record import (
    FAILED_STATUSES, TrialStatus, add_wall_time, config_of, status_of, summarize_study)
from searcher.strategies.decide import RULE, DecisionRule, Outcome, Verdict, judge
from searcher.strategies.finalists import (
    SHARE, FinalistsPlan, MeasurementCost, finalists_budget, kept_after_round,
    plan_finalists)

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.kernels.base import Config, Kernel
    from searcher.measure.harness import Benchmarker
    from searcher.study.spec import StudySpec
    from searcher.tune.search import SearchOptions

__all__ = ["finalist_configs", "run_finalists", "measurement_costs", "finalists_plan",
           "previous_record"]


#: What a verdict's reason adds where the budget ended its pair's rounds.
BUDGET_STOPPED = "; no further round fitted the finalists' budget"


def finalist_configs(kernel: Kernel, study: optuna.Study, n: int) -> list[Config]:
    """The study's fastest distinct configs of its completed trials, fastest first, at
    most ``n`` (at least 1) of them: those the finalists' run re-measures."""
    from optuna.trial import TrialState

    complete = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
         if status_of(t) is TrialStatus.OK),
        key=lambda t: t.value,
    )
    out: list[Config] = []
    for t in complete:
        config = config_of(kernel, t)
        if config not in out:
            out.append(config)
        if len(out) == max(1, n):
            break
    return out


def run_finalists(spec: StudySpec, bencher: Benchmarker, opts: SearchOptions,
                  study: optuna.Study, M: int, against: Config | None = None,
                  clock: Callable[[], float] = time.monotonic) -> None:
    """Re-measure batch size ``M``'s best configs and vLLM's default, interleaved, and
    store the real winner (not a lucky sample) as the study's ``final`` record; nothing
    is stored where the winner's every round failed.

    Args:
        spec: the study spec (kernel, shape, the number of finalists).
        bencher: measures the rounds (``measure_round``, at ``opts.final_fidelity`` with
            the layer calls a graph the plan allows).
        opts: the decision rule, the final fidelity, the finalists' share of the batch
            size's GPU time, and ``against`` (a vLLM file's configs to beat).
        study: the batch size's search study, its trials done.
        M: the batch size (tokens).
        against: a config to beat besides ``opts.against``'s (``searcher decide`` passes
            the stored one).
        clock: seconds, for the batch size's wall time.
    """
    started = clock()
    finalists = finalist_configs(spec.kernel, study, spec.finalists)
    default = spec.kernel.default_config(spec.shape, M)
    # A default that crashed or hung as a trial is not re-measured (with process
    # isolation, a hang would cost a full timeout per round).
    failed = {config_of(spec.kernel, t) for t in study.get_trials(deepcopy=False)
              if status_of(t) in FAILED_STATUSES}
    # The file to beat competes like the default, also where the space leaves its
    # config out (vLLM's tuner searched another space).
    if opts.against is not None:
        against = opts.against[M]
    # The default and the file are measured in every round; the other finalists race.
    fixed = list(dict.fromkeys(c for c in (default, against) if c is not None
                               and (c in finalists or c not in failed)))
    racers = [c for c in finalists if c not in fixed]
    summary = summarize_study(spec.kernel, study, M)
    rule = opts.decision_rule
    plan = finalists_plan(spec.kernel, study, len(racers), racers + fixed, len(fixed),
                          summary.time.measuring_s, opts.final_fidelity,
                          opts.finalists_share, rule)
    offered = len(racers)
    racers = racers[:plan.finalists]
    entries = ([c for c in finalists if c in racers or c in fixed]
               + [c for c in fixed if c not in finalists])
    times: dict[Config, list[float]] = {c: [] for c in entries}
    cost = compile_s = 0.0
    round_s: list[float] = []  # each round's cost, compile waits included
    last_s = 0.0  # the last round's, less its compile waits
    budget_stopped = False

    def measure_round(configs: Sequence[Config]) -> None:
        # One round, side by side: on a GPU their replays interleave, so that a change
        # of clocks reaches each alike (the rule pairs round i of two configs).
        nonlocal cost, compile_s, last_s
        round_s.append(0.0)
        waits = 0.0
        for config, m in zip(configs, bencher.measure_round(
                M, configs, plan.fidelity)):
            cost += m.cost_s
            waits += m.compile_s or 0.0
            round_s[-1] += m.cost_s
            times[config].append(m.median_us if m.ok else math.inf)
        compile_s += waits
        last_s = round_s[-1] - waits

    def settle(candidate: Config, incumbent: Config) -> tuple[Verdict, bool]:
        # The rule's verdict on candidate against incumbent, with rounds of the pool added
        # while it is undecided. Beyond the rule's minimum rounds (the plan's), a round is
        # added only while one more (costed as the last) fits the budget: the finalists
        # stay within their share (issue #13). Where it does not, the budget is the cap,
        # and an undecided pair is judged as at the rule's cap (the incumbent stays).
        # Returns the verdict and whether the budget ended its rounds.
        nonlocal budget_stopped
        verdict = judge(times[candidate], times[incumbent], rule)
        while verdict.outcome is Outcome.UNDECIDED:
            if (plan.budget_s is not None and verdict.rounds >= rule.min_rounds
                    and cost - compile_s + last_s > plan.budget_s):
                budget_stopped = True
                return judge(times[candidate], times[incumbent],
                             replace(rule, max_rounds=verdict.rounds)), True
            measure_round(pool)
            verdict = judge(times[candidate], times[incumbent], rule)
        return verdict, False

    # The selection is a race: every entry is measured in the first round; after each
    # round the slower half of the candidates drops out, the default and the file stay
    # (they are judged against in every later round). With 4 finalists: 5, 3, then 2
    # measurements a round, instead of 5 in each (issue #13: finalists at a bounded cost).
    # A config with a round not faster than the default's can no longer beat it (the
    # rule needs every round faster), nor be exported: it leaves the race too, and the
    # race ends when none is left that could.
    racing = [c for c in entries if c != default and c != against]
    file_to_beat = [c for c in entries if c == against and c != default]

    def could_win(c: Config) -> bool:
        return default not in times or all(
            t < d for t, d in zip(times[c], times[default]))

    for round_ in range(max(1, rule.selection_rounds)):
        measure_round([c for c in entries if c in racing or c == default or c == against])
        racing = [c for c in racing if could_win(c)]
        if round_ + 1 < rule.selection_rounds and len(racing) > 1:
            racing.sort(key=lambda c: statistics.median(times[c]))
            racing = racing[:kept_after_round(len(racing))]
        if not racing and not any(could_win(c) for c in file_to_beat):
            break
    medians = {c: statistics.median(v) for c, v in times.items()}
    # The default competes too, and wins unless a config is faster than it beyond the
    # noise (searcher/strategies/decide.py); undecided pairs get more rounds, up to the
    # rule's cap.
    # Where none could still win, the fastest is judged all the same, for the record.
    candidates = (racing + file_to_beat) or [c for c in entries if c != default]
    best = min(candidates, key=lambda c: medians[c]) if candidates else None
    # Configs measured together in every further round, so that each pair the rule
    # judges stays interleaved round by round (it pairs round i with round i).
    pool = [c for c in (best, default) if c is not None and c in times]
    order = [best] if best is not None else []  # the candidates, in the order tried
    versus_file = None
    file_stopped = verdict_stopped = False
    if (best is not None and against is not None and best != against
            and against in times and against != default):
        # The file to beat is the incumbent: the search's best replaces it only when
        # faster than it beyond the noise, by the same rule. If the file's config then
        # does not beat vLLM's default, the search's best still may.
        pool.append(against)
        versus_file, file_stopped = settle(best, against)
        if versus_file.outcome is not Outcome.FASTER:
            order = [against, best]
    verdict = None
    candidate = order[0] if order else None
    winner = default
    if candidate is not None and default not in times:
        winner = candidate  # the default failed as a trial: nothing to beat
    elif candidate is not None:
        for candidate in order:
            verdict, verdict_stopped = settle(candidate, default)
            if verdict.outcome is Outcome.FASTER:
                winner = candidate
                break
    medians = {c: statistics.median(v) for c, v in times.items()}
    if not math.isfinite(medians[winner]):
        return
    decision = None
    if verdict is not None:
        decision = {"outcome": verdict.outcome.value, "candidate": candidate.to_dict(),
                    "ratio": verdict.ratio, "noise": verdict.noise,
                    "rounds": verdict.rounds,
                    "reason": f"candidate {candidate.short()}: {verdict.reason()}"
                              + (BUDGET_STOPPED if verdict_stopped else ""),
                    "rule": asdict(rule)}
    study.set_user_attr(record.FINAL, {
        **previous_record(study),
        "fidelity": opts.final_fidelity,
        "calls_per_graph": plan.fidelity.calls_per_graph,
        "plan": {"finalists": plan.finalists, "of": offered,
                 "measurements": plan.measurements, "planned_s": plan.planned_s,
                 "budget_s": plan.budget_s, "within_budget": plan.within_budget,
                 "share": opts.finalists_share,
                 # the rule asked for another round that the budget had no room for
                 "stopped": budget_stopped},
        "timing": bencher.device_info().get(record.TIMING),
        "rounds": max(len(v) for v in times.values()),
        "trials": summary.trials,
        "entries": [{"config": c.to_dict(), "times_us": times[c], "median_us": medians[c],
                     "default": c == default, "against": c == against} for c in entries],
        "winner": winner.to_dict(),
        "winner_us": medians[winner],
        "default_us": medians[default] if default in medians and math.isfinite(medians[default])
        else None,
        "against_us": medians[against] if against in medians and math.isfinite(medians[against])
        else None,
        "decision": decision,
        "versus_file": None if versus_file is None else {
            "outcome": versus_file.outcome.value, "ratio": versus_file.ratio,
            "rounds": versus_file.rounds,
            "reason": versus_file.reason("file") + (BUDGET_STOPPED if file_stopped else "")},
        # All the rounds cost, compile waits included (a config compiled again where
        # the measuring process was replaced since its trial): ``compile_s`` of it, so
        # that the time split counts them as compile waits, as it does the trials'.
        "cost_s": cost,
        "compile_s": compile_s,
        "round_s": round_s,
    })
    add_wall_time(study, clock() - started)


def measurement_costs(kernel: Any, study: optuna.Study, configs: Sequence[Config],
                      final_fidelity: str = "full") -> list[MeasurementCost | None]:
    """What one finalists' measurement of each of ``configs`` is expected to cost (seconds),
    in their order, None for one without a complete trial in ``study`` (the default may
    have none), scaled from the trials' ``full`` fidelity to
    ``final_fidelity`` (compile waits left out: in a run the finalists' configs were
    compiled for their trials). Its replays are its own trial's (``gpu_s``); the rest
    (building and capturing the graph, syncing) is the median over the batch size's
    measurements, short and full, pruned trials' too (failed ones timed no replays),
    since a single one can read several times higher where the host was busy (the lent
    H100: 4-12 ms typically, up to 400 ms). Over the full ones alone, at large M, where
    most trials are pruned at the short fidelity, that median had 3-5 values: in
    examples/h100-e64-n1408-throughput/third-run/three-m.db at M=4096, 3 of 5 read 184-191
    ms where the short ones read a median 7 ms, and the plan raced 1 of 3 finalists at one
    call a graph, still "over" its budget, at 214 ms a measurement planned against 32 ms
    measured. Both fidelities capture graphs of the same calls; a full one's rest read
    about 3 ms more at M=64 (its 25 timed replays' events against 6). Empty where no trial
    recorded a cost."""
    from optuna.trial import TrialState

    full, final = FIDELITIES["full"], FIDELITIES[final_fidelity]
    scale = ((final.warmup + final.replays) * final.calls_per_graph
             / ((full.warmup + full.replays) * full.calls_per_graph))
    wanted, replay, other = set(configs), {}, []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        for fidelity in (record.SHORT, record.FULL):
            brief = t.user_attrs.get(fidelity) or {}
            if brief.get("cost_s") is None \
                    or brief.get("status", Status.OK.value) != Status.OK.value:
                continue
            spent = max(0.0, float(brief["cost_s"]) - float(brief.get("compile_s") or 0.0))
            gpu = brief.get("gpu_s")
            # Where the benchmarker did not time its replays apart, all of it scales.
            gpu = spent if gpu is None else min(spent, float(gpu))
            other.append(spent - gpu)
            if fidelity == record.FULL and t.state == TrialState.COMPLETE:
                config = config_of(kernel, t)
                if config in wanted:
                    replay.setdefault(config, gpu * scale)
    if not other:
        return []
    rest = statistics.median(other)
    return [None if c not in replay else MeasurementCost(replay_s=replay[c], other_s=rest)
            for c in configs]


def finalists_plan(kernel: Any, study: optuna.Study, racers: int, entries: Sequence[Config],
                   fixed: int, measuring_s: float, final_fidelity: str = "full",
                   share: float | None = SHARE, rule: DecisionRule = RULE) -> FinalistsPlan:
    """What the finalists' run of ``study`` measures (:func:`plan_finalists`): ``racers``
    finalists and ``fixed`` configs in every round (vLLM's default, a file to beat), all
    of them in ``entries`` (the finalists in race order, fastest first, then the fixed
    ones), within ``share`` of the batch size's GPU time, whose trials measured for
    ``measuring_s`` seconds (compile waits excluded)."""
    return plan_finalists(FIDELITIES[final_fidelity],
                          measurement_costs(kernel, study, entries, final_fidelity),
                          racers, fixed, finalists_budget(measuring_s, share), rule)


def previous_record(study: optuna.Study) -> dict[str, Any]:
    """What a new finalists' record keeps of the one it replaces (``searcher decide``)."""
    old = study.user_attrs.get(record.FINAL)
    if not old:
        return {}
    kept = {k: old.get(k) for k in ("winner", "winner_us", "default_us", "rounds", "decided_from")}
    kept["decision"] = (old.get("decision") or {}).get("reason")
    return {"previous": kept}
