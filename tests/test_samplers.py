"""Tests for searcher.strategies.samplers: samplers by name, run on real in-memory Optuna studies."""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.errors import SpecError
from searcher.strategies.samplers import (
    DEFAULT_SAMPLER,
    SAMPLER_NAMES,
    SAMPLERS,
    grid_search_space,
    make_sampler,
    measured_only,
)
from searcher.study.space import Space, space_from_dict

optuna.logging.set_verbosity(optuna.logging.WARNING)

# 4 x 2 x 1 x 1 x 2 x 3 = 48 configs, one param of each encoding (log2, index, range).
TINY = {
    "schema": 1,
    "params": {
        "BLOCK_SIZE_M": [16, 32, 64, 128],
        "BLOCK_SIZE_N": [32, 128],
        "BLOCK_SIZE_K": [64],
        "GROUP_SIZE_M": [1],
        "num_warps": [4, 8],
        "num_stages": [2, 3, 4],
    },
}


@pytest.fixture(scope="module")
def space() -> Space:
    return space_from_dict(TINY, where="tiny", name="tiny")


def fake_time(config: KernelConfig) -> float:
    """A smooth, made-up time in microseconds; best at M64 N128 w8 s3."""
    return (
        100.0
        + abs(config.BLOCK_SIZE_M - 64) / 4
        + (0 if config.BLOCK_SIZE_N == 128 else 15)
        + (0 if config.num_warps == 8 else 5)
        + abs(config.num_stages - 3) * 3
    )


def run(space: Space, sampler: optuna.samplers.BaseSampler, n_trials: int) -> optuna.Study:
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(lambda trial: fake_time(space.suggest(trial)), n_trials=n_trials)
    return study


def test_names() -> None:
    assert SAMPLER_NAMES == ("cmaes", "gp", "grid", "random", "tpe")
    assert set(SAMPLERS) == set(SAMPLER_NAMES)
    assert DEFAULT_SAMPLER == "tpe"


def test_unknown_name() -> None:
    with pytest.raises(SpecError) as info:
        make_sampler("tpx", 0)
    assert str(info.value) == (
        "unknown sampler 'tpx'; must be one of: cmaes, gp, grid, random, tpe (did you mean 'tpe'?)"
    )


def test_unknown_name_without_a_close_match() -> None:
    with pytest.raises(SpecError) as info:
        make_sampler("annealing", 0)
    assert "did you mean" not in str(info.value)
    assert "must be one of: cmaes, gp, grid, random, tpe" in str(info.value)


@pytest.mark.parametrize(("name", "cls"), [
    ("tpe", optuna.samplers.TPESampler),
    ("gp", optuna.samplers.GPSampler),
    ("cmaes", optuna.samplers.CmaEsSampler),
    ("random", optuna.samplers.RandomSampler),
])
def test_each_sampler_runs_a_study_over_the_space(space: Space, name: str, cls: type) -> None:
    sampler = make_sampler(name, 0, space=space, n_startup_trials=3)
    assert isinstance(sampler, cls)
    study = run(space, sampler, n_trials=6)  # 3 modelled trials after 3 random ones
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6
    for trial in trials:
        config = space.from_params(trial.params)  # every proposal decodes to a space config
        assert trial.value == pytest.approx(fake_time(config))
    assert study.best_value >= 100.0


def test_tpe_settings() -> None:
    # Optuna keeps these private; they are what make TPE fit this problem and workers.
    sampler = make_sampler("tpe", 1, n_startup_trials=5)
    assert sampler._multivariate is True
    assert sampler._group is False
    assert sampler._constant_liar is True
    assert sampler._n_startup_trials == 5
    assert make_sampler("tpe", 1)._n_startup_trials == 8


def test_tpe_beats_its_random_start_on_a_smooth_objective(space: Space) -> None:
    study = run(space, make_sampler("tpe", 3, n_startup_trials=5), n_trials=30)
    assert study.best_value == pytest.approx(100.0)  # the optimum of fake_time


def test_cmaes_does_not_warn_about_independent_sampling(space: Space) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        run(space, make_sampler("cmaes", 0, n_startup_trials=2), n_trials=4)


def test_constraints_func_reaches_the_model_samplers(space: Space) -> None:
    def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
        return [1.0 if trial.params.get("log2_BLOCK_SIZE_M", 0) > 5 else -1.0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Optuna 5 prefers set_constraint
        for name in ("tpe", "gp"):
            sampler = make_sampler(name, 0, constraints_func=constraints, n_startup_trials=2)
            assert sampler._constraints_func is constraints
            study = run(space, sampler, n_trials=4)
            for t in study.trials:
                expected = 1.0 if t.params["log2_BLOCK_SIZE_M"] > 5 else -1.0
                assert t.constraints == {"0": expected}


def test_seeded_samplers_repeat_and_differ(space: Space) -> None:
    def proposals(seed: int) -> list[dict[str, int]]:
        return [t.params for t in run(space, make_sampler("random", seed), 8).trials]

    assert proposals(11) == proposals(11)
    assert proposals(11) != proposals(12)


def test_grid_visits_every_point_exactly_once(space: Space) -> None:
    sampler = make_sampler("grid", 0, space=space)
    assert isinstance(sampler, optuna.samplers.GridSampler)
    study = run(space, sampler, n_trials=500)  # stops itself when the grid is done
    seen = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(seen) == 48
    assert len(set(seen)) == 48
    configs = {space.from_params(t.params) for t in study.trials}
    expected = set(itertools.starmap(KernelConfig, itertools.product(
        *(p.values for p in space.params))))
    assert configs == expected


def test_grid_search_space_is_the_encoded_grid(space: Space) -> None:
    assert grid_search_space(space) == {
        "log2_BLOCK_SIZE_M": [4, 5, 6, 7],
        "BLOCK_SIZE_N_index": [0, 1],
        "BLOCK_SIZE_K": [64],
        "GROUP_SIZE_M": [1],
        "log2_num_warps": [2, 3],
        "num_stages": [2, 3, 4],
    }


def test_grid_needs_a_space() -> None:
    with pytest.raises(SpecError, match="'grid' needs the search space"):
        make_sampler("grid", 0)


def test_grid_rejects_continuous_params() -> None:
    class FloatSpace:
        def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
            return {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}

    with pytest.raises(SpecError, match="parameter 'x'"):
        make_sampler("grid", 0, space=FloatSpace())


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_startup_trials(bad: object) -> None:
    with pytest.raises(SpecError, match="startup trials"):
        make_sampler("tpe", 0, n_startup_trials=bad)  # type: ignore[arg-type]


def test_importing_samplers_does_not_import_optuna() -> None:
    code = ("import sys, searcher.strategies.samplers, searcher.strategies.pruners; "
            "print('optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _with_duplicates(space: Space, duplicate_state: optuna.trial.TrialState) -> optuna.Study:
    """Two measured trials, then two duplicates of the first stored in ``duplicate_state``."""
    from optuna.trial import create_trial

    study = optuna.create_study(direction="minimize")
    configs = [KernelConfig(16, 32, 64, 1, 4, 2), KernelConfig(64, 128, 64, 1, 8, 3)]
    for config in configs:
        study.add_trial(create_trial(params=space.to_params(config),
                                     distributions=space.distributions(),
                                     value=fake_time(config), user_attrs={"status": "ok"}))
    for _ in range(2):
        study.add_trial(create_trial(params=space.to_params(configs[0]),
                                     distributions=space.distributions(),
                                     state=duplicate_state,
                                     user_attrs={"status": "duplicate", "duplicate_of": 0}))
    return study


@pytest.mark.parametrize("name", ["tpe", "cmaes", "grid"])
def test_duplicates_stored_pruned_are_sampled_as_when_stored_failed(space, name):
    from optuna.trial import TrialState

    def proposals(study: optuna.Study, sampler: optuna.samplers.BaseSampler) -> list[dict]:
        study.sampler = sampler
        out = []
        for _ in range(6):
            trial = study.ask()
            out.append(trial.params if trial.params else space.to_params(space.suggest(trial)))
            study.tell(trial, fake_time(space.from_params(out[-1])))
        return out

    def sampler() -> optuna.samplers.BaseSampler:
        return make_sampler(name, 5, space=space, n_startup_trials=3)

    before = proposals(_with_duplicates(space, TrialState.FAIL), sampler())
    now = proposals(_with_duplicates(space, TrialState.PRUNED), measured_only(sampler()))
    assert now == before
    if name == "tpe":
        # Unwrapped, TPE models the pruned duplicates (2 measured + 2 pruned >= 3 start-up
        # trials), and proposes otherwise.
        assert proposals(_with_duplicates(space, TrialState.PRUNED), sampler()) != before
