"""The stored record of a study: what searcher writes on Optuna studies and trials, and
the summaries read back from it.

Every attribute name, every trial status and every summary lives here, so that writers
(the search loop, the grid, ``searcher compare``) and readers (status, export, report,
compare, the live view) agree on one schema, and reading results never imports the
search loop. Importing this module imports neither optuna nor a GPU library.

A study's attributes: its identity (:data:`IDENTITY`, checked on resume by
:func:`searcher.store.storage.open_study`), :data:`DEVICE_INFO` (what measured it),
:data:`WARM_STARTED`, one :data:`WALL_S` ``:HOST:PID`` entry per process, :data:`FINAL`
(the finalists' run) and :data:`SIDE_BY_SIDE` (``searcher compare``'s run).

A trial's attributes: :data:`CONFIG` (the config's dict form), :data:`STATUS` (a
:class:`TrialStatus` value; None while it is being asked or measured), :data:`REASON`,
:data:`COST_S`, the :data:`SHORT` and :data:`FULL` measurements
(:meth:`~searcher.measure.measurement.Measurement.brief`), :data:`SOURCE` (who proposed it),
:data:`MEASURING`, the :data:`HOST` and :data:`PID` of the process holding it,
:data:`DUPLICATE_OF`, and for the grid its visiting :data:`ORDER`. Each trial with a config
also carries one attribute per config key in vLLM's terms (:func:`config_attrs`:
``BLOCK_SIZE_M: 64``), which is what optuna-dashboard can show of a config: Optuna's own
params are the sampler's encoding (``log2_BLOCK_SIZE_M: 6``, see
:class:`searcher.study.space.Param`).

Optuna states: a measured trial is COMPLETE (``ok``) or PRUNED (``pruned``, or a failure told
as a constraint violation); a proposal that was not measured (``invalid``, ``duplicate``,
``not_run``) is PRUNED, so that Optuna's tools do not show it as failed. Samplers see
duplicates and not-run trials as FAIL, as they were stored before (see
:func:`searcher.strategies.samplers.measured_only`). FAIL is left to trials whose process died
(``interrupted``, or stale with no status).
"""

from __future__ import annotations

import enum
import math
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from searcher.strategies.decide import Verdict, judge

from searcher.measure.measurement import Status

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.kernels.base import Config, Kernel

__all__ = [
    "TrialStatus",
    "COUNTED_STATUSES",
    "FAILED_STATUSES",
    "IDENTITY",
    "CLAIMS_STUDY",
    "MSummary",
    "GridSummary",
    "within_noise",
    "paired_verdict",
    "unmeasured_source",
    "status_of",
    "config_of",
    "config_attrs",
    "BOOKKEEPING_STATUSES",
    "summarize_study",
    "summarize_grid",
    "worker_identity",
    "add_wall_time",
    "stored_wall_time",
    "TimeSplit",
]

# -- study attributes ------------------------------------------------------------------
KERNEL = "kernel"
KIND = "kind"
SHAPE = "shape"
DEVICE = "device"
BATCH_SIZE = "M"
SPACE = "space"
SPACE_FINGERPRINT = "space_fingerprint"
BACKEND = "backend"  # who ran the kernel: a backend's name, "synthetic", "replay of ..."
TRITON_VERSION = "triton_version"
#: How a GPU's replays were timed: which inputs each replay got (a value of
#: :data:`searcher.measure.harness.TIMINGS`; None for synthetic and replayed studies).
TIMING = "timing"
#: What makes a study the one a spec and a benchmarker describe; a stored study that
#: differs is not resumed. Studies stored before the backend and the Triton version were
#: part of it hold them only in :data:`DEVICE_INFO`; GPU studies stored before the timing
#: was part of it were timed with the ``legacy`` replay order.
IDENTITY: tuple[str, ...] = (KERNEL, KIND, SHAPE, DEVICE, BATCH_SIZE, SPACE, SPACE_FINGERPRINT,
                             BACKEND, TRITON_VERSION, TIMING)
#: What measured a study (the benchmarker's ``device_info()``: GPU, driver, torch and
#: Triton versions, backend).
DEVICE_INFO = "device_info"
WARM_STARTED = "warm_started"
FINAL = "final"
SIDE_BY_SIDE = "side_by_side"
#: Prefix of each process's wall time (``wall_s:HOST:PID``; plain ``wall_s`` in old studies).
WALL_S = "wall_s"

#: The one bookkeeping study of a storage: its trials are claims (see
#: :func:`searcher.store.storage.claim`). Older storages hold one study per claim instead, named
#: ``KERNEL-claim:WHAT``; readers look studies up by name and never list those.
CLAIMS_STUDY = "searcher:claims"

# -- trial attributes ------------------------------------------------------------------
STATUS = "status"
CONFIG = "config"
REASON = "reason"
COST_S = "cost_s"
SHORT = "short"
FULL = "full"
SOURCE = "source"
MEASURING = "measuring"
HOST = "host"
PID = "pid"
DUPLICATE_OF = "duplicate_of"
ORDER = "order"
CLAIM = "claim"  # on a trial of CLAIMS_STUDY: what it claims


class TrialStatus(str, enum.Enum):
    """What became of a trial (its :data:`STATUS` attribute).

    A measured config's status is its measurement's (:class:`~searcher.measure.measurement.Status`:
    ok, or how it failed); the others say why nothing was measured, or why measuring stopped.
    """

    OK = Status.OK.value
    PRUNED = "pruned"  # short measurement only: it could not win
    COMPILE_ERROR = Status.COMPILE_ERROR.value
    OUT_OF_RESOURCES = Status.OUT_OF_RESOURCES.value
    RUNTIME_ERROR = Status.RUNTIME_ERROR.value
    TIMEOUT = Status.TIMEOUT.value
    INVALID = "invalid"  # breaks a space constraint; never benchmarked
    UNMEASURABLE = "unmeasurable"  # the benchmarker cannot measure it (a replay lacks it)
    DUPLICATE = "duplicate"  # already measured in this study
    NOT_RUN = "not_run"  # asked ahead, then given back (budget, time, Ctrl-C)
    INTERRUPTED = "interrupted"  # its process died while measuring it


#: Statuses of trials that were measured and so count against the budget.
COUNTED_STATUSES = frozenset({
    TrialStatus.OK, TrialStatus.PRUNED, TrialStatus.COMPILE_ERROR,
    TrialStatus.OUT_OF_RESOURCES, TrialStatus.RUNTIME_ERROR, TrialStatus.TIMEOUT,
})
#: Statuses of proposals that were not measured and are not constraint violations: stored
#: PRUNED since this version (FAIL before), and shown to samplers as FAIL either way.
BOOKKEEPING_STATUSES = frozenset({TrialStatus.DUPLICATE, TrialStatus.NOT_RUN})
#: Statuses of configs that broke the process measuring them (not re-measured).
FAILED_STATUSES = frozenset({TrialStatus.RUNTIME_ERROR, TrialStatus.TIMEOUT})


def status_of(trial: optuna.trial.FrozenTrial) -> TrialStatus | None:
    """A trial's stored status; None while it has none (being asked or measured)."""
    status = trial.user_attrs.get(STATUS)
    return TrialStatus(status) if status else None


def config_of(kernel: Kernel, trial: optuna.trial.FrozenTrial) -> Config | None:
    """A trial's config (None before one was suggested)."""
    data = trial.user_attrs.get(CONFIG)
    return kernel.config_from_dict(data) if data else None


def config_attrs(config: Config) -> dict[str, int]:
    """A config as trial attributes, one per key in vLLM's terms (``BLOCK_SIZE_M: 64``).

    Written beside :data:`CONFIG` on every trial, because optuna-dashboard shows a trial's
    user attributes one column each (sortable when numbers) and in the trial's detail, but
    a dict attribute only as a JSON string; the params it plots are the sampler's encoding,
    kept as they are so stored studies resume unchanged.
    """
    return config.to_dict()


def worker_identity() -> dict[str, Any]:
    """Who runs a trial (its :data:`HOST` and :data:`PID` attributes): lets a later run on
    the same host see that its process died."""
    return {HOST: socket.gethostname(), PID: os.getpid()}


def add_wall_time(study: optuna.Study, seconds: float) -> None:
    """Add this process's wall time to a study.

    Each process keeps its own attribute (``wall_s:HOST:PID``), so workers sharing a study
    never overwrite each other's time; :func:`stored_wall_time` adds them up. On a GPU the
    sum is the GPU time the study held, whatever the number of workers.
    """
    me = worker_identity()
    key = f"{WALL_S}:{me[HOST]}:{me[PID]}"
    study.set_user_attr(key, float(study.user_attrs.get(key, 0.0)) + seconds)


def stored_wall_time(attrs: Mapping[str, Any]) -> float:
    """The wall time of all processes that worked on a study (see :func:`add_wall_time`)."""
    return sum(float(v) for k, v in attrs.items() if k == WALL_S or k.startswith(f"{WALL_S}:"))


def unmeasured_source(attrs: Mapping[str, Any]) -> str | None:
    """"synthetic" or "replay of FILE" when a study's values were not measured on a GPU by
    this study (its :data:`BACKEND`, else its :data:`DEVICE_INFO`'s backend); None for a
    GPU's measurements."""
    backend = attrs.get(BACKEND) or (attrs.get(DEVICE_INFO) or {}).get("backend") or ""
    if backend == "synthetic" or backend.startswith("replay of"):
        return backend
    return None


# -- summaries -------------------------------------------------------------------------
def paired_verdict(winner_times: Sequence[float] | None,
                   default_times: Sequence[float] | None) -> Verdict | None:
    """The decision rule's verdict (:func:`searcher.strategies.decide.judge`) on a stored
    winner's and the default's paired rounds; None when either was not measured."""
    if not winner_times or not default_times:
        return None
    return judge(winner_times, default_times)


def within_noise(verdict: Verdict | None) -> bool:
    """Reported as equal to the default: the decision rule finds the winner neither faster
    nor slower (the one place status, report and compare decide it; a winner that is the
    default judges equal to itself). False when there is nothing to judge."""
    return verdict is not None and verdict.within_noise


@dataclass
class TimeSplit:
    """Where a search's wall time went, in seconds (summed over its processes).

    ``measuring_s``: the trials' measurements (short and full) less their compile waits;
    ``compile_s``: waiting for (or doing) compiles in those measurements and in the
    finalists' rounds (a failed measurement records none apart: its time counts as
    measuring); ``finalists_s``: the finalists' re-measurement less its compile waits
    (None where an older record lacks its cost); ``wall_s``:
    the processes' wall time (:func:`stored_wall_time`); ``gpu_s``: of measuring, the GPU
    replaying graphs (None where no trial recorded it: records before it was stored).
    :attr:`host_s` is the rest: asking the sampler, the storage, pruning, Python.
    """

    measuring_s: float = 0.0
    compile_s: float = 0.0
    finalists_s: float | None = 0.0
    wall_s: float = 0.0
    gpu_s: float | None = None

    @property
    def host_s(self) -> float | None:
        """wall − (measuring + compile + finalists); None where the finalists' cost is
        unknown. Negative only if a process died before storing its wall time."""
        if self.finalists_s is None:
            return None
        return self.wall_s - (self.measuring_s + self.compile_s + self.finalists_s)

    def __add__(self, other: TimeSplit) -> TimeSplit:
        def add(a: float | None, b: float | None, unknown: float | None) -> float | None:
            if a is None and b is None:
                return None
            if a is None or b is None:
                return unknown
            return a + b

        return TimeSplit(
            measuring_s=self.measuring_s + other.measuring_s,
            compile_s=self.compile_s + other.compile_s,
            finalists_s=add(self.finalists_s, other.finalists_s, None),
            wall_s=self.wall_s + other.wall_s,
            gpu_s=add(self.gpu_s, other.gpu_s, (self.gpu_s or 0.0) + (other.gpu_s or 0.0)),
        )

    def to_dict(self) -> dict[str, float | None]:
        """Seconds by part (JSON's ``time_s``), ``host_s`` included."""
        return {"measuring_s": self.measuring_s, "compile_s": self.compile_s,
                "finalists_s": self.finalists_s, "host_s": self.host_s,
                "wall_s": self.wall_s, "gpu_s": self.gpu_s}


def _trial_time(attrs: Mapping[str, Any], split: TimeSplit) -> None:
    """Add one counted trial's measuring, compile and GPU seconds to ``split``."""
    cost = float(attrs.get(COST_S) or 0.0)
    compile_s = 0.0
    for fid in (SHORT, FULL):
        brief = attrs.get(fid) or {}
        compile_s += float(brief.get("compile_s") or 0.0)
        if brief.get("gpu_s") is not None:
            split.gpu_s = (split.gpu_s or 0.0) + float(brief["gpu_s"])
    split.compile_s += compile_s
    split.measuring_s += cost - compile_s


@dataclass
class MSummary:
    """What is stored for one batch size's search, for views, status and export."""

    M: int
    trials: int = 0  # counted (measured) trials
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    invalid: int = 0
    duplicate: int = 0
    best_us: float = math.inf
    best_config: Config | None = None
    default_us: float | None = None  # default config measured in the finalists' run
    against_us: float | None = None  # the file to beat (run --against), same run
    winner: Config | None = None
    winner_us: float | None = None
    cost_s: float = 0.0  # sum of measurement wall times
    wall_s: float = 0.0  # wall time of the search loops and finalist runs
    finalized: bool = False
    running: int = 0  # trials being measured now (by any process; they hold budget)
    #: Other trials in Optuna's RUNNING state: asked ahead by a run in progress, or left
    #: by one that was killed (the next run on the storage fails those as interrupted and
    #: queues their configs again).
    unfinished: int = 0
    noise: float | None = None  # the decision rule's round-to-round noise (relative)
    verdict: Verdict | None = None  # the decision rule on the winner's and default's rounds
    decision: str | None = None  # why the stored winner was chosen (None: older records)
    time: TimeSplit = field(default_factory=TimeSplit)  # where wall_s went
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        if self.default_us and self.winner_us:
            return self.default_us / self.winner_us
        return None

    @property
    def within_noise(self) -> bool:
        return self.speedup is not None and within_noise(self.verdict)


def summarize_study(kernel: Kernel, study: optuna.Study, M: int) -> MSummary:
    """Count a stored search study of ``kernel`` by trial status and read its best and
    final results."""
    from optuna.trial import TrialState

    s = MSummary(M=M)
    for t in study.get_trials(deepcopy=False):
        status = status_of(t)
        if status in COUNTED_STATUSES:
            s.trials += 1
            s.cost_s += float(t.user_attrs.get(COST_S, 0.0))
            _trial_time(t.user_attrs, s.time)
        if status is TrialStatus.OK and t.state == TrialState.COMPLETE:
            s.complete += 1
            if t.value is not None and t.value < s.best_us:
                s.best_us, s.best_config = t.value, config_of(kernel, t)
        elif status is TrialStatus.PRUNED:
            s.pruned += 1
        elif status in (TrialStatus.INVALID, TrialStatus.UNMEASURABLE):
            s.invalid += 1
        elif status is TrialStatus.DUPLICATE:
            s.duplicate += 1
        elif status in COUNTED_STATUSES:
            s.failed += 1
        elif status is None and t.state == TrialState.RUNNING and t.user_attrs.get(MEASURING):
            s.running += 1
        elif t.state == TrialState.RUNNING:
            s.unfinished += 1
    attrs = study.user_attrs
    s.wall_s = stored_wall_time(attrs)
    s.time.wall_s = s.wall_s
    if attrs.get(DEVICE_INFO):
        s.extra[DEVICE_INFO] = attrs[DEVICE_INFO]
    final = attrs.get(FINAL)
    if final:
        s.finalized = final.get("trials") == s.trials
        s.winner = kernel.config_from_dict(final["winner"])
        s.winner_us = final["winner_us"]
        s.default_us = final.get("default_us")
        s.against_us = final.get("against_us")
        s.extra["final_cost_s"] = final.get("cost_s", 0.0)
        s.extra["final_fidelity"] = final.get("fidelity")
        # The finalists' budget and the layer calls a graph of their rounds (fewer than
        # the fidelity's where the budget asked it); absent in records before it.
        s.extra["final_plan"] = None if final.get("plan") is None else {
            **final["plan"], "calls_per_graph": final.get("calls_per_graph")}
        # None: recorded before its cost was. Compile waits inside the finalists' rounds
        # (recorded apart since they were) count as compile waits, as the trials' do.
        s.time.finalists_s = final.get("cost_s")
        if s.time.finalists_s is not None:
            waits = float(final.get("compile_s") or 0.0)
            s.time.finalists_s -= waits
            s.time.compile_s += waits
        # The winner's and the default's paired rounds, judged by the decision rule (old
        # records too: their winner stays as stored, only "within noise" is re-judged).
        winner_times = next((e["times_us"] for e in final["entries"]
                             if e["config"] == final["winner"]), None)
        default_times = next((e["times_us"] for e in final["entries"] if e["default"]), None)
        s.verdict = paired_verdict(winner_times, default_times)
        if s.verdict is not None:
            s.noise = s.verdict.noise
        if final.get("decision"):
            s.decision = final["decision"]["reason"]
            # A default kept: its rounds against themselves have no noise; the noise is that
            # of the pair the rule judged (its decision says it too).
            if final["winner"] == next((e["config"] for e in final["entries"]
                                        if e["default"]), None) \
                    and final["decision"].get("noise") is not None:
                s.noise = final["decision"]["noise"]
    return s


class GridSummary(dict):
    """M, size (valid configs), measured, ok, failed, best_us, best_config, cost_s, wall_s."""


def summarize_grid(kernel: Kernel, study: optuna.Study, M: int, size: int) -> GridSummary:
    """Count a stored grid of ``kernel`` (``size`` valid configs) and find its best."""
    s = GridSummary(M=M, size=size, measured=0, ok=0, failed=0, best_us=None,
                    best_config=None, cost_s=0.0, wall_s=stored_wall_time(study.user_attrs))
    for t in study.get_trials(deepcopy=False):
        if not t.user_attrs.get(STATUS):
            continue
        s["measured"] += 1
        s["cost_s"] += float(t.user_attrs.get(COST_S, 0.0))
        if t.value is not None:
            s["ok"] += 1
            if s["best_us"] is None or t.value < s["best_us"]:
                s["best_us"], s["best_config"] = t.value, config_of(kernel, t)
        else:
            s["failed"] += 1
    return s
