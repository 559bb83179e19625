"""Tests for searcher.strategies.pruners: pruners by name and BestRatioPruner on real Optuna studies."""

from __future__ import annotations

import math
import pickle

import optuna
import pytest
from optuna.trial import TrialState

from searcher.errors import SpecError
from searcher.strategies.pruners import (
    DEFAULT_PRUNER,
    PRUNER_NAMES,
    PRUNERS,
    BestRatioPruner,
    make_pruner,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_with(pruner: optuna.pruners.BasePruner, completed: list[float]) -> optuna.Study:
    """An in-memory study holding one COMPLETE trial per value."""
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for value in completed:
        trial = study.ask()
        trial.report(value, 0)
        study.tell(trial, value)
    return study


def judged(study: optuna.Study, *reports: float) -> bool:
    """Report short times at steps 0, 1, ... to a new trial; would it be pruned?"""
    trial = study.ask()
    for step, value in enumerate(reports):
        trial.report(value, step)
    verdict = trial.should_prune()
    study.tell(trial, state=TrialState.PRUNED if verdict else TrialState.FAIL)
    return verdict


# --- the registry ----------------------------------------------------------------------

def test_names() -> None:
    assert PRUNER_NAMES == ("halving", "hyperband", "median", "none", "percentile", "ratio")
    assert set(PRUNERS) == set(PRUNER_NAMES)
    assert DEFAULT_PRUNER == "ratio"


@pytest.mark.parametrize(("name", "cls"), [
    ("ratio", BestRatioPruner),
    ("median", optuna.pruners.MedianPruner),
    ("percentile", optuna.pruners.PercentilePruner),
    ("halving", optuna.pruners.SuccessiveHalvingPruner),
    ("hyperband", optuna.pruners.HyperbandPruner),
    ("none", optuna.pruners.NopPruner),
])
def test_make_pruner_by_name(name: str, cls: type) -> None:
    pruner = make_pruner(name)
    assert isinstance(pruner, cls)
    assert isinstance(pruner, optuna.pruners.BasePruner)


def test_registry_defaults() -> None:
    assert PRUNERS["median"].defaults == {"n_startup_trials": 5, "n_warmup_steps": 0}
    assert PRUNERS["percentile"].defaults["percentile"] == 25.0
    pruner = make_pruner("ratio")
    assert (pruner.ratio, pruner.min_completed) == (1.10, 1)


def test_options_override_defaults() -> None:
    pruner = make_pruner("ratio", ratio=1.5, min_completed=3)
    assert (pruner.ratio, pruner.min_completed) == (1.5, 3)


def test_unknown_name() -> None:
    with pytest.raises(SpecError) as info:
        make_pruner("medain")
    assert str(info.value) == (
        "unknown pruner 'medain'; must be one of: halving, hyperband, median, none, "
        "percentile, ratio (did you mean 'median'?)"
    )


def test_unknown_option() -> None:
    with pytest.raises(SpecError) as info:
        make_pruner("ratio", ration=1.2)
    message = str(info.value)
    assert "pruner 'ratio' has no option 'ration'" in message
    assert "did you mean 'ratio'?" in message
    assert "it takes: ratio, min_completed" in message
    with pytest.raises(SpecError, match="'none' has no option 'ratio'; it takes: no options"):
        make_pruner("none", ratio=1.2)


@pytest.mark.parametrize(("options", "rule"), [
    ({"ratio": 1.0}, "ratio = 1.0 must be a number > 1"),
    ({"ratio": 0.9}, "ratio = 0.9 must be a number > 1"),
    ({"ratio": math.inf}, "ratio = inf must be a number > 1"),
    ({"ratio": True}, "ratio = True must be a number > 1"),
    ({"min_completed": 0}, "min_completed = 0 must be an integer >= 1"),
    ({"min_completed": 2.0}, "min_completed = 2.0 must be an integer >= 1"),
])
def test_bad_ratio_options(options: dict[str, object], rule: str) -> None:
    with pytest.raises(SpecError) as info:
        make_pruner("ratio", **options)
    assert str(info.value) == f"pruner 'ratio': {rule}"


# --- BestRatioPruner -------------------------------------------------------------------

def test_never_prunes_without_a_complete_trial() -> None:
    study = study_with(BestRatioPruner(), [])
    assert not judged(study, 1e9)


def test_prunes_above_ratio_times_best_and_keeps_the_rest() -> None:
    study = study_with(BestRatioPruner(ratio=1.10), [130.0, 100.0, 120.0])  # best 100
    assert not judged(study, 95.0)   # better than the best
    assert not judged(study, 105.0)  # within 10%
    assert not judged(study, 110.0)  # exactly at the line: not above it
    assert judged(study, 110.5)
    assert judged(study, 250.0)


def test_ratio_is_configurable() -> None:
    study = study_with(BestRatioPruner(ratio=2.0), [100.0])
    assert not judged(study, 190.0)
    assert not judged(study, 200.0)  # exactly ratio x best (exact in binary): kept
    assert judged(study, 200.5)


def test_waits_for_min_completed() -> None:
    pruner = BestRatioPruner(min_completed=2)
    study = study_with(pruner, [100.0])
    assert not judged(study, 1000.0)
    study_with_two = study_with(pruner, [100.0, 300.0])
    assert judged(study_with_two, 1000.0)


def test_uses_the_latest_intermediate_value() -> None:
    study = study_with(BestRatioPruner(), [100.0])
    assert not judged(study, 500.0, 101.0)  # slow first look, fine second look
    assert judged(study, 101.0, 500.0)


def test_ignores_infinite_values() -> None:
    pruner = BestRatioPruner()
    # A COMPLETE trial with an infinite time is not a best, nor counted as completed.
    study = study_with(pruner, [math.inf])
    assert not judged(study, 1e9)
    study = study_with(pruner, [math.inf, 200.0])
    assert judged(study, 221.0)
    assert not judged(study, 219.0)
    # An infinite short time is not judged (the objective records the failure).
    assert not judged(study, math.inf)
    # Infinite values do not count towards min_completed either.
    study = study_with(BestRatioPruner(min_completed=2), [math.inf, 200.0])
    assert not judged(study, 1e9)


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_best_is_the_smallest_finite_complete_value_on_each_storage(tmp_path, storage) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}" if storage == "sqlite" else None
    pruner = BestRatioPruner()
    study = optuna.create_study(storage=url, direction="minimize", pruner=pruner)
    assert pruner.best_value(study) is None
    for values in ([math.inf], [math.inf, 300.0], [math.inf, 300.0, 200.0, 250.0]):
        for value in values[len(study.trials):]:
            study.tell(study.ask(), value)
        finite = [v for v in values if math.isfinite(v)]
        assert pruner.best_value(study) == (min(finite) if finite else None)
    study.tell(study.ask(), -math.inf)  # not a time: the smallest finite value stays
    assert pruner.best_value(study) == 200.0


def test_a_decision_reads_the_best_trial_not_every_trial() -> None:
    # Reading every trial costs an RDB storage a re-read of each unfinished one (issue #13).
    study = study_with(BestRatioPruner(), [130.0, 100.0])

    def every_trial(*args, **kwargs):
        raise AssertionError("the pruner read every trial")

    study.get_trials = every_trial
    study._get_trials = every_trial
    assert judged(study, 111.0)
    assert not judged(study, 109.0)


def test_only_complete_trials_set_the_best() -> None:
    study = study_with(BestRatioPruner(), [100.0])
    # A pruned trial that reported 10 and a failed one do not lower the best.
    trial = study.ask()
    trial.report(10.0, 0)
    study.tell(trial, state=TrialState.PRUNED)
    trial = study.ask()
    trial.report(5.0, 0)
    study.tell(trial, state=TrialState.FAIL)
    assert not judged(study, 105.0)
    assert judged(study, 111.0)


def test_no_report_means_no_pruning() -> None:
    study = study_with(BestRatioPruner(), [100.0])
    trial = study.ask()
    assert not trial.should_prune()


def test_prunes_inside_optimize() -> None:
    times = iter([100.0, 500.0, 105.0, 90.0, 98.0, 120.0])

    def objective(trial: optuna.Trial) -> float:
        short = next(times)
        trial.report(short, 0)
        if trial.should_prune():
            raise optuna.TrialPruned()
        return short

    study = optuna.create_study(direction="minimize", pruner=make_pruner("ratio"))
    study.optimize(objective, n_trials=6)
    states = [t.state for t in study.trials]
    # 500 > 1.1*100; 120 > 1.1*90 once 90 is the best.
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE,
                      TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]


def test_needs_a_minimising_study() -> None:
    study = optuna.create_study(direction="maximize", pruner=BestRatioPruner())
    trial = study.ask()
    trial.report(1.0, 0)
    with pytest.raises(ValueError, match="minimises"):
        trial.should_prune()


def test_pickles_and_is_one_class() -> None:
    from searcher.strategies import pruners

    pruner = pickle.loads(pickle.dumps(BestRatioPruner(ratio=1.3, min_completed=2)))
    assert isinstance(pruner, pruners.BestRatioPruner)
    assert (pruner.ratio, pruner.min_completed) == (1.3, 2)
    assert repr(pruner) == "BestRatioPruner(ratio=1.3, min_completed=2)"
