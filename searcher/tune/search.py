"""The search: one Optuna study per batch size, pruned early, resumable, warm-started.

A trial of batch size M:

1. asks the sampler for a config (enqueued warm starts come first);
2. never benchmarks a config that breaks a space constraint (stored as ``invalid``), nor
   one already measured in this study (``duplicate``); neither counts against the budget;
3. times it at the short fidelity and reports that to the pruner; a config that cannot
   win stops there (``pruned``);
4. otherwise times it at full fidelity; the trial's value is the full median (us).

Compile errors, out-of-resources and runtime faults are stored on the trial with their
reason and count against the budget (they cost GPU time). Optuna sees them, and
constraint violations, as PRUNED trials with a violated constraint, so TPE learns to
stay away from them; searcher's own status is the trial's ``status`` user attribute.
Duplicates and trials given back unmeasured are stored PRUNED too (not FAIL, which
optuna-dashboard shows as a red failure), but samplers see them as FAIL, as before
(:func:`searcher.strategies.samplers.measured_only`).

Several trials are asked at once so their configs compile on CPU threads while the GPU
measures the one before (TPE's constant liar keeps the batch diverse); the next two
batches are asked on a thread of their own from one read of the study. Measurements run
on a measuring thread, one queued behind the one in progress, so the GPU measures the
next trial while the main thread stores the last result (issue #13).

When M's budget is spent, its best ``finalists`` configs and vLLM's default config are
re-measured interleaved at the long fidelity; the fastest of them is M's winner only if
:func:`searcher.strategies.decide.judge` finds it faster than the default in the paired
rounds beyond the noise (more rounds while undecided), else the default is; stored on the
study with the default's time measured side by side and the verdict's reason
(:mod:`searcher.tune.finalists`).

A trial this process asked may be taken over by another: when this process was stopped
(SIGSTOP, a suspended VM) longer than the heartbeat grace period, another run fails the
trial as stale and retries it. This process, continuing, finds the trial finished: it
drops that trial's measurement with one line on stderr and goes on
(:class:`searcher.store.recovery.TakenOver`).
"""

from __future__ import annotations

import collections
import contextlib
import math
import random
import sys
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

from searcher.measure.measurement import Measurement, Status
from searcher.store import record
from searcher.store.record import (
    COUNTED_STATUSES,
    MSummary,
    TrialStatus,
    add_wall_time,
    config_of,
    status_of,
    summarize_study,
    worker_identity,
)
from searcher.store.storage import (
    claim,
    load_existing_study,
    open_study,
    store_on_trial,
    study_name,
    tell,
)
from searcher.store.recovery import (
    Heartbeat, TakenOver, recover_stale_trials, say_taken_over, unless_taken_over)
from searcher.strategies.decide import RULE, DecisionRule
from searcher.strategies.finalists import SHARE
from searcher.tune.finalists import finalist_configs, run_finalists
from searcher.tune.stop import Stopped, stop_requested

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.measure.harness import Benchmarker
    from searcher.kernels.base import Config
    from searcher.study.spec import StudySpec

__all__ = [
    "SearchOptions",
    "RunView",
    "run_search",
    "NullView",
]

#: Consecutive configs the benchmarker cannot measure before a batch size is given up.
MAX_UNMEASURABLE = 30
#: Consecutive asks that yield nothing to measure before a random unmeasured valid config
#: is enqueued instead (the sampler keeps proposing invalid or already measured configs).
MAX_IDLE_ASKS = 60


@dataclass(frozen=True)
class SearchOptions:
    """How a run behaves beyond what the spec says."""

    device: str  # vLLM device name the studies are stored under
    storage_url: str
    batch_sizes: Sequence[int] | None = None  # None: the spec's
    trials_per_m: int | None = None  # None: the spec's
    time_limit_s: float | None = None  # None: the spec's
    ask_batch: int = 6  # trials asked at once so their compiles overlap measurement
    # Ask (and compile) the next batch on a thread while this one is measured.
    ask_ahead: bool = True
    #: Batches asked ahead of the one measured. With the host's gaps gone, a batch of 6
    #: measures in about 0.6 s at small M on the H200, less than asking the next batch
    #: and compiling its configs take; with 2 the compiles have a batch more of time.
    ask_depth: int = 2
    #: Measurements queued behind the one in progress, so that the GPU starts the next
    #: while the host stores the last (0: one at a time, the host's work between them).
    measure_ahead: int = 1
    #: How the finalists' run decides whether a config beats vLLM's default (its rounds).
    decision_rule: DecisionRule = RULE
    final_fidelity: str = "full"  # as the search's trials: one scale (README, "The phase bias")
    #: The most of a batch size's GPU time (its trials' measuring plus the finalists) the
    #: finalists' run is planned to take; its rounds time fewer layer calls a graph to fit
    #: (searcher/strategies/finalists.py). None or 1: unbounded.
    finalists_share: float | None = SHARE
    kind: str = "search"
    warm_start: bool = True  # enqueue vLLM's default and neighbours' winners first
    #: An existing tuned file to beat (e.g. the one vLLM ships for this shape and GPU): M ->
    #: the config it gives M (its nearest key, as vLLM looks it up). Each is measured first
    #: and re-measured among the finalists, so the winner is never slower than it side by
    #: side. None: no such file.
    against: Mapping[int, Config] | None = None
    worker: int = 0  # this process's index among ``workers`` sharing the storage
    workers: int = 1


class RunView(Protocol):
    """Live progress (a rich view on stderr, a plain log, or nothing in tests)."""

    def start(self, batch_sizes: Sequence[int], budget_per_m: int | None) -> None: ...

    def update(self, summary: MSummary) -> None: ...

    def finish_m(self, summary: MSummary) -> None: ...

    def close(self) -> None: ...


class NullView:
    per_trial = False  # update() ignores per-trial summaries: none are computed for it

    def start(self, batch_sizes: Sequence[int], budget_per_m: int | None) -> None:
        pass

    def update(self, summary: MSummary) -> None:
        pass

    def finish_m(self, summary: MSummary) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _InFlight:
    """A trial's measurement handed to the measuring thread."""

    trial: Any
    M: int
    config: Config
    source: str
    fidelity: str  # "short" or "full"
    future: Future
    cost_s: float = 0.0  # seconds charged by its measurements told so far


# -- the run ----------------------------------------------------------------------------
@dataclass
class _Opened:
    """A batch size's study, ready to run (see :meth:`_Searcher.open_m`)."""

    study: optuna.Study
    ctx: dict[str, int]
    first: list[tuple[Any, Config, str]] | None = None  # its first batch, asked ahead
    want: int = 0  # the size asked for it


#: Winners of this many nearest finished batch sizes start each batch size's search.
NEIGHBOURS = 2


class _Searcher:
    def __init__(self, spec: StudySpec, bencher: Benchmarker, opts: SearchOptions,
                 view: RunView, clock: Callable[[], float]) -> None:
        from searcher.store.storage import open_storage

        self.spec = spec
        self.bencher = bencher
        self.opts = opts
        self.view = view
        self.clock = clock
        # Measurements run on this thread, in the order they are queued, while this one
        # stores results and checks the next trial (measure_batch). Its first job starts
        # the measuring process (importing torch, building the inputs: seconds on a GPU
        # machine) while this thread opens the storage.
        self._gpu = ThreadPoolExecutor(1, thread_name_prefix="searcher-measure")
        self._gpu.submit(bencher.device_info)
        self.storage = open_storage(opts.storage_url)
        self.heartbeat = Heartbeat(self.storage)
        self.identity = worker_identity()
        self.winners: dict[int, Config] = {}
        self._valid: dict[int, list[tuple[Config, list[int]]]] = {}
        # Sampler asks, their storage writes and the next compiles run on this thread
        # while the GPU measures (issue #13: host work off the critical path).
        self._asker = ThreadPoolExecutor(1, thread_name_prefix="searcher-ask")
        self._ahead: list[tuple[Future, int]] | None = None  # asks measure_batch started
        # The last trials of a batch, still measuring when measure_batch returned: the next
        # batch's call goes on with them (the GPU does not wait at the batch boundary).
        self._carried: collections.deque[_InFlight] = collections.deque()
        # Trials of a batch not started because their configs were still compiling: the
        # next call starts them after (or among) its own, as they become ready.
        self._deferred: list[tuple[Any, Config, str]] = []
        self.accept: tuple[str, ...] = ()  # identity keys a stored study may differ in
        self._next_m: int | None = None  # the batch size run() goes on to after this one
        # The next batch size, opened (study, warm start, first batch asked) on the asker
        # thread while this one's finalists are measured: {M: future of _Opened}.
        self._opening: dict[int, Future] = {}

    # study of one M
    def study(self, M: int, n_existing: int = 0) -> optuna.Study:
        from searcher.strategies.pruners import make_pruner
        from searcher.strategies.samplers import make_sampler, measured_only

        spec = self.spec
        # A run that resumes gets its own seed, so it does not replay the first run's draws;
        # so does each worker, so that workers sharing a study draw different configs.
        key = f"{spec.seed}:{M}:{n_existing}"
        if self.opts.workers > 1:
            key += f":worker{self.opts.worker}"
        sampler = measured_only(make_sampler(spec.sampler, zlib.crc32(key.encode()),
                                             space=spec.space,
                                             n_startup_trials=spec.startup_trials))
        pruner = make_pruner(spec.pruner, **spec.pruner_options())
        return open_study(self.storage, self.opts.kind, spec.shape, self.opts.device, M,
                          spec.space, sampler, pruner, self.bencher.device_info(),
                          self.opts.storage_url, accept=self.accept)

    def run(self, batch_sizes: Sequence[int], budget: int | None,
            deadline: float | None) -> list[MSummary]:
        # Workers sharing a storage start at different batch sizes (worker i of n at the
        # i/n-th of the list) and go round; one that reaches a batch size another is
        # working on joins it, sharing its trials and budget.
        order = list(batch_sizes)
        if self.opts.workers > 1:
            k = (self.opts.worker * len(order)) // self.opts.workers
            order = order[k:] + order[:k]
        summaries: dict[int, MSummary] = {}
        self.view.start(batch_sizes, budget)
        if order and self.opts.warm_start:
            # The first batch size's first trial is vLLM's default: its compile starts with
            # the measuring process, while the study opens and the first batch is asked
            # (later batch sizes get theirs during the finalists: _precompile_next).
            self._gpu.submit(self.bencher.precompile, order[0], self._first_configs(order[0]))
        try:
            for i, M in enumerate(order):
                self._next_m = order[i + 1] if i + 1 < len(order) else None
                m_deadline = None
                if deadline is not None:
                    left = deadline - self.clock()
                    m_deadline = self.clock() + max(0.0, left) / (len(order) - i)
                summaries[M] = self.run_m(M, budget, m_deadline)
            # A second pass with the time left: a batch size that ran out of its even share
            # of a time limit (the first one also pays the first compiles and the inputs)
            # gets what finished ones did not use; with several workers, this also takes
            # over a batch size left to a worker that died since.
            self._next_m = None
            for M in order:
                if not summaries[M].finalized and (deadline is None or self.clock() < deadline):
                    summaries[M] = self.run_m(M, budget, deadline)
        finally:
            for opening in self._opening.values():  # opened, never run (stopped, an error)
                opened = opening.result() if opening.exception() is None else None
                if opened is not None and opened.first is not None:
                    for trial, config, _ in opened.first:
                        self.tell_skipped(opened.study, trial, config)
            self._opening.clear()
            self.view.close()
            self.heartbeat.close()
            self._gpu.shutdown(wait=True, cancel_futures=True)
            self._asker.shutdown(wait=True)
        return [summaries[M] for M in batch_sizes if M in summaries]

    def open_m(self, M: int, budget: int | None = None, ask_first: bool = False) -> _Opened:
        """Open batch size ``M``'s study (failing trials left running by dead processes),
        warm-start it, and with ``ask_first`` ask its first batch."""
        probe = self.study(M)
        recovered = recover_stale_trials(probe)
        if recovered:
            print(f"searcher: M={M}: {recovered} trial{'s' * (recovered > 1)} left running by "
                  "a process that is gone failed as interrupted; their configs are queued "
                  "again", file=sys.stderr, flush=True)
        existing = len(probe.get_trials(deepcopy=False))
        study = self.study(M, existing) if existing else probe
        ctx = self.spec.kernel.context(self.spec.shape, M, self.spec.gpu_facts)
        # Opened ahead, the batch size before is still deciding its winner: the
        # neighbours' winners are enqueued when this one starts (run_m).
        self.warm_start(study, M, ctx, neighbours=not ask_first)
        opened = _Opened(study, ctx)
        if ask_first:
            summary = summarize_study(self.spec.kernel, study, M)
            want = self.opts.ask_batch
            if budget is not None:
                want = min(want, budget - summary.trials - summary.running)
            # Room for the neighbours' winners, enqueued when the batch size starts.
            want -= NEIGHBOURS if self.opts.warm_start else 0
            if want > 0 and not summary.finalized:
                opened.first = self._ask_and_precompile(study, M, ctx, want)
                opened.want = want
        return opened

    def run_m(self, M: int, budget: int | None, deadline: float | None) -> MSummary:
        # The batch size's wall time counts from its study being open (the first one's
        # opening also starts the measuring process: the run's start, not this M's work);
        # one opened ahead counts the wait for that opening.
        opening = self._opening.pop(M, None)
        if opening is None:
            opened = self.open_m(M)
            started = self.clock()
        else:
            started = self.clock()
            opened = opening.result()
            self.warm_start(opened.study, M, opened.ctx)  # the neighbours' winners, decided now
        study, ctx = opened.study, opened.ctx
        summary = summarize_study(self.spec.kernel, study, M)
        self.view.update(summary)
        idle = unmeasurable = measured_here = 0
        # The next batches, asked while this one is measured, with the sizes asked.
        aheads: collections.deque[tuple[Future, int]] = collections.deque()
        if opened.first is not None:  # asked during the last batch size's finalists
            first: Future = Future()
            first.set_result(opened.first)
            aheads.append((first, opened.want))
        try:
            while deadline is None or self.clock() < deadline:
                if stop_requested():
                    raise Stopped
                want = left = self.opts.ask_batch
                if budget is not None:
                    # Trials other workers are measuring hold their share of the budget,
                    # and so do this one's trials deferred while they compile.
                    left = budget - summary.trials - summary.running - len(self._deferred)
                    if left <= 0 and summary.running and recover_stale_trials(study):
                        summary = summarize_study(self.spec.kernel, study, M)  # a worker here died
                        continue
                    if left <= 0:
                        break
                    want = min(want, left)
                if aheads:
                    batch = aheads.popleft()[0].result()
                else:
                    batch = self._ask_and_precompile(study, M, ctx, want)
                if not batch:
                    idle += 1
                    if idle >= 3 and not self.enqueue_unmeasured(study, M, ctx):
                        break  # every valid config of the space is measured
                    continue
                idle = 0
                sizes: list[int] = []
                if self.opts.ask_ahead:  # without a trial budget, only the deadline bounds it
                    planned = len(batch) + sum(n for _, n in aheads)
                    for _ in range(max(1, self.opts.ask_depth) - len(aheads)):
                        more = (self.opts.ask_batch if budget is None
                                else min(self.opts.ask_batch, left - planned))
                        if more <= 0:
                            break
                        sizes.append(more)
                        planned += more
                ask_ahead = (self._asking_ahead(study, M, ctx, sizes, [f for f, _ in aheads])
                             if sizes else None)
                try:
                    for status in self.measure_batch(study, M, batch, budget, deadline,
                                                     ask_ahead, carry=True):
                        measured_here += 1
                        unmeasurable = (unmeasurable + 1 if status is TrialStatus.UNMEASURABLE
                                        else 0)
                finally:
                    aheads.extend(self._ahead or ())
                    self._ahead = None
                summary = summarize_study(self.spec.kernel, study, M)
                if unmeasurable >= MAX_UNMEASURABLE:
                    break  # e.g. a replayed dataset without this batch size
            # The last batch's trials still measuring.
            measured_here += len(self.measure_batch(study, M, [], budget, deadline))
        finally:
            # Stopped or an error: the trials still measuring go back to the queue.
            carried, self._carried = self._carried, collections.deque()
            for job in carried:
                job.future.cancel()
                self.tell_skipped(study, job.trial, job.config)
            deferred, self._deferred = self._deferred, []
            for trial, config, _ in deferred:
                self.tell_skipped(study, trial, config)
            # Asked, never measured: back to the queue. (An ask that failed closed its own
            # trials, and its error was raised above or gives way to the one in flight.)
            for ahead, _ in aheads:
                if ahead.exception() is None:
                    for trial, config, _ in ahead.result():
                        self.tell_skipped(study, trial, config)
            add_wall_time(study, self.clock() - started)
        summary = summarize_study(self.spec.kernel, study, M)
        if summary.complete and not summary.finalized and summary.running == 0 and (
                budget is None or summary.trials >= budget or self._out_of_configs(study, M, ctx)):
            # Workers finishing the last trials at once must not both re-measure.
            if claim(self.storage, self.spec.kernel, f"{study.study_name}:final@{summary.trials}"):
                self._precompile_next(study, M)
                self._open_next(budget)
                self.finalize(study, M)
                measured_here += 1
            summary = summarize_study(self.spec.kernel, study, M)
        summary.extra["study"] = study
        summary.extra["nothing_here"] = self.opts.workers > 1 and not measured_here
        if summary.winner is not None:
            self.winners[M] = summary.winner
        elif summary.best_config is not None:
            self.winners[M] = summary.best_config
        self.view.finish_m(summary)
        return summary

    def _asking_ahead(self, study: optuna.Study, M: int, ctx: dict[str, int],
                      sizes: list[int], before: list[Future]
                      ) -> Callable[[], list[tuple[Future, int]]]:
        """What starts asking batches of ``sizes`` trials on the asker thread, one after
        another, after the asks in ``before``. The sampler sees the study as read when they
        start, whatever this thread tells while it asks
        (:func:`searcher.strategies.samplers.as_of`), and no batch repeats a config of an
        earlier one still to be measured: seeded runs repeat."""
        def start() -> list[tuple[Future, int]]:
            seen = study.get_trials(deepcopy=False)
            started: list[tuple[Future, int]] = []
            earlier = list(before)
            for want in sizes:
                future = self._asker.submit(self._ask_and_precompile, study, M, ctx, want,
                                            seen, tuple(earlier))
                started.append((future, want))
                earlier.append(future)
            return started

        return start

    def _precompile_next(self, study: optuna.Study, M: int) -> None:
        """Hint the next batch size's likely first configs to the compile threads, so that
        they compile while this one's finalists are measured: vLLM's default there and
        this batch size's finalists (the neighbour winner its warm start enqueues is one
        of them). Without it each batch size's first trial waited for its compile
        (issue #13: about 1 s a batch size on the H200)."""
        nxt = self._next_m
        if nxt is None or nxt == M:
            return
        self._precompile(nxt, self._first_configs(nxt, self.finalists(study)))

    def _first_configs(self, M: int, more: Sequence[Config] = ()) -> list[Config]:
        """vLLM's default at ``M`` and then ``more``: those valid at ``M``, each once."""
        ctx = self.spec.kernel.context(self.spec.shape, M, self.spec.gpu_facts)
        configs = [self.spec.kernel.default_config(self.spec.shape, M), *more]
        return [c for c in dict.fromkeys(configs) if self.spec.space.is_valid(c, ctx)]

    def _open_next(self, budget: int | None) -> None:
        """Start opening the next batch size on the asker thread (:meth:`open_m`, its first
        batch asked and hinted to the compile threads), to run beside this one's finalists.
        Opened at its start, each batch size waited for its study, warm start and first
        ask, and its first configs' compiles (issue #13)."""
        nxt = self._next_m
        if nxt is None or nxt in self._opening or not self.opts.ask_ahead:
            return
        self._opening[nxt] = self._asker.submit(self.open_m, nxt, budget, True)

    def _precompile(self, M: int, configs: list[Config]) -> None:
        """Hand a compile hint to the benchmarker through the measuring thread's queue, so
        that it reaches the measuring process after at most the measurements queued now.
        Sent from the asker thread directly, it waited for the process's lock, which the
        measuring thread takes again at once for each queued measurement: on the H200 the
        hints came late and compile waits doubled (issue #13)."""
        self._gpu.submit(self.bencher.precompile, M, configs).result()

    def measure_batch(self, study: optuna.Study, M: int, batch: list[tuple[Any, Config, str]],
                      budget: int | None, deadline: float | None,
                      ask_ahead: Callable[[], list[tuple[Future, int]]] | None = None,
                      carry: bool = False) -> list[TrialStatus]:
        """Measure a batch of asked trials and return their statuses in the order they were
        told; trials past the budget (other workers took it) or the deadline, and the rest
        after Ctrl-C, go back to the queue.

        With ``carry``, the call returns once the batch's last trial has started: the
        trials still measuring are carried over to the next call, which tells them as its
        own trials start. Drained at each batch boundary, the GPU waited for the last
        tell, a summary, the next batch's asks to start and its first check (issue #13).
        A call without ``carry`` (an empty batch ends a batch size) measures them all.

        Measurements run on the measuring thread, up to ``opts.measure_ahead`` of them
        queued behind the one in progress: the GPU measures the next trial's short
        fidelity while this thread stores the last result, asks the pruner and checks the
        next trial (issue #13: host work off the critical path). The order of the storage
        updates and of the measurements is fixed by this code, not by timing, so seeded
        runs repeat (on a GPU, see below); a trial's full fidelity runs after the next
        trial's short one.

        Where the benchmarker compiles ahead (a GPU), the next trial started is the first
        pending one whose config has compiled (:meth:`_first_ready`), and with ``carry``,
        once every trial left is still compiling while the GPU has work queued, they are
        deferred to the next call, whose compiled trials go first; measured in the order
        asked, a config still compiling held up the GPU (issue #13: compile waits). This
        order depends on compile times; replayed and synthetic benchmarkers compile
        nothing ahead, so their runs keep the order asked.

        ``ask_ahead`` starts asking the next batches on the asker thread; it is called once,
        when the trials first measured have passed their check. Started before that mark
        and check, the asker's storage transactions (each holds SQLite's write lock from
        its start: ``BEGIN IMMEDIATE``) made them wait for the lock (0.5 s in 120 trials
        of a synthetic run, issue #13); the asks still overlap the first measurement, and
        a batch whose trials all step back asks nothing ahead."""
        pending = self._deferred + list(batch)
        self._deferred = []
        inflight, self._carried = self._carried, collections.deque()
        statuses: list[TrialStatus] = []
        starting = True  # more trials of this batch may start
        started = False  # a trial of this batch has started
        deferred = False  # its trials left to start are deferred to the next call
        try:
            while True:
                while starting and pending and len(inflight) <= self.opts.measure_ahead:
                    ready = self._first_ready(M, pending)
                    if carry and inflight and ready < 0:
                        # Every trial left is still compiling and the GPU has work: the
                        # next batch's compiled ones go first (issue #13: compile waits).
                        self._deferred, pending = pending, []
                        deferred = True
                        break
                    before = len(inflight)
                    starting = self._start(study, M, pending, max(ready, 0), inflight,
                                           budget, deadline)
                    started = started or len(inflight) > before
                # Once the first trial is checked (a batch whose trials all stepped back
                # asks nothing).
                if ask_ahead is not None and (started or deferred or not starting
                                              or not pending):
                    if started or deferred:
                        self._ahead = ask_ahead()
                    ask_ahead = None
                if not inflight:
                    break
                if carry and starting and not pending and not stop_requested():
                    self._carried, inflight = inflight, collections.deque()
                    return statuses
                job = inflight.popleft()
                status = self._on_measured(study, job, inflight)
                if status is None:
                    continue
                statuses.append(status)
                if getattr(self.view, "per_trial", True):  # a summary reads every trial
                    self.view.update(summarize_study(self.spec.kernel, study, M))
            if stop_requested():
                raise Stopped
        finally:
            for job in inflight:  # stopped at once, or an error: not measured here
                job.future.cancel()
                pending.append((job.trial, job.config, job.source))
            for trial, config, _ in pending:
                self.tell_skipped(study, trial, config)
        return statuses

    def _start(self, study: optuna.Study, M: int, pending: list[tuple[Any, Config, str]],
               i: int, inflight: collections.deque, budget: int | None,
               deadline: float | None) -> bool:
        """Mark and check pending trial ``i`` and queue its short measurement; returns
        False when no more trials of this batch may start (a stop was asked, the deadline
        passed, or other workers hold the rest of the budget)."""
        trial, config, source = pending[i]
        if stop_requested() or (deadline is not None and self.clock() >= deadline):
            return False
        try:
            with unless_taken_over(study, trial):
                trial.set_user_attr(record.MEASURING, True)
                held, twin = self._held_by_others(study, trial, config)
                if twin is not None:  # another worker took the same config just now
                    self.tell_duplicate(study, trial, twin)
                    pending.pop(i)
                    return True
                if budget is not None and held >= budget:
                    return False  # other workers hold the rest of the budget
        except TakenOver as taken:
            pending.pop(i)
            self.heartbeat.remove(trial._trial_id)
            say_taken_over(taken.number, M, "it was not measured here")
            return True
        pending.pop(i)
        inflight.append(_InFlight(trial, M, config, source, "short",
                                  self._gpu.submit(self.bencher.measure, M, config, "short")))
        return True

    def _first_ready(self, M: int, pending: Sequence[tuple[Any, Config, str]]) -> int:
        """The index of the first pending trial whose config the benchmarker has compiled
        (:meth:`~searcher.measure.harness.Benchmarker.ready`), or -1 where none has: measured in
        the order asked, a config still compiling held up the GPU while later ones of its
        batch were ready (issue #13: compile waits)."""
        ready = getattr(self.bencher, "ready", None)
        if ready is None:  # a benchmarker of the older protocol: every config is ready
            return 0 if pending else -1
        return next((i for i, (_, config, _) in enumerate(pending) if ready(M, config)), -1)

    def _on_measured(self, study: optuna.Study, job: _InFlight,
                     inflight: collections.deque) -> TrialStatus | None:
        """Store a finished measurement of ``job`` and tell the study, or queue the trial's
        full fidelity (returns None then)."""
        m = job.future.result()
        job.cost_s += m.cost_s
        try:
            with unless_taken_over(study, job.trial):
                status = self._tell_measured(study, job, m)
        except TakenOver as taken:
            self.heartbeat.remove(job.trial._trial_id)
            say_taken_over(taken.number, job.M, "its measurement is dropped")
            return None
        if status is None:
            job.fidelity = "full"
            job.future = self._gpu.submit(self.bencher.measure, job.M, job.config, "full")
            inflight.append(job)
        else:
            self.heartbeat.remove(job.trial._trial_id)
        return status

    def _tell_measured(self, study: optuna.Study, job: _InFlight,
                       m: Measurement) -> TrialStatus | None:
        """Store a measurement on its trial: failed, pruned or complete (the trial is told;
        returns its status), or None for a short measurement that goes on to full."""
        from optuna.trial import TrialState

        trial = job.trial
        brief = {record.SHORT if job.fidelity == "short" else record.FULL: m.brief()}
        if not m.ok:
            return self._tell_failed(study, trial, m, job.cost_s, brief)
        if job.fidelity == "short":
            store_on_trial(study, trial, brief, report=(0, m.median_us))
            if not trial.should_prune():
                return None
            store_on_trial(study, trial, {record.STATUS: TrialStatus.PRUNED.value,
                                          record.COST_S: job.cost_s}, valid=0.0)
            tell(study, trial, state=TrialState.PRUNED)
            return TrialStatus.PRUNED
        store_on_trial(study, trial, {**brief, record.STATUS: TrialStatus.OK.value,
                                      record.COST_S: job.cost_s}, valid=0.0)
        tell(study, trial, m.median_us)
        return TrialStatus.OK

    @staticmethod
    def _held_by_others(study: optuna.Study, trial: Any,
                        config: Config) -> tuple[int, int | None]:
        """What other trials (of any worker) hold, checked after ``trial`` is marked
        ``measuring``: how much budget (measured trials, and others marked measuring),
        and the number of one with the same config, if any.

        Every trial marks itself before it checks, so of two trials checking at the same
        time the later sees the earlier: at most the budget's worth of trials, and one
        trial per config, pass the check, whatever the storage and the workers' clocks.
        Rarely two trials both step back; their budget and configs are asked again.
        """
        from optuna.trial import TrialState

        held, twin = 0, None
        mine = config.to_dict()
        for t in study.get_trials(deepcopy=False):
            if t._trial_id == trial._trial_id:
                continue
            status = status_of(t)
            if status in COUNTED_STATUSES or (
                    status is None and t.state == TrialState.RUNNING and t.user_attrs.get(record.MEASURING)):
                held += 1
                if twin is None and t.user_attrs.get(record.CONFIG) == mine:
                    twin = t.number
        return held, twin

    def tell_duplicate(self, study: optuna.Study, trial: Any, twin: int) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr(record.STATUS, TrialStatus.DUPLICATE.value)
        trial.set_user_attr(record.DUPLICATE_OF, twin)
        tell(study, trial, state=TrialState.PRUNED)
        self.heartbeat.remove(trial._trial_id)

    # warm start
    def warm_start(self, study: optuna.Study, M: int, ctx: dict[str, int],
                   neighbours: bool = True) -> None:
        """Enqueue vLLM's default config (and the file to beat) and the winners of the
        nearest finished batch sizes, once per study. With ``neighbours=False`` (a batch
        size opened while the one before it is still deciding its winner) only the first
        part; a later call adds the neighbours' winners, which the next ask then takes."""
        if study.user_attrs.get(record.WARM_STARTED) or not self.opts.warm_start:
            return
        candidates: list[tuple[Config, str]] = [
            (self.spec.kernel.default_config(self.spec.shape, M), "default")]
        if self.opts.against is not None:
            candidates.append((self.opts.against[M], "against file"))
        for other, config in self.neighbour_winners(M, NEIGHBOURS) if neighbours else ():
            candidates.append((config, f"neighbour M={other}"))
        seen: set[Config] = set()
        for config, source in candidates:
            if config in seen or not self.spec.space.is_valid(config, ctx):
                continue
            seen.add(config)
            study.enqueue_trial(self.spec.space.to_params(config),
                                user_attrs={record.SOURCE: source}, skip_if_exists=True)
        if neighbours:
            study.set_user_attr(record.WARM_STARTED, True)

    def neighbour_winners(self, M: int, n: int) -> list[tuple[int, Config]]:
        """Winners of the ``n`` batch sizes nearest to M (in log2) that are finished, in
        this process or in the storage (another worker's, or an earlier run's)."""
        others = set(self.spec.batch_sizes) | set(self.winners)
        others.discard(M)
        found = []
        for other in sorted(others, key=lambda m: (abs(math.log2(m) - math.log2(M)), m)):
            config = self.winners.get(other)
            if config is None:
                stored = load_existing_study(self.storage, study_name(
                    self.spec.kernel, self.opts.kind, self.spec.shape, self.opts.device, other))
                final = stored.user_attrs.get(record.FINAL) if stored is not None else None
                config = self.spec.kernel.config_from_dict(final["winner"]) if final else None
            if config is not None:
                found.append((other, config))
            if len(found) == n:
                break
        return found

    def enqueue_unmeasured(self, study: optuna.Study, M: int, ctx: dict[str, int]) -> bool:
        measured = self.measured_configs(study)
        rest = [c for c in self.spec.space.enumerate(ctx) if c not in measured]
        if not rest:
            return False
        config = random.Random(len(measured)).choice(rest)
        study.enqueue_trial(self.spec.space.to_params(config),
                            user_attrs={record.SOURCE: "fallback (sampler stuck)"})
        return True

    def _out_of_configs(self, study: optuna.Study, M: int, ctx: dict[str, int]) -> bool:
        return len(self.measured_configs(study)) >= len(self.valid_codes(M, ctx))

    def nearest_valid(self, M: int, ctx: dict[str, int], config: Config,
                      exclude: set[Config]) -> Config | None:
        """The valid config closest to ``config`` in the space's ordinal encoding (sum of
        steps along each parameter's value list), skipping ``exclude``."""
        here = list(self.spec.space.to_params(config).values())
        best, best_d = None, math.inf
        for candidate, code in self.valid_codes(M, ctx):
            if candidate in exclude:
                continue
            d = sum(abs(a - b) for a, b in zip(code, here))
            if d < best_d:
                best, best_d = candidate, d
        return best

    def valid_codes(self, M: int, ctx: dict[str, int]) -> list[tuple[Config, list[int]]]:
        """Every valid config of M with its ordinal encoding (computed once per M)."""
        if M not in self._valid:
            space = self.spec.space
            self._valid[M] = [(c, list(space.to_params(c).values())) for c in space.enumerate(ctx)]
        return self._valid[M]

    def measured_configs(self, study: optuna.Study,
                         trials: Sequence[Any] | None = None) -> dict[Config, Any]:
        """Configs already tried: measured, or found unmeasurable by the benchmarker (of
        ``trials``, the study's as read earlier, or else as stored now)."""
        from optuna.trial import TrialState

        out = {}
        for t in study.get_trials(deepcopy=False) if trials is None else trials:
            status = status_of(t)
            if status in COUNTED_STATUSES or status is TrialStatus.UNMEASURABLE or (
                    status is None and t.state == TrialState.RUNNING and record.PID in t.user_attrs):
                out[config_of(self.spec.kernel, t)] = t  # measured, or being measured by another worker
        return out

    # asking
    def _ask_and_precompile(self, study: optuna.Study, M: int, ctx: dict[str, int],
                            want: int, seen: Sequence[Any] | None = None,
                            earlier: Sequence[Future] = ()) -> list[tuple[Any, Config, str]]:
        """A batch, asked (on the asker thread while the GPU measures the one before, or
        here for a batch size's first) and handed to the compile threads; a hint that
        raises closes the batch's trials before the error goes on. ``seen``: the study's
        trials as read where the ask was started; the sampler and the duplicate check see
        those (:func:`searcher.strategies.samplers.as_of`), not the trials told since. ``earlier``:
        asks of batches not measured yet (done on this thread before this one), whose
        configs this batch leaves out."""
        from searcher.strategies.samplers import as_of

        taken: set[Config] = set()
        for future in earlier:
            if future.done() and not future.cancelled() and future.exception() is None:
                taken.update(cfg for _, cfg, _ in future.result())
        with as_of(seen) if seen is not None else contextlib.nullcontext():
            batch = self.ask_batch(study, M, ctx, want, seen, taken)
        try:
            self._precompile(M, [cfg for _, cfg, _ in batch])
        except BaseException:
            for trial, config, _ in batch:  # asked, never to be measured: back to the queue
                self.tell_skipped(study, trial, config)
            raise
        return batch

    def ask_batch(self, study: optuna.Study, M: int, ctx: dict[str, int], want: int,
                  seen: Sequence[Any] | None = None,
                  taken: set[Config] | None = None) -> list[tuple[Any, Config, str]]:
        """Ask until ``want`` trials have something to measure (or too many asks were
        idle); invalid and duplicate configs are told at once without measuring. ``seen``:
        the trials to take as measured; ``taken``: configs of batches asked and not yet
        measured (see :meth:`_ask_and_precompile`)."""
        measured = self.measured_configs(study, seen)
        taken = {c for c in taken or () if c not in measured}
        # Near the end of a small space, or with other workers on it, few configs are
        # left: ask for no more than that.
        want = min(want, len(self.valid_codes(M, ctx)) - len(measured) - len(taken))
        batch: list[tuple[Any, Config, str]] = []
        in_batch: set[Config] = set(taken)  # a duplicate of those is one of this batch
        try:
            self._ask_into(study, M, ctx, want, measured, batch, in_batch)
        except BaseException:
            # Interrupted while asking (a second Ctrl-C): close what was asked.
            for t, config, _ in batch:
                self.tell_skipped(study, t, config)
            raise
        return batch

    def _ask_into(self, study: optuna.Study, M: int, ctx: dict[str, int], want: int,
                  measured: dict[Config, Any], batch: list, in_batch: set) -> None:
        for _ in range(MAX_IDLE_ASKS + want if want > 0 else 0):
            if len(batch) == want:
                break
            trial = study.ask()
            try:
                with unless_taken_over(study, trial):
                    if not self._classify_asked(study, M, ctx, trial, measured, batch,
                                                in_batch):
                        break
            except TakenOver as taken:  # this process was stopped right after asking
                self.heartbeat.remove(trial._trial_id)
                say_taken_over(taken.number, M, "it was not measured here")
                continue

    def _classify_asked(self, study: optuna.Study, M: int, ctx: dict[str, int], trial: Any,
                        measured: dict[Config, Any], batch: list, in_batch: set) -> bool:
        from optuna.trial import TrialState

        if {record.STATUS, record.MEASURING, record.PID} & trial.user_attrs.keys():
            # A retry of a trial whose worker died carries that trial's attributes
            # (Optuna copies them): its old status would hide it from the budget
            # count of other workers, and its dead pid would get it recovered again.
            trial.set_user_attr(record.STATUS, None)
            trial.set_user_attr(record.MEASURING, False)
            for key, value in self.identity.items():
                trial.set_user_attr(key, value)
        try:
            return self._classify(study, M, ctx, trial, measured, batch, in_batch)
        except BaseException:
            if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING \
                    and not any(t is trial for t, _, _ in batch):
                trial.set_user_attr(record.STATUS, TrialStatus.NOT_RUN.value)
                tell(study, trial, state=TrialState.PRUNED)
            raise

    def _classify(self, study: optuna.Study, M: int, ctx: dict[str, int], trial: Any,
                  measured: dict[Config, Any], batch: list, in_batch: set) -> bool:
        """Suggest a config for an asked trial: add it to the batch, or tell it at once
        when there is nothing to measure. Returns False when no valid config is left."""
        from optuna.trial import TrialState

        config = self.spec.space.suggest(trial)
        source = trial.user_attrs.get(record.SOURCE) or "sampler"
        attrs = {record.CONFIG: config.to_dict(), **record.config_attrs(config)}
        broken = self.spec.space.violations(config, ctx)
        if broken:
            store_on_trial(study, trial, {**attrs, record.STATUS: TrialStatus.INVALID.value,
                                          record.REASON: "breaks " + ", ".join(broken)},
                           valid=1.0)
            tell(study, trial, state=TrialState.PRUNED)
        elif config in measured or config in in_batch:
            attrs[record.STATUS] = TrialStatus.DUPLICATE.value
            if config in measured:
                attrs[record.DUPLICATE_OF] = measured[config].number
            store_on_trial(study, trial, attrs)
            tell(study, trial, state=TrialState.PRUNED)
        else:
            store_on_trial(study, trial, {**attrs, **self.identity})
            self.heartbeat.add(trial._trial_id)
            in_batch.add(config)
            batch.append((trial, config, source))
            return True
        # Nothing to measure in this proposal. Rejection alone wastes many asks: the
        # extended space keeps ~3% of its raw grid at small M, and TPE re-proposes the
        # best configs of a small space (an H200 run of the 432 space: 2,988 duplicates
        # for 720 trials). Queue the nearest valid config not measured yet instead, a
        # local step from the sampler's pick.
        nearest = self.nearest_valid(M, ctx, config, set(measured) | in_batch)
        if nearest is None:
            return False  # every valid config is measured, in flight, or in this batch
        study.enqueue_trial(self.spec.space.to_params(nearest),
                            user_attrs={record.SOURCE: f"nearest to trial {trial.number}"})
        return True

    def tell_skipped(self, study: optuna.Study, trial: Any, config: Config) -> None:
        """A trial asked ahead but not measured (budget or time ran out): give its config
        back to the queue for a later run, and close the trial."""
        from optuna.trial import TrialState

        self.heartbeat.remove(trial._trial_id)
        try:
            with unless_taken_over(study, trial):
                trial.set_user_attr(record.STATUS, TrialStatus.NOT_RUN.value)
                tell(study, trial, state=TrialState.PRUNED)
        except TakenOver:
            return  # the process that took it over queued its retry
        params = self.spec.space.to_params(config)
        # (Optuna's skip_if_exists would see this very trial and never re-queue.)
        if not any(t.system_attrs.get("fixed_params") == params
                   for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
            study.enqueue_trial(params, user_attrs={record.SOURCE: trial.user_attrs.get(record.SOURCE, "sampler")})

    # measuring
    @staticmethod
    def _tell_failed(study: optuna.Study, trial: Any, m: Measurement,
                     cost: float, more: dict[str, Any] | None = None) -> TrialStatus:
        from optuna.trial import TrialState

        # A benchmarker may itself declare a config outside what it can measure (a replay
        # of a dataset that lacks it): stored as unmeasurable, free like a broken
        # constraint, and never proposed again.
        status = TrialStatus.UNMEASURABLE if m.status is Status.INVALID \
            else TrialStatus(m.status.value)
        store_on_trial(study, trial, {**(more or {}), record.STATUS: status.value,
                                      record.REASON: m.reason, record.COST_S: cost},
                       valid=1.0)
        tell(study, trial, state=TrialState.PRUNED)
        return status

    # finalists
    def finalists(self, study: optuna.Study) -> list[Config]:
        """The configs the finalists' run of ``study`` re-measures (:func:`finalist_configs`)."""
        return finalist_configs(self.spec.kernel, study, self.spec.finalists)

    def finalize(self, study: optuna.Study, M: int, against: Config | None = None) -> None:
        """The finalists' run of batch size ``M`` (:func:`run_finalists`)."""
        run_finalists(self.spec, self.bencher, self.opts, study, M, against, self.clock)


def run_search(
    spec: StudySpec,
    bencher: Benchmarker,
    opts: SearchOptions,
    view: RunView | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[MSummary]:
    """Run (or resume) the search of every batch size of ``spec`` and return summaries.

    Args:
        spec: the validated study spec.
        bencher: where measurements come from (GPU, replay or synthetic).
        opts: device name, storage and overrides of the spec's budget.
        view: live progress; nothing is shown when None.
        clock: seconds, for the time budget (tests pass a fake one).
    """
    from searcher.study.spec import check_configs_exist

    batch_sizes = list(opts.batch_sizes or spec.batch_sizes)
    check_configs_exist(spec, batch_sizes)
    budget = opts.trials_per_m if opts.trials_per_m is not None else spec.trials_per_m
    limit = opts.time_limit_s if opts.time_limit_s is not None else spec.time_limit_s
    deadline = clock() + limit if limit else None
    searcher = _Searcher(spec, bencher, opts, view or NullView(), clock)
    return searcher.run(batch_sizes, budget, deadline)
