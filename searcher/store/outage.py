"""Riding out a storage that stops answering for a while (a database server restarting,
a network blip), and stopping cleanly when it does not come back.

Every call a run makes to its Optuna storage (ask, tell, attributes, reads, heartbeats)
goes through :class:`RetryingRDBStorage`: an ``RDBStorage`` whose public methods retry a
lost connection with backoff (0.5 s, doubling, at most 8 s between tries) until the
storage has not answered for :data:`RETRY_S` seconds, then raise
:class:`~searcher.errors.StorageUnavailable`. That is the one place: the search loop does
not special-case its storage calls. Nothing measured is lost: a trial whose tell did not
reach the storage stays RUNNING there, and the rerun fails and retries it (its process is
gone). Only connection errors are retried (SQLAlchemy's ``OperationalError``,
``InterfaceError`` and ``DisconnectionError``, also when Optuna wraps them in its
``StorageInternalError``); a constraint or data error is raised at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from typing import Any, Callable

from optuna.storages import RDBStorage

from searcher.errors import StorageUnavailable

__all__ = ["RETRY_S", "RetryingRDBStorage", "display_url"]

#: How long a run waits for a storage that stopped answering before it stops (seconds).
RETRY_S = float(os.environ.get("SEARCHER_STORAGE_RETRY_S", "60"))
_FIRST_WAIT_S = 0.5
_MAX_WAIT_S = 8.0


def display_url(url: str) -> str:
    """``url`` as it may be shown: without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the database did not answer."""
    from sqlalchemy import exc as sa

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError)):
            return True
        e = e.__cause__ or e.__context__
    return False


def _first_line(exc: BaseException) -> str:
    from sqlalchemy import exc as sa

    e: BaseException = exc
    while not isinstance(e, sa.DBAPIError) and (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class RetryingRDBStorage(RDBStorage):
    """An Optuna ``RDBStorage`` that waits out a storage outage of up to ``retry_s``."""

    #: What the messages call the storage (set by :func:`searcher.store.storage.open_storage`).
    label: str = "(given)"
    retry_s: float = RETRY_S

    _local = threading.local()  # calls in progress on this thread (inner ones don't retry)
    #: Taken around each call's attempt where the threads of one process share a SQLite
    #: file (set by :func:`searcher.store.storage.open_storage`); None: no lock.
    serial: Any = None  # a threading.RLock
    _down_since: float | None = None
    _gave_up = False

    def _retrying(self, call: Callable[[], Any]) -> Any:
        depth = getattr(self._local, "depth", 0)
        if depth:
            return call()
        self._local.depth = 1
        try:
            wait = _FIRST_WAIT_S
            while True:
                try:
                    with self.serial or contextlib.nullcontext():
                        result = call()
                except Exception as exc:
                    if not _lost_connection(exc):
                        raise
                    now = time.monotonic()
                    down = self._down_since  # (another thread may reset it meanwhile)
                    if down is None:
                        down = self._down_since = now
                        print(f"searcher: storage {self.label} is not answering "
                              f"({_first_line(exc)}); retrying for up to {self.retry_s:g} s "
                              "(SEARCHER_STORAGE_RETRY_S)", file=sys.stderr, flush=True)
                    if self._gave_up or now - down >= self.retry_s:
                        self._gave_up = True
                        raise StorageUnavailable(
                            f"storage {self.label} has not answered for {self.retry_s:g} s "
                            f"({_first_line(exc)}); what was measured is stored: once it "
                            "answers, rerun the same command to resume") from None
                    time.sleep(min(wait, max(0.05, down + self.retry_s - now)))
                    wait = min(wait * 2, _MAX_WAIT_S)
                    continue
                if self._down_since is not None and not self._gave_up:
                    print(f"searcher: storage {self.label} answers again after "
                          f"{time.monotonic() - self._down_since:.0f} s", file=sys.stderr,
                          flush=True)
                    self._down_since = None
                return result
        finally:
            self._local.depth = 0


    def set_trial_attrs(self, trial_id: int, user_attrs: dict[str, Any],
                        system_attrs: dict[str, Any] | None = None,
                        intermediate: tuple[int, float] | None = None) -> None:
        """Store user and system attributes and an intermediate value (step, value) of a
        running trial in one transaction, where Optuna's public methods take one each
        (see :func:`searcher.store.storage.store_on_trial`). Raises as those do on a finished
        trial."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        def store() -> None:
            with _create_scoped_session(self.scoped_session, True) as session:
                for model, attrs in ((models.TrialUserAttributeModel, user_attrs),
                                     (models.TrialSystemAttributeModel, system_attrs or {})):
                    for key, value in attrs.items():
                        self._set_trial_attr_without_commit(session, model, trial_id, key, value)
                if intermediate is not None:
                    self._set_trial_intermediate_value_without_commit(session, trial_id,
                                                                      *intermediate)

        self._retrying(store)


def _wrap(name: str) -> None:
    @functools.wraps(getattr(RDBStorage, name))
    def retried(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(
            lambda: getattr(super(RetryingRDBStorage, self), name)(*args, **kwargs))

    setattr(RetryingRDBStorage, name, retried)


# Every public storage method (Optuna's BaseStorage and BaseHeartbeat interfaces, and
# RDBStorage's own), not the schema-upgrade helpers; and the private ones Optuna's
# _CachedStorage calls on its backend (Optuna 5.0). Unwrapped, ``_get_trials`` (reading a
# study's trials) in an outage ended the run (tests/test_faults.py, once the search
# checked trials while the GPU measured); and ``_set_trial_param`` opened its transaction
# without the ``serial`` lock, then waited for that lock in a nested public call while
# another thread held it and waited for SQLite's lock: a deadlock.
for _name in ("_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id",
              "_get_stale_trial_ids"):
    _wrap(_name)
for _name in sorted(dir(RDBStorage)):
    if not _name.startswith("_") and callable(getattr(RDBStorage, _name)) \
            and _name not in ("upgrade", "get_current_version", "get_head_version",
                              "get_all_versions", "remove_session"):
        _wrap(_name)
