"""Optuna pruners, picked by name, and searcher's own :class:`BestRatioPruner`.

A trial first times its config at the short fidelity and reports that time (microseconds
per layer call) as an intermediate value; the pruner then decides whether the full
measurement is worth its cost. The default, ``ratio``, drops a config whose short time is
already more than ``ratio`` times the best finished trial: at M=1024 only a few dozen of
432 configs come within 10% of the best, so most trials end after the short look.

Optuna's own pruners compare intermediate values across trials at the same step, which is
what they are for; they are offered for comparison runs.

Importing this module does not import optuna (spec validation needs only the names):
:class:`BestRatioPruner` subclasses optuna's ``BasePruner``, so the class is defined on
first access (``from searcher.strategies.pruners import BestRatioPruner`` or :func:`make_pruner`)
and cached; it pickles and compares like any module-level class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from searcher.errors import SpecError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

__all__ = [
    "PRUNERS",
    "PRUNER_NAMES",
    "DEFAULT_PRUNER",
    "DEFAULT_RATIO",
    "BestRatioPruner",
    "make_pruner",
    "check_pruner_name",
]

#: The pruner a spec gets when it names none.
DEFAULT_PRUNER = "ratio"

#: How much slower than the best finished trial a short measurement may be and go on.
DEFAULT_RATIO = 1.10


def _best_ratio_pruner_class() -> type:
    """Define :class:`BestRatioPruner` on first use, so importing this module skips optuna."""
    global _BestRatioPruner
    if _BestRatioPruner is not None:
        return _BestRatioPruner

    import optuna
    from optuna.pruners import BasePruner
    from optuna.trial import TrialState

    class BestRatioPruner(BasePruner):
        """Prune a trial whose latest intermediate value exceeds ``ratio`` x the best.

        The best is the smallest finite value among the study's COMPLETE trials. Nothing
        is pruned until ``min_completed`` COMPLETE trials with finite values exist.
        Non-finite values (inf, nan) are not times: they neither count as a best nor get
        a trial pruned; a config that failed is the objective's to record as a failure.
        The study must minimise.

        Args:
            ratio: the slack over the best, > 1 (1.10 lets configs within 10% go on).
            min_completed: COMPLETE trials needed before anything is pruned, >= 1.

        Raises:
            ValueError: ``ratio`` is not > 1 or ``min_completed`` not an integer >= 1.
        """

        def __init__(self, ratio: float = DEFAULT_RATIO, min_completed: int = 1) -> None:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
                    or not math.isfinite(ratio) or ratio <= 1.0:
                raise ValueError(f"ratio = {ratio!r} must be a number > 1")
            if isinstance(min_completed, bool) or not isinstance(min_completed, int) \
                    or min_completed < 1:
                raise ValueError(f"min_completed = {min_completed!r} must be an integer >= 1")
            self.ratio = float(ratio)
            self.min_completed = min_completed

        def __repr__(self) -> str:
            return f"BestRatioPruner(ratio={self.ratio}, min_completed={self.min_completed})"

        def best_value(self, study: optuna.study.Study) -> float | None:
            """The smallest finite value of a COMPLETE trial, or None before
            ``min_completed`` of them exist."""
            if self.min_completed == 1:
                # The storage's best trial: one query, where reading every trial re-reads
                # each unfinished one whole from an RDB storage (issue #13: about 10 ms a
                # decision with a batch asked ahead). ``study.best_trial`` would skip an
                # infeasible best, which this pruner does not. A finite best is the
                # smallest finite value; +inf sorts last, so a +inf best means none is
                # finite; a -inf best needs the scan below.
                try:
                    best = study._storage.get_best_trial(study._study_id).value
                except ValueError:  # no COMPLETE trial
                    return None
                if best is not None and math.isfinite(best):
                    return best
                if best == math.inf:
                    return None
            values = [
                t.value
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)
            ]
            if len(values) < self.min_completed:
                return None
            return min(values)

        def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
            if study.directions != [optuna.study.StudyDirection.MINIMIZE]:
                raise ValueError("BestRatioPruner needs a single-objective study that minimises")
            step = trial.last_step
            if step is None:
                return False
            value = trial.intermediate_values[step]
            if not math.isfinite(value):
                return False
            best = self.best_value(study)
            if best is None:
                return False
            return value > self.ratio * best

    BestRatioPruner.__module__ = __name__
    BestRatioPruner.__qualname__ = "BestRatioPruner"
    _BestRatioPruner = BestRatioPruner
    return BestRatioPruner


_BestRatioPruner: type | None = None


def __getattr__(name: str) -> Any:
    # ``from searcher.strategies.pruners import BestRatioPruner`` imports optuna only at that
    # moment.
    if name == "BestRatioPruner":
        return _best_ratio_pruner_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ratio(**options: Any) -> optuna.pruners.BasePruner:
    return _best_ratio_pruner_class()(**options)


def _median(**options: Any) -> optuna.pruners.BasePruner:
    from optuna.pruners import MedianPruner

    return MedianPruner(**options)


def _percentile(**options: Any) -> optuna.pruners.BasePruner:
    from optuna.pruners import PercentilePruner

    return PercentilePruner(**options)


def _halving(**options: Any) -> optuna.pruners.BasePruner:
    from optuna.pruners import SuccessiveHalvingPruner

    return SuccessiveHalvingPruner(**options)


def _hyperband(**options: Any) -> optuna.pruners.BasePruner:
    from optuna.pruners import HyperbandPruner

    return HyperbandPruner(**options)


def _none(**options: Any) -> optuna.pruners.BasePruner:
    from optuna.pruners import NopPruner

    return NopPruner()


@dataclass(frozen=True)
class PrunerEntry:
    """A registered pruner: its builder and the options it takes, with their defaults."""

    build: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""


#: Pruners by name, with the options :func:`make_pruner` accepts for each.
PRUNERS: dict[str, PrunerEntry] = {
    "ratio": PrunerEntry(
        _ratio, {"ratio": DEFAULT_RATIO, "min_completed": 1},
        "prune when the short time exceeds ratio x the best complete trial",
    ),
    "median": PrunerEntry(
        _median, {"n_startup_trials": 5, "n_warmup_steps": 0},
        "Optuna's MedianPruner",
    ),
    "percentile": PrunerEntry(
        _percentile, {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 0},
        "Optuna's PercentilePruner (keeps the best 25% by default)",
    ),
    "halving": PrunerEntry(
        _halving, {"min_resource": "auto", "reduction_factor": 4, "min_early_stopping_rate": 0},
        "Optuna's SuccessiveHalvingPruner",
    ),
    "hyperband": PrunerEntry(
        _hyperband, {"min_resource": 1, "max_resource": "auto", "reduction_factor": 3},
        "Optuna's HyperbandPruner",
    ),
    "none": PrunerEntry(_none, {}, "never prune (Optuna's NopPruner)"),
}

#: The names :func:`make_pruner` accepts, sorted.
PRUNER_NAMES: tuple[str, ...] = tuple(sorted(PRUNERS))



def check_pruner_name(name: object) -> str:
    """Return ``name`` if it names a pruner.

    Raises:
        SpecError: ``name`` is not one of :data:`PRUNER_NAMES`; the message lists them and
            suggests the closest.
    """
    if not isinstance(name, str) or name not in PRUNERS:
        hint = did_you_mean(name, PRUNER_NAMES) if isinstance(name, str) else ""
        raise SpecError(
            f"unknown pruner {name!r}; must be one of: {', '.join(PRUNER_NAMES)}{hint}"
        )
    return name


def make_pruner(name: str, **options: Any) -> optuna.pruners.BasePruner:
    """Build the pruner called ``name``.

    Args:
        name: one of :data:`PRUNER_NAMES`.
        **options: overrides of the entry's defaults (see :data:`PRUNERS`), e.g.
            ``make_pruner("ratio", ratio=1.05)``.

    Raises:
        SpecError: the name is unknown, an option is not one the pruner takes, or the
            pruner rejects a value.
    """
    check_pruner_name(name)
    entry = PRUNERS[name]
    unknown = sorted(set(options) - set(entry.defaults))
    if unknown:
        takes = ", ".join(entry.defaults) or "no options"
        hint = did_you_mean(unknown[0], list(entry.defaults))
        raise SpecError(
            f"pruner {name!r} has no option {unknown[0]!r}{hint}; it takes: {takes}"
        )
    try:
        return entry.build(**{**entry.defaults, **options})
    except (TypeError, ValueError) as exc:
        raise SpecError(f"pruner {name!r}: {exc}") from None
