"""A run's trials among other processes sharing the storage: heartbeats for the trials
this process holds (:class:`Heartbeat`), recovery of trials a process that died left
RUNNING (:func:`recover_stale_trials`), and a trial this process still holds that another
one took over (:class:`TakenOver`)."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from searcher.store import record
from searcher.store.record import TrialStatus, status_of, worker_identity
from searcher.store.storage import HEARTBEAT_INTERVAL_S, process_alive, retry_stale_trial

if TYPE_CHECKING:  # pragma: no cover
    import optuna

__all__ = ["Heartbeat", "recover_stale_trials", "TakenOver", "unless_taken_over",
           "say_taken_over"]


class Heartbeat:
    """Records Optuna heartbeats for every trial this process has asked and not told."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        self.storage = storage
        self.enabled = is_heartbeat_enabled(storage)
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        if self.enabled:
            self.thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
            self.thread.start()

    def _beat(self) -> None:
        while not self.stop.wait(min(HEARTBEAT_INTERVAL_S, 5)):
            with self.lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a finished trial or a hiccup: the next beat retries
                    pass

    def add(self, trial_id: int) -> None:
        if self.enabled:
            self.storage.record_heartbeat(trial_id)
        with self.lock:
            self.trial_ids.add(trial_id)

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


def recover_stale_trials(study: optuna.Study) -> int:
    """Fail and re-enqueue trials left RUNNING by a process that died.

    On this host a trial whose process is gone is stale at once; a trial of another host
    is stale once its heartbeat is older than the grace period (Optuna's mechanism).
    Returns how many trials were recovered.
    """
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    me = worker_identity()
    retry = retry_stale_trial()
    storage = study._storage
    recovered = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, pid = t.user_attrs.get(record.HOST), t.user_attrs.get(record.PID)
        if host != me[record.HOST] or pid is None or pid == me[record.PID] \
                or process_alive(pid):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, record.STATUS,
                                        TrialStatus.INTERRUPTED.value)
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                retry(study, storage.get_trial(t._trial_id))
                recovered += 1
        except Exception:  # another process got there first
            continue
    running = {t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    fail_stale_trials(study)
    # Count only trials that were running and are now failed as stale (other workers fail
    # duplicates and skipped trials all the time: a count of all failures would not do).
    recovered += sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                     if t._trial_id in running and status_of(t) is None)
    return recovered


class TakenOver(Exception):
    """A trial this process holds was finished by another process: this process was
    stopped (SIGSTOP, a suspended VM) longer than the heartbeat grace period, and another
    run failed the trial as stale and retried it. The caller drops that trial's
    measurement with one line on stderr (:func:`say_taken_over`) and goes on."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


@contextmanager
def unless_taken_over(study: optuna.Study, trial: Any) -> Iterator[None]:
    """Raise :class:`TakenOver` where updating ``trial`` failed because it is no longer
    running (Optuna raises ``UpdateFinishedTrialError`` from an attribute, ``ValueError``
    from a tell); any other failure, or one of a trial still running, is raised as is."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        yield
    except (UpdateFinishedTrialError, ValueError):
        if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            raise
        raise TakenOver(trial.number) from None


def say_taken_over(number: int, M: int, what: str) -> None:
    print(f"searcher: trial {number} (M={M}) was taken over by another process (its "
          f"heartbeat went stale); {what}", file=sys.stderr, flush=True)
