"""Tests for searcher.store.record: the stored record's schema, and who may read it."""

from __future__ import annotations

import subprocess
import sys

from searcher.strategies.decide import judge
from searcher.measure.measurement import Status
from searcher.store.record import COUNTED_STATUSES, TrialStatus, stored_wall_time, within_noise


def test_every_measurement_status_but_invalid_is_a_trial_status() -> None:
    # A measurement's INVALID (the benchmarker cannot measure the config) is stored as
    # UNMEASURABLE; INVALID on a trial is a broken space constraint.
    for status in Status:
        assert TrialStatus(status.value).value == status.value
    assert TrialStatus.OK in COUNTED_STATUSES and TrialStatus.PRUNED in COUNTED_STATUSES
    for free in (TrialStatus.INVALID, TrialStatus.UNMEASURABLE, TrialStatus.DUPLICATE,
                 TrialStatus.NOT_RUN, TrialStatus.INTERRUPTED):
        assert free not in COUNTED_STATUSES
    assert "ok" in COUNTED_STATUSES  # stored values compare with the enum


def test_wall_time_adds_every_process() -> None:
    attrs = {"wall_s": 1.0, "wall_s:a:1": 2.0, "wall_s:b:2": 3.5, "final": {}}
    assert stored_wall_time(attrs) == 6.5


def test_within_noise_is_the_decision_rule() -> None:
    dflt = [100.0] * 5
    assert within_noise(judge([99.0, 99.5, 99.2, 99.4, 99.1], dflt))  # < 1% gain
    assert not within_noise(judge([90.0, 90.5, 90.2, 90.4, 90.1], dflt))
    assert not within_noise(judge([110.0, 110.5, 110.2, 110.4, 110.1], dflt))
    assert within_noise(judge([90.0, 90.5, 90.2], dflt[:3]))  # fewer rounds than the rule needs
    assert not within_noise(None)


def test_reading_results_does_not_import_the_search_loop() -> None:
    code = ("import sys, searcher.results.winners, searcher.results.report, "
            "searcher.results.compare, searcher.tune.view; "
            "print('searcher.tune.search' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_a_studys_identity_is_what_open_study_checks() -> None:
    from pathlib import Path

    from searcher.store.record import IDENTITY
    from searcher.study.spec import load_spec
    from searcher.store.storage import expected_attrs

    spec = load_spec(Path(__file__).resolve().parent.parent / "studies" / "h100-e64-n1408.toml")
    info = {"backend": "builtin", "triton_version": "3.6.0", "name": "NVIDIA H100"}
    attrs = expected_attrs("search", spec.shape, spec.gpu, 64, spec.space, info)
    assert tuple(attrs) == IDENTITY
    assert (attrs["kernel"], attrs["backend"], attrs["triton_version"]) == \
        ("fused_moe", "builtin", "3.6.0")


def test_time_split_parts_add_up_and_unknowns_stay_unknown() -> None:
    from searcher.store.record import COST_S, FULL, SHORT, TimeSplit, _trial_time

    split = TimeSplit(wall_s=10.0)
    _trial_time({COST_S: 3.0, SHORT: {"cost_s": 1.0, "compile_s": 0.5, "gpu_s": 0.25},
                 FULL: {"cost_s": 2.0, "compile_s": 0.0, "gpu_s": 1.5}}, split)
    _trial_time({COST_S: 1.0, SHORT: {"cost_s": 1.0}}, split)  # older record: no compile_s
    split.finalists_s = 2.0
    assert (split.measuring_s, split.compile_s, split.gpu_s) == (3.5, 0.5, 1.75)
    assert split.host_s == 10.0 - 3.5 - 0.5 - 2.0
    assert split.to_dict()["host_s"] == split.host_s

    old = TimeSplit(measuring_s=1.0, compile_s=1.0, finalists_s=None, wall_s=5.0)
    assert old.host_s is None  # the finalists' cost was not recorded: no host overhead
    total = split + old
    assert (total.measuring_s, total.wall_s, total.finalists_s, total.host_s) == \
        (4.5, 15.0, None, None)
    assert total.gpu_s == 1.75  # known in part: the part that is known
    assert (TimeSplit() + TimeSplit()).gpu_s is None


def test_a_kept_default_has_the_noise_of_the_pair_the_rule_judged() -> None:
    # Its rounds against themselves have no noise; status once said 0.0 where the decision
    # it printed beside said 7.1%.
    import optuna

    from searcher.kernels.fused_moe import FUSED_MOE
    from searcher.store.record import FINAL, summarize_study

    default = FUSED_MOE.default_config(_shape(), 64)
    other = dict(default.to_dict(), num_stages=default.num_stages + 1)
    cand, dflt = [100.0, 93.0, 110.0, 95.0, 104.0], [101.0, 100.0, 100.0, 101.0, 100.0]
    verdict = judge(cand, dflt)
    study = optuna.create_study()
    study.set_user_attr(FINAL, {
        "entries": [{"config": other, "times_us": cand, "median_us": 100.0, "default": False,
                     "against": False},
                    {"config": default.to_dict(), "times_us": dflt, "median_us": 100.0,
                     "default": True, "against": False}],
        "winner": default.to_dict(), "winner_us": 100.0, "default_us": 100.0,
        "decision": {"outcome": verdict.outcome.value, "noise": verdict.noise,
                     "reason": "candidate ...: " + verdict.reason()}})
    s = summarize_study(FUSED_MOE, study, 64)
    assert verdict.noise > 0.05 and s.noise == verdict.noise


def _shape():
    from pathlib import Path

    from searcher.study.spec import load_spec

    root = Path(__file__).resolve().parent.parent
    return load_spec(root / "studies" / "h100-e64-n1408.toml").shape
