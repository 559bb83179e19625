"""How much the finalists' run may measure: a share of its batch size's GPU time.

The finalists' run (``finalize`` in :mod:`searcher.tune.search`) races the search's best
configs against vLLM's default in interleaved rounds and lets the decision rule
(:mod:`~searcher.strategies.decide`) judge the fastest. At the ``full`` fidelity each
config of a round replays a CUDA graph of 10 layer calls 25 times; at large M, where one
call takes 0.5-1.2 ms, the 14 measurements of a race among 4 finalists took up to a third
of a batch size's wall time (issue #13: 26-32% at M=1536 on the lent H100, 28% on the
H200).

:func:`plan_finalists` bounds that cost: the run may spend at most ``share`` of the batch
size's GPU time (its trials' measuring plus the finalists), that is
``share / (1 - share)`` times what the trials' measurements took. To fit, its rounds time
fewer layer calls per graph, down to one; they keep the warm-ups and the 20 timed replays
of the fidelity, so every routing of the cycle is still timed (README, "Same routings at
every fidelity"), and the candidate and the default stay timed alike, round by round.
Only where one call a graph does not fit either does the race start with fewer finalists.
The plan counts the rounds the rule needs at least (``min_rounds``). Rounds the rule adds
while a pair is still undecided (up to ``max_rounds``) run only while one more fits the
budget left (:func:`searcher.tune.finalists.run_finalists`): issue #13 asks both, "at most
15%" and "rounds added only while the decision rule is still open". Where the budget ends
first, the pair is judged as at the rule's cap: the incumbent stays.

Why calls and not replays or rounds: the replays are the routings (fewer would time a
different sample of them than the search did), and the rounds are what the rule needs to
trust a win. Fewer calls a graph change what a replay averages, not what it samples; the
rule measures the noise that follows from it and keeps the default when the ratio does not
clear it. A graph of one call is also what a served model runs per layer: each layer's
call follows other layers' calls, never its own.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

from searcher.measure.measurement import Fidelity
from searcher.strategies.decide import RULE, DecisionRule

__all__ = ["SHARE", "SHARE_RULE", "valid_share", "MeasurementCost", "FinalistsPlan",
           "kept_after_round", "race_measurements", "finalists_budget", "plan_finalists"]

#: The most of a batch size's GPU time the finalists' run is planned to take (issue #13).
SHARE = 0.15
#: What a share must be, as the errors that refuse one say it.
SHARE_RULE = f"a fraction above 0 and at most 1 ({SHARE} is {SHARE * 100:g}%; 1: unbounded)"


def valid_share(share: float) -> bool:
    """Whether ``share`` obeys :data:`SHARE_RULE` (NaN does not)."""
    return 0.0 < share <= 1.0


@dataclass(frozen=True)
class MeasurementCost:
    """What one measurement of a config cost at the base fidelity, in seconds (from its
    trial): ``replay_s`` replaying its graphs (scales with the calls in a graph) and
    ``other_s`` the rest (building and capturing the graph, copying inputs, syncing).
    Where a benchmarker did not time its replays apart, all of it is ``replay_s``."""

    replay_s: float
    other_s: float = 0.0

    def at(self, calls: int, base: Fidelity) -> float:
        """Seconds at ``calls`` layer calls a graph instead of ``base.calls_per_graph``."""
        return self.other_s + self.replay_s * calls / base.calls_per_graph


@dataclass(frozen=True)
class FinalistsPlan:
    """What the finalists' run measures: ``finalists`` of the search's best configs, at
    ``fidelity``; ``planned_s`` is the expected cost in seconds of the ``measurements`` the
    rule needs at least (compile waits not included: a run's finalists were compiled for
    their trials, but a resumed run or ``searcher decide`` compiles them again), and
    ``budget_s`` the bound (None: unbounded, or no trial recorded a cost to plan from)."""

    fidelity: Fidelity
    finalists: int
    measurements: int
    planned_s: float | None = None
    budget_s: float | None = None

    @property
    def within_budget(self) -> bool:
        return self.budget_s is None or (self.planned_s or 0.0) <= self.budget_s


def kept_after_round(racing: int) -> int:
    """Finalists still racing after a selection round that ``racing`` raced (before the
    last): the faster half, rounded up."""
    return (racing + 1) // 2


def race_measurements(finalists: int, fixed: int, rule: DecisionRule = RULE) -> int:
    """Measurements a finalists' run takes at least: its selection race (every finalist in
    the first round, the faster half of the rest after each) and then the picked candidate
    until ``rule.min_rounds`` paired rounds, with ``fixed`` configs (vLLM's default, a file
    to beat) in every round. A finalist that loses a round to the default leaves earlier,
    so this is an upper bound for the rounds up to ``min_rounds``. With no finalist and
    no file to beat (``fixed`` <= 1), one round of the default alone."""
    if finalists == 0 and fixed <= 1:
        return fixed
    selection = max(1, rule.selection_rounds)
    racing, total = finalists, 0
    for round_ in range(selection):
        total += racing + fixed
        if round_ + 1 < selection and racing > 1:
            racing = kept_after_round(racing)
    return total + max(0, rule.min_rounds - selection) * (min(1, finalists) + fixed)


def finalists_budget(measuring_s: float, share: float | None = SHARE) -> float | None:
    """Seconds the finalists' run may take so that it is at most ``share`` of
    ``measuring_s`` (the batch size's trials' measuring, compile waits excluded) plus
    itself. None: no bound (``share`` None or 1, or nothing measured).

    Raises ValueError for a share outside (0, 1]."""
    if share is None:
        return None
    if not valid_share(share):
        raise ValueError(f"finalists share {share}: {SHARE_RULE}")
    if share == 1.0 or not math.isfinite(measuring_s) or measuring_s <= 0.0:
        return None
    return measuring_s * share / (1.0 - share)


def plan_finalists(base: Fidelity, costs: Sequence[MeasurementCost | None], finalists: int,
                   fixed: int, budget_s: float | None,
                   rule: DecisionRule = RULE) -> FinalistsPlan:
    """The plan that keeps the most finalists (at most ``finalists``) and then, for them,
    the most layer calls a graph (at most ``base``'s) whose :func:`race_measurements`
    fit ``budget_s`` (seconds). So calls are cut to one before a finalist is. Where
    nothing fits, the cheapest plan: one finalist at one call a graph (``within_budget``
    False). Where no cost is known (no trial recorded one), nothing can be planned:
    ``base``, unbounded (``budget_s`` None).

    ``costs`` gives one per entry, as :func:`searcher.tune.finalists.measurement_costs`
    does: the finalists' in race order (fastest first), then the ``fixed`` configs' (None
    where no trial recorded it). A plan of k finalists costs each of its measurements as
    the dearest of its own entries, the first k finalists' and the fixed ones': a
    finalist left out does not make the others' rounds dearer (on the lent H100 at
    M=4096, the third finalist's cost held the two that raced to one call a graph where
    four fitted). A list of another length costs every measurement as its dearest."""
    known = [c for c in costs if c is not None]
    measurements = race_measurements(finalists, fixed, rule)
    if budget_s is None or not known:
        return FinalistsPlan(base, finalists, measurements)
    aligned = len(costs) == finalists + fixed

    def each(k: int, calls: int) -> float:
        own = [c for c in [*costs[:k], *costs[finalists:]] if c is not None] if aligned else []
        return max(c.at(calls, base) for c in (own or known))

    for k in range(finalists, 0, -1) if finalists > 0 else [0]:
        n = race_measurements(k, fixed, rule)
        for calls in range(base.calls_per_graph, 0, -1):
            if n * each(k, calls) <= budget_s:
                return FinalistsPlan(_with_calls(base, calls), k, n, n * each(k, calls),
                                     budget_s)
    k = min(1, finalists)
    n = race_measurements(k, fixed, rule)
    return FinalistsPlan(_with_calls(base, 1), k, n, n * each(k, 1), budget_s)


def _with_calls(base: Fidelity, calls: int) -> Fidelity:
    """``base`` with ``calls`` layer calls a graph; it keeps its name, warm-ups and replays
    (benchmarkers look its recorded cost up by name and scale it by the calls)."""
    return base if calls == base.calls_per_graph else dataclasses.replace(
        base, calls_per_graph=calls)
