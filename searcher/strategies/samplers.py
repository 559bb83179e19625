"""Optuna samplers, picked by name.

A study spec names its sampler (``search.sampler``); :func:`make_sampler` builds it. Every
sampler minimises the same objective (microseconds per layer call) over the encoded
parameters that :meth:`searcher.study.space.Space.suggest` asks the trial for, so swapping one
name for another changes how the space is searched, never what it holds.

Optuna is imported inside the builders, so listing or validating specs does not load it.

Decisions:
    * ``tpe`` (default) is multivariate, because the six keys interact (a tile only fits in
      shared memory with few pipeline stages; BLOCK_SIZE_M only pays off with many tokens),
      and ``group=False``, because the space suggests the same parameters in every trial, so
      there are no conditional sub-spaces for ``group`` to split (and ``group`` is still an
      experimental Optuna argument). ``constant_liar=True`` keeps workers that share one
      study from proposing the same config while a trial is running.
    * ``constraints_func`` is passed to the samplers that model constraints (``tpe``,
      ``gp``) and ignored by those that cannot use it (``cmaes``, ``random``, ``grid``).
      Optuna 5 deprecates it in favour of ``trial.set_constraint(...)`` inside the
      objective, which every constrained sampler reads without being told; the objective
      should prefer that. The FutureWarning Optuna gives for the argument is left alone.
    * ``grid`` walks the space's whole encoded grid (every combination of the values of
      :meth:`Space.distributions`), each point once, then stops the study. Points that break
      a space constraint are the objective's to reject without benchmarking.
    * What a sampler sees (:func:`measured_only`): duplicates and proposals given back
      unmeasured are stored PRUNED (so that optuna-dashboard does not show them as failed)
      but shown to the sampler as FAIL, which is how they were stored before: TPE models
      PRUNED trials (a duplicate of the best config would count as a bad observation of
      it, and count towards its start-up trials), so storing them PRUNED alone would change
      what TPE proposes, in new studies and in old ones resumed.
    * Asking beside the tells (:func:`as_of`): the search asks the next batch on a thread
      while the main thread tells the study this batch's results. Inside ``as_of``, the
      asking thread's sampler sees the study as of one read (trials told since still
      running), so what it proposes does not depend on how the two threads interleave and
      seeded runs repeat.
    * Seeds: workers sharing a study should pass *different* seeds to the stochastic
      samplers (equal seeds make them propose the same random start-up configs) but the
      *same* seed to ``grid`` (Optuna shuffles the grid with it, and equal shuffles are what
      keeps workers off each other's points).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence

from searcher.errors import SpecError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover - typing only
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

__all__ = [
    "SAMPLERS",
    "SAMPLER_NAMES",
    "DEFAULT_SAMPLER",
    "DEFAULT_STARTUP_TRIALS",
    "make_sampler",
    "check_sampler_name",
    "grid_search_space",
    "measured_only",
]

ConstraintsFunc = Callable[["FrozenTrial"], Sequence[float]]

#: The sampler a spec gets when it names none.
DEFAULT_SAMPLER = "tpe"

#: Random trials before a model-based sampler starts modelling, when the caller gives none.
DEFAULT_STARTUP_TRIALS = 8


class _HasDistributions(Protocol):
    def distributions(self) -> Mapping[str, Any]: ...


def _tpe(seed: int | None, space: Any, constraints_func: ConstraintsFunc | None,
         n_startup_trials: int) -> BaseSampler:
    """Tree-structured Parzen estimator, multivariate, constant liar on."""
    from optuna.samplers import TPESampler

    return TPESampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        multivariate=True,
        group=False,
        constant_liar=True,
        constraints_func=constraints_func,
    )


def _gp(seed: int | None, space: Any, constraints_func: ConstraintsFunc | None,
        n_startup_trials: int) -> BaseSampler:
    """Gaussian-process Bayesian optimisation (needs torch; slower per trial than TPE)."""
    from optuna.samplers import GPSampler

    return GPSampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        # Timings of one config differ by up to a few percent between runs.
        deterministic_objective=False,
        constraints_func=constraints_func,
    )


def _cmaes(seed: int | None, space: Any, constraints_func: ConstraintsFunc | None,
           n_startup_trials: int) -> BaseSampler:
    """CMA evolution strategy over the encoded integers; ignores constraints."""
    from optuna.samplers import CmaEsSampler

    return CmaEsSampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        warn_independent_sampling=False,
    )


def _random(seed: int | None, space: Any, constraints_func: ConstraintsFunc | None,
            n_startup_trials: int) -> BaseSampler:
    """Uniform random search: the baseline every other sampler must beat."""
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=seed)


def _grid(seed: int | None, space: Any, constraints_func: ConstraintsFunc | None,
          n_startup_trials: int) -> BaseSampler:
    """Exhaustive search of the space's encoded grid, in a seeded random order."""
    from optuna.samplers import GridSampler

    if space is None:
        raise SpecError("sampler 'grid' needs the search space to enumerate its grid")
    return GridSampler(grid_search_space(space), seed=seed)


#: Sampler builders by name. Each takes (seed, space, constraints_func, n_startup_trials).
SAMPLERS: dict[str, Callable[[int | None, Any, ConstraintsFunc | None, int], BaseSampler]] = {
    "tpe": _tpe,
    "gp": _gp,
    "cmaes": _cmaes,
    "random": _random,
    "grid": _grid,
}

#: The names :func:`make_sampler` accepts, sorted (for validators and ``--help``).
SAMPLER_NAMES: tuple[str, ...] = tuple(sorted(SAMPLERS))



def check_sampler_name(name: object) -> str:
    """Return ``name`` if it names a sampler.

    Raises:
        SpecError: ``name`` is not one of :data:`SAMPLER_NAMES`; the message lists them
            and suggests the closest.
    """
    if not isinstance(name, str) or name not in SAMPLERS:
        hint = did_you_mean(name, SAMPLER_NAMES) if isinstance(name, str) else ""
        raise SpecError(
            f"unknown sampler {name!r}; must be one of: {', '.join(SAMPLER_NAMES)}{hint}"
        )
    return name


def grid_search_space(space: _HasDistributions) -> dict[str, list[Any]]:
    """Every value of every encoded parameter of ``space``, as GridSampler wants it.

    Integer distributions give ``low, low+step, ..., high``; categorical ones their choices.

    Raises:
        SpecError: a parameter's distribution cannot be listed (a continuous float).
    """
    from optuna.distributions import CategoricalDistribution, IntDistribution

    grid: dict[str, list[Any]] = {}
    for name, dist in space.distributions().items():
        if isinstance(dist, IntDistribution):
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        else:
            raise SpecError(
                f"sampler 'grid': parameter {name!r} has distribution {dist!r}; "
                "a grid needs integer or categorical parameters"
            )
    return grid


def make_sampler(
    name: str,
    seed: int | None,
    *,
    space: _HasDistributions | None = None,
    constraints_func: ConstraintsFunc | None = None,
    n_startup_trials: int | None = None,
) -> BaseSampler:
    """Build the Optuna sampler called ``name``.

    Args:
        name: one of :data:`SAMPLER_NAMES`.
        seed: seeds the sampler's random numbers; None draws a fresh seed.
        space: the search space; required by ``grid`` (its :meth:`distributions` give the
            grid), unused by the others.
        constraints_func: Optuna's constraints function (values <= 0 are feasible); used
            by ``tpe`` and ``gp`` only. Prefer ``trial.set_constraint`` in the objective.
        n_startup_trials: random trials before ``tpe``, ``gp`` or ``cmaes`` start
            modelling; :data:`DEFAULT_STARTUP_TRIALS` when None.

    Raises:
        SpecError: the name is unknown, ``grid`` has no space, or ``n_startup_trials`` is
            negative.
    """
    check_sampler_name(name)
    if n_startup_trials is None:
        n_startup_trials = DEFAULT_STARTUP_TRIALS
    if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) \
            or n_startup_trials < 0:
        raise SpecError(f"startup trials = {n_startup_trials!r} must be an integer >= 0")
    return SAMPLERS[name](seed, space, constraints_func, n_startup_trials)


_seen = threading.local()  # the trials as_of gave this thread, by trial id


@contextmanager
def as_of(trials: Sequence[FrozenTrial]) -> Iterator[None]:
    """Within this block, samplers wrapped by :func:`measured_only` see, on this thread,
    each of ``trials`` as it is in that list (a trial told since then still shows as
    running); trials created since are seen as stored.

    ``trials``: a study's trials read at one point (``study.get_trials(deepcopy=False)``);
    the search reads them where it starts asking ahead (searcher.tune.search)."""
    _seen.trials = {t._trial_id: t for t in trials}
    try:
        yield
    finally:
        _seen.trials = None


def measured_only(sampler: BaseSampler) -> BaseSampler:
    """``sampler``, seeing unmeasured bookkeeping trials as FAIL (see the module doc).

    The trials whose :data:`searcher.store.record.STATUS` is in
    :data:`searcher.store.record.BOOKKEEPING_STATUSES` (duplicate, not run) are stored PRUNED;
    every sampler call gets a view of the study in which they are FAIL with no value, so
    TPE, GP and CMA-ES ignore them and the grid counts them as visited, as before. Inside
    :func:`as_of`, that view shows the trials as they were read.
    """
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial, TrialState

    from searcher.store.record import BOOKKEEPING_STATUSES, STATUS

    bookkeeping = {s.value for s in BOOKKEEPING_STATUSES}

    def as_stored_before(t: FrozenTrial) -> FrozenTrial:
        if t.state != TrialState.PRUNED or t.user_attrs.get(STATUS) not in bookkeeping:
            return t
        return FrozenTrial(
            number=t.number, state=TrialState.FAIL, value=None,
            datetime_start=t.datetime_start, datetime_complete=t.datetime_complete,
            params=t.params, distributions=t.distributions, user_attrs=t.user_attrs,
            system_attrs=t.system_attrs, intermediate_values=t.intermediate_values,
            trial_id=t._trial_id)

    class View:
        """The study as the sampler sees it; everything but its trials is the study's."""

        def __init__(self, study: Any) -> None:
            self._study_seen = study

        def __getattr__(self, name: str) -> Any:
            return getattr(self._study_seen, name)

        def _get_trials(self, deepcopy: bool = True, states: Any = None,
                        use_cache: bool = False) -> list[FrozenTrial]:
            import copy

            trials = self._study_seen._get_trials(deepcopy=False, use_cache=use_cache)
            seen = getattr(_seen, "trials", None)
            if seen is not None:  # as_of: each trial as it was read
                trials = [seen.get(t._trial_id, t) for t in trials]
            trials = [as_stored_before(t) for t in trials]
            if states is not None:
                trials = [t for t in trials if t.state in states]
            return copy.deepcopy(trials) if deepcopy else trials

        def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
            return self._get_trials(deepcopy=deepcopy, states=states)

        @property
        def trials(self) -> list[FrozenTrial]:
            return self.get_trials()

    class MeasuredOnly(BaseSampler):
        def __init__(self) -> None:
            self.inner = sampler

        def __getattr__(self, name: str) -> Any:  # e.g. GridSampler's is_exhausted
            if name == "inner":
                raise AttributeError(name)
            return getattr(self.inner, name)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(View(study), trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.inner.sample_relative(View(study), trial, search_space)

        def sample_independent(self, study: Any, trial: Any, param_name: str,
                               param_distribution: Any) -> Any:
            return self.inner.sample_independent(View(study), trial, param_name,
                                                 param_distribution)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.inner.before_trial(View(study), trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            if state == TrialState.PRUNED and trial.user_attrs.get(STATUS) in bookkeeping:
                state, values = TrialState.FAIL, None
            self.inner.after_trial(View(study), trial, state, values)

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return MeasuredOnly()
