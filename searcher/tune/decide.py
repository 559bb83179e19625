"""``searcher decide``: decide again what each finished batch size exports, by measuring
its finalists again (:func:`redecide`) or from the rounds stored with it
(:func:`redecide_stored`), under the current decision rule
(:mod:`searcher.strategies.decide`)."""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Sequence

from searcher.store import record
from searcher.store.record import MSummary, summarize_study
from searcher.store.storage import load_existing_study, study_name
from searcher.strategies.decide import RULE, DecisionRule, Outcome, judge
from searcher.tune.finalists import previous_record
from searcher.tune.search import NullView, SearchOptions, _Searcher

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.measure.harness import Benchmarker
    from searcher.study.spec import StudySpec

__all__ = ["redecide", "redecide_stored"]


def redecide(spec: StudySpec, bencher: Benchmarker, opts: SearchOptions,
             batch_sizes: Sequence[int]) -> dict[int, MSummary | None]:
    """Decide again, by measuring, what each finished batch size exports (``searcher decide``).

    For every M whose search finished, the finalists (the same best trials the run took),
    vLLM's default and the file's config (``opts.against``, else the one the stored
    record competed against, if any) are re-measured interleaved and
    :func:`searcher.strategies.decide.judge` picks under the current rule, as at the end of a run;
    the record replaces the stored one and keeps its winner and decision as
    ``previous``. Batch sizes without a finished search map to None (nothing to decide).

    Raises:
        ConfigError: the storage holds the study under another device or method
            (as ``run``).
    """
    searcher = _Searcher(spec, bencher, opts, NullView(), time.monotonic)
    # The finalists, the default and the file are all re-measured here, in this run's
    # replay order: a study searched in another one (before issue #13's) can be decided.
    searcher.accept = (record.TIMING,)
    out: dict[int, MSummary | None] = {}
    try:
        studies = {}
        for M in batch_sizes:
            name = study_name(spec.kernel, opts.kind, spec.shape, opts.device, M)
            found = load_existing_study(searcher.storage, name)
            if found is None or not found.user_attrs.get(record.FINAL):
                out[M] = None  # nothing searched here: no study is made for it
                continue
            # The identity checks of a run, for every batch size before any is measured:
            # a study made differently refuses the whole decide, not its second half.
            studies[M] = searcher.study(M)
        for M, study in studies.items():
            against = next((e["config"] for e in study.user_attrs[record.FINAL]["entries"]
                            if e.get("against")), None)
            searcher.finalize(study, M, against=None if against is None
                              else spec.kernel.config_from_dict(against))
            out[M] = summarize_study(spec.kernel, study, M)
    finally:
        searcher.heartbeat.close()
        searcher._asker.shutdown(wait=True)
    return out


def redecide_stored(kernel: Any, study: optuna.Study, M: int,
                    rule: DecisionRule | None = None) -> MSummary | None:
    """Decide again from the finalists' rounds stored with ``study``, without measuring
    (``searcher decide --stored``, for a study whose GPU is not at hand).

    The candidate is the one the finalists' run judged (its stored decision), or, for a
    record without one, the fastest non-default finalist by median over the selection
    rounds every finalist had, as the run picks it. It is judged against vLLM's default
    under ``rule`` (default: searcher's, with no further rounds to measure, so a pair the
    rule leaves undecided counts as equal); the default is exported unless the candidate
    is faster beyond the noise. A record the current rule decided stays as it is. The
    record keeps the previous winner as ``previous``.
    Returns None when the study holds no finalists' record or its default was not
    re-measured (nothing to judge against).
    """
    final = study.user_attrs.get(record.FINAL)
    if not final:
        return None
    entries = final["entries"]
    default = next((e for e in entries if e["default"]), None)
    if default is None:  # the default failed as a trial: nothing to judge against
        return summarize_study(kernel, study, M)
    rule = rule or dataclasses.replace(RULE, max_rounds=0)
    others = [e for e in entries if not e["default"]]
    judged = (final.get("decision") or {}).get("candidate")
    candidate = next((e for e in others if e["config"] == judged), None)
    if candidate is None and others:
        # As the finalists' run picks: the lowest median of the rounds every entry had.
        common = min(len(e["times_us"]) for e in entries)
        candidate = min(others, key=lambda e: statistics.median(e["times_us"][:common]))
    verdict = judge(candidate["times_us"], default["times_us"], rule) if candidate else None
    winner = candidate if verdict is not None and verdict.outcome is Outcome.FASTER else default
    decision = None
    if verdict is not None:
        decision = {"outcome": verdict.outcome.value, "candidate": candidate["config"],
                    "ratio": verdict.ratio, "noise": verdict.noise, "rounds": verdict.rounds,
                    "reason": f"candidate {kernel.config_from_dict(candidate['config']).short()}: "
                              f"{verdict.reason()}", "rule": asdict(rule)}
    old = final.get("decision") or {}
    if (final["winner"] == winner["config"] and old.get("candidate") == (decision or {}).get(
            "candidate") and old.get("outcome") == (decision or {}).get("outcome")):
        return summarize_study(kernel, study, M)  # decided so already: the record stays
    study.set_user_attr(record.FINAL, {
        **final, **previous_record(study),
        "winner": winner["config"], "winner_us": winner["median_us"],
        "decision": decision, "decided_from": "stored rounds",
    })
    return summarize_study(kernel, study, M)
