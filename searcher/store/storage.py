"""Where studies live: opening an Optuna storage, naming studies, and checking that a
stored study is the one a spec describes.

Every (kernel, kind, problem, device, M) gets its own Optuna study, named deterministically,
e.g.
``fused_moe:search:E=64,N=1408,H=2048,top_k=6,bf16:NVIDIA_H200:M=64``. The default storage is
an embedded SQLite file (``sqlite:///searcher.db`` in the current directory); any
SQLAlchemy URL works through ``--storage``, and a path ending in ``.log`` or ``.journal``
opens Optuna's journal file storage.

File paths in URLs follow SQLAlchemy's convention for every scheme: three slashes and a
relative path (``sqlite:///s.db``, ``journal:///runs/s.journal``, relative to the current
folder), four slashes for an absolute one (``sqlite:////data/s.db``,
``journal:////tmp/s.journal``). :func:`check_url` is the one place URL forms are checked.
"""

from __future__ import annotations

import copy
import os
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Mapping

from searcher.store import record
from searcher.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.kernels.base import Kernel, Problem
    from searcher.study.space import Space
    from searcher.study.spec import StudySpec

__all__ = [
    "study_name",
    "check_url",
    "open_storage",
    "open_study",
    "load_existing_study",
    "iter_studies",
    "stored_devices",
    "HEARTBEAT_INTERVAL_S",
    "OBJECTIVE_NAME",
    "GRACE_PERIOD_S",
    "process_alive",
    "claim",
    "retry_stale_trial",
    "store_on_trial",
    "tell",
]

# searcher drives trials with ask/tell and records heartbeats itself; Optuna's notes that
# heartbeats and the retry callback are experimental, or meant for optimize(), are noise.
warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used")
warnings.filterwarnings("ignore", message=".*is experimental \\(supported from")
warnings.filterwarnings("ignore", message="Argument ``heartbeat_interval`` is an experimental")
warnings.filterwarnings("ignore", message="Argument ``grace_period`` is an experimental")
#: A running trial records a heartbeat this often; one silent for GRACE_PERIOD_S is stale
#: (its process died) and is failed and retried by the next run.
HEARTBEAT_INTERVAL_S = int(os.environ.get("SEARCHER_HEARTBEAT_S", "10"))
GRACE_PERIOD_S = int(os.environ.get("SEARCHER_GRACE_S", "60"))
#: Optuna's retry callback gives a stale trial's config this many more chances.
MAX_RETRY = 2
#: What a trial's value is, as Optuna's tools show it: the median time of the layer, in us.
OBJECTIVE_NAME = "median_us"


def study_name(kernel: Kernel, kind: str, problem: Problem, device: str, M: int) -> str:
    """The storage name of the study of one batch size (``kind`` is search or grid)."""
    return f"{kernel.name}:{kind}:{problem.label()}:{device}:M={M}"


def _journal_path(url: str) -> str | None:
    for prefix in ("journal:///", "journal://"):
        if url.startswith(prefix):
            return url[len(prefix):]
    if url.endswith((".log", ".journal")) and "://" not in url:
        # A bare journal file name; "journal:x.journal" (the slashes left out) is x.journal.
        return url[len("journal:"):] if url.startswith("journal:") else url
    return None


def retry_stale_trial() -> Callable[[optuna.Study, Any], None]:
    """Optuna's retry of a stale trial (its config queued again, at most :data:`MAX_RETRY`
    times), without what the process that ran it stored on it: its host and pid, status,
    measurements and cost.

    Optuna's callback copies the trial's user attributes. The copy carried the dead
    process's pid: asked by another worker and not yet marked as its own, it was RUNNING
    with a dead pid, and a third worker's recovery failed it again at once (its new retry
    then named the first failed trial, and counted a retry more).
    """
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    own = {*record.worker_identity(), record.STATUS, record.MEASURING, record.SHORT,
           record.FULL, record.COST_S, record.REASON}
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def call(study: optuna.Study, trial: Any) -> None:
        clean = copy.copy(trial)
        clean.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in own}
        retry(study, clean)

    return call


def check_url(url: str) -> None:
    """Refuse storage URL forms that cannot be what the user meant, with the form to write.

    Checked here, for every command: an in-memory SQLite database (gone when its
    connection closes; searcher opens several), a bare file name (``url.db``: a SQLite
    URL is meant), ``postgres://`` (SQLAlchemy's dialect is ``postgresql``) and a file
    storage whose folder does not exist (with the four-slash form when the path was
    meant to be absolute).

    Raises:
        StorageError: naming the URL, the rule and the URL to write instead.
    """
    if url.startswith("sqlite:") and url.split("?", 1)[0] in ("sqlite://", "sqlite:///",
                                                                "sqlite:///:memory:"):
        raise StorageError(
            f"--storage {url}: an in-memory SQLite database keeps nothing (it is gone when its "
            "connection closes, and searcher opens several); use a file, e.g. "
            "sqlite:///searcher.db, or memory:// (kept for one process only)")
    if url.startswith("sqlite://") and not url.startswith("sqlite:///"):
        # SQLAlchemy reads what follows sqlite:// as a host, which SQLite has none of
        path = url[len("sqlite://"):].split("?", 1)[0]
        raise StorageError(
            f"--storage {url}: a SQLite URL has three slashes before a relative path and "
            f"four before an absolute one; write sqlite:///{path} (relative to this folder) "
            f"or sqlite:////{path} (absolute)")
    if "://" not in url and _journal_path(url) is None:
        # (sqlite:x.db is the file x.db with the slashes left out)
        path = url[len("sqlite:"):] if url.startswith("sqlite:") else url
        raise StorageError(
            f"--storage {url}: not a storage URL (scheme://...); for a SQLite file write "
            f"sqlite:///{path or 'searcher.db'}")
    scheme = url.split("://", 1)[0]
    if scheme == "postgres" or scheme.startswith("postgres+"):
        fixed = "postgresql" + url[len("postgres"):]
        raise StorageError(
            f"--storage {url}: SQLAlchemy names PostgreSQL 'postgresql', not 'postgres'; "
            f"write {fixed}")
    path = _storage_file(url)
    if path is None:
        return
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        hint = ""
        if not os.path.isabs(path) and url.startswith(f"{scheme}:///") \
                and os.path.isdir("/" + path.split("/", 1)[0]):
            hint = (f"; {scheme}:///PATH is relative to the current folder, as in SQLAlchemy's "
                    f"sqlite:///PATH: for the absolute path write {scheme}:////{path}")
        raise StorageError(f"--storage {url}: folder {folder} does not exist{hint}")


def _check_file(url: str, path: str, *, tables: bool) -> None:
    """Refuse an existing SQLite file that is not a database, is damaged or (``tables``)
    holds no Optuna tables, naming the file, before Optuna reads it (whose own errors
    are misleading: "exceeding max length"). Only SQLite touches the file (see
    :func:`open_storage` on why not ``open()``)."""
    import sqlite3

    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    what = _not_a_storage(url, path)
    try:
        connection = sqlite3.connect(path, timeout=60)
        try:
            connection.execute("PRAGMA query_only = ON")
            problem = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
            names = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{what} ({exc})") from None
    if problem != "ok":
        raise StorageError(f"{what} (SQLite's check: {problem})")
    if tables and not {"studies", "trials"} <= names:
        raise StorageError(f"{what} (it holds no Optuna tables)")


def _not_a_storage(url: str, path: str) -> str:
    """The start of the one line that refuses ``path`` as a storage (reading or writing)."""
    what = f"--storage {url}: {path} is not a searcher/Optuna storage or is damaged"
    if path.endswith(".gz"):  # the repository's example storages are kept gzipped
        what += f" (gzipped? gunzip -k it and pass {path[:-3]})"
    return what


def open_storage(url: str, *, read_only: bool = False) -> optuna.storages.BaseStorage:
    """Open the storage at ``url``: the one place searcher resolves a storage URL.

    Read-write (``run``, ``grid``, ``compare`` when it re-measures) creates the storage if
    needed, with heartbeats enabled; a database that stops answering later is waited for
    (see :mod:`searcher.store.outage`). Read-only (``status``, ``export``, ``report``,
    ``compare`` of stored times) creates no file and no table and does not switch a SQLite
    file to WAL mode; its SQLite connections are ``query_only``, so a write would fail
    rather than change the storage. (A journal file or ``memory://`` opens as read-write.)

    Raises:
        StorageError: the URL is malformed, its driver is missing, the server cannot be
            reached, or (read-only) the storage file does not exist or is not a storage.
    """
    check_url(url)
    if read_only:
        return _open_read_only(url)
    # No pre-check of the file here: a damaged one is named from SQLite's error below.
    # (Reading it with open() in a process that holds SQLite connections to it would drop
    # their POSIX locks on close, and another process could then checkpoint the WAL under
    # them: a test saw a false "malformed" so.)
    path = _storage_file(url)
    retry = retry_stale_trial()
    if url == "memory://":  # nothing persists: for benchmarks of the search itself
        from optuna.storages import InMemoryStorage

        return InMemoryStorage()
    journal = _journal_path(url)
    try:
        if journal is not None:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            return JournalStorage(JournalFileBackend(journal))
        engine_kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # Several processes may write one SQLite file: wait for its lock, don't fail.
            engine_kwargs["connect_args"] = {"timeout": 60}
        else:
            engine_kwargs["pool_pre_ping"] = True
        from searcher.store.outage import RetryingRDBStorage, display_url

        for attempt in range(3):
            try:
                storage = RetryingRDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=GRACE_PERIOD_S,
                    heartbeat_stale_trial_callback=retry,
                )
                break
            except Exception as exc:
                # Processes creating a new database's tables at once: one wins, the
                # others see its tables on the next try.
                if attempt == 2 or not _creation_race(exc):
                    raise
                time.sleep(0.5 * (attempt + 1))
        storage.label = display_url(url)
        if url.startswith("sqlite"):
            _fast_sqlite(storage)
        return storage
    except ImportError as exc:
        raise StorageError(f"storage {url!r}: a database driver is missing ({exc})") from None
    except Exception as exc:  # sqlalchemy's errors are many; say which URL and why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if path is not None and ("malformed" in first or "not a database" in first):
            raise StorageError(f"{_not_a_storage(url, path)} "
                               f"({first.split(') ', 1)[-1]})") from None
        raise StorageError(f"storage {url!r} cannot be opened: {first}") from None


def _storage_file(url: str) -> str | None:
    """The file behind a SQLite or journal URL (None for a server or in-memory one)."""
    journal = _journal_path(url)
    if journal is not None:
        return journal
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].split("?", 1)[0]
        return None if path in ("", ":memory:") or path.startswith("file:") else path
    return None


def _open_read_only(url: str) -> optuna.storages.BaseStorage:
    """A storage that exists already, opened for reading (see :func:`open_storage`)."""
    import sqlite3

    path = _storage_file(url)
    if path is not None and not os.path.isfile(path):
        if os.path.isdir(path):
            raise StorageError(f"--storage {url}: {path} is a folder, not a storage file")
        beside = f"; {path}.gz is there: gunzip -k it first" \
            if os.path.isfile(f"{path}.gz") else ""
        raise StorageError(f"--storage {url}: no such file {path}{beside}")
    if path is not None and url.startswith("sqlite"):
        _check_file(url, path, tables=True)
    if url == "memory://" or "://" not in url or url.startswith("journal:"):
        return open_storage(url)
    from optuna.storages import RDBStorage

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if path is not None:
        def connect() -> sqlite3.Connection:
            connection = sqlite3.connect(path, timeout=60, check_same_thread=False)
            connection.execute("PRAGMA query_only = ON")
            return connection

        engine_kwargs = {"creator": connect}
    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=True)
    except ImportError as exc:
        raise StorageError(f"--storage {url}: a database driver is missing ({exc})") from None
    except Exception as exc:  # sqlalchemy's errors are many; say which URL and why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"--storage {url} cannot be read as a searcher storage: "
                           f"{first}") from None


def _creation_race(exc: Exception) -> bool:
    text = str(exc).lower()
    return "alembic_version" in text or "already exists" in text or "unique constraint" in text


def _fast_sqlite(storage: Any) -> None:
    """Write-ahead logging with ``synchronous=NORMAL``, and transactions that take the
    write lock when they begin.

    Optuna commits once per attribute it stores; with SQLite's default rollback journal
    each commit waits for the disk (about 0.4 s of storage per trial was measured). WAL
    commits survive a killed process (only a power cut can lose the last ones) and let
    readers (``searcher status``) work while a run writes.

    Python's sqlite3 starts a transaction only at the first write, so a read-then-write
    (Optuna popping a queued trial: "is it still WAITING? then RUNNING") is not atomic:
    two workers popped the same trial in a test. ``BEGIN IMMEDIATE`` makes every
    transaction hold the write lock from its start, so such checks hold across processes.

    The threads of one run (the main one, the asker, the heartbeat) take turns through a
    lock of this process instead (:attr:`~searcher.store.outage.RetryingRDBStorage.serial`).
    Waiting for each other's SQLite lock, they slept in SQLite's busy handler (1 to
    100 ms a time) after the lock was free: on the H200 that left the GPU idle 1.7 s in
    the three-batch-size run (issue #13, ``benchmarks/idle_profile.py``).
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by sqlite3
        cursor = dbapi_connection.cursor()
        # WAL mode is kept in the file: switch only a new file (switching needs the
        # database to itself, and fails at once while another worker writes).
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            for attempt in range(20):
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    break
                except Exception:
                    if attempt == 19:
                        raise
                    time.sleep(0.25)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(storage.engine, "connect", on_connect)
    event.listen(storage.engine, "begin", on_begin)
    storage.serial = threading.RLock()
    storage.engine.dispose()  # reconnect, so every pooled connection has the pragmas


def expected_attrs(kind: str, problem: Problem, device: str, M: int, space: Space,
                   device_info: Mapping[str, Any]) -> dict[str, Any]:
    """What a study must record about itself (:data:`searcher.store.record.IDENTITY`); a
    mismatch refuses a resume. The kernel is the space's; the backend and the Triton
    version are what the benchmarker's ``device_info`` reports (None where it reports
    none)."""
    return {
        record.KERNEL: space.kernel.name,
        record.KIND: kind,
        record.SHAPE: problem.label(),
        record.DEVICE: device,
        record.BATCH_SIZE: M,
        record.SPACE: space.name,
        record.SPACE_FINGERPRINT: space.fingerprint(),
        record.BACKEND: device_info.get(record.BACKEND),
        record.TRITON_VERSION: device_info.get(record.TRITON_VERSION),
        record.TIMING: device_info.get(record.TIMING),
    }


def open_study(
    storage: optuna.storages.BaseStorage,
    kind: str,
    problem: Problem,
    device: str,
    M: int,
    space: Space,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    device_info: Mapping[str, Any],
    storage_url: str = "",
    accept: Collection[str] = (),
) -> optuna.Study:
    """Create or resume the study of one batch size of ``space``'s kernel, refusing one
    made differently, and record what measures it (``device_info``, the benchmarker's).
    Identity keys in ``accept`` may differ and are left as stored (``searcher decide``
    re-measures every config it compares, so another timing does not mix into it).

    A study stored before the backend and the Triton version were part of its identity is
    checked against the ones its stored ``device_info`` names (and then records them); a
    GPU study stored before its timing was is taken as timed in the ``legacy`` replay order
    (:data:`searcher.measure.harness.TIMINGS`), so a GPU run now, which times otherwise, refuses
    it rather than mix two timings in one search.

    Raises:
        StorageError: the stored study was made for another space, shape or device, or
            measured with another backend, Triton version or timing; the message names
            both values.
    """
    import optuna

    name = study_name(space.kernel, kind, problem, device, M)
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, pruner=pruner,
        direction="minimize", load_if_exists=True,
    )
    if study.metric_names is None:
        # Named for Optuna's tools (optuna-dashboard, trials_dataframe): a system attribute,
        # so the stored params and user attributes, and resuming, are unchanged.
        study.set_metric_names([OBJECTIVE_NAME])
    want = expected_attrs(kind, problem, device, M, space, device_info)
    have = dict(study.user_attrs)
    measured_by = have.get(record.DEVICE_INFO) or {}
    for key in (record.BACKEND, record.TRITON_VERSION, record.TIMING):
        if key not in have and key in measured_by:
            have[key] = measured_by[key]
    if record.TIMING not in have and measured_by and record.unmeasured_source(have) is None:
        # Measured on a GPU before the replay order was recorded: the legacy order.
        from searcher.measure.harness import TIMINGS

        have[record.TIMING] = TIMINGS["legacy"]
    for key, value in want.items():
        if key not in have:
            # A new study, or one another worker created a moment ago and is still
            # describing: every writer writes the same values.
            study.set_user_attr(key, value)
            continue
        if have[key] == value:
            if key not in study.user_attrs:
                study.set_user_attr(key, value)
            continue
        if key in accept:
            continue
        if key in (record.SPACE, record.SPACE_FINGERPRINT):
            stored = (f"space {have.get(record.SPACE)!r} (fingerprint "
                      f"{str(have.get(record.SPACE_FINGERPRINT))[:12]})")
            given = (f"space {want[record.SPACE]!r} (fingerprint "
                     f"{want[record.SPACE_FINGERPRINT][:12]})")
        else:
            stored, given = f"{key} {have.get(key)!r}", f"{key} {value!r}"
        now = "this run measures with" \
            if key in (record.BACKEND, record.TRITON_VERSION, record.TIMING) else "the spec now has"
        raise StorageError(
            f"storage {storage_url or '(given)'}: study {name!r} was made with {stored}, but "
            f"{now} {given}; resuming would mix two different searches. Use "
            "another --storage, or restore what the study was made with"
        )
    if record.DEVICE_INFO not in study.user_attrs:
        study.set_user_attr(record.DEVICE_INFO, dict(device_info))
    return study


def store_on_trial(study: optuna.Study, trial: optuna.Trial, user_attrs: dict[str, Any],
                   valid: float | None = None,
                   report: tuple[int, float] | None = None) -> None:
    """Store ``user_attrs`` on a running trial, with its ``valid`` constraint (0: feasible,
    as ``trial.set_constraint("valid", ...)``) and a reported (step, value) if given.

    On a SQL storage this is one transaction: Optuna commits once per attribute, and a
    trial's measurement took about ten commits on the run's main thread, which at
    M <= 8 on the H200 outlasted the measurement itself (issue #13,
    ``benchmarks/idle_profile.py``). Elsewhere (a journal file, memory) one call each.
    The trial object sees the values as its own ``set_user_attr``, ``set_constraint``
    and ``report`` would show them.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: the trial is no longer running.
    """
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    from searcher.store.outage import RetryingRDBStorage

    system = {} if valid is None else {f"{_CONSTRAINTS_KEY}:valid": float(valid)}
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # behind Optuna's _CachedStorage
    if isinstance(backend, RetryingRDBStorage):
        backend.set_trial_attrs(trial._trial_id, user_attrs, system, report)
        frozen = trial._cached_frozen_trial
        frozen.user_attrs.update(user_attrs)
        frozen.system_attrs.update(system)
        if report is not None:
            frozen.intermediate_values[report[0]] = report[1]
        return
    for key, value in user_attrs.items():
        trial.set_user_attr(key, value)
    if valid is not None:
        trial.set_constraint("valid", valid)
    if report is not None:
        trial.report(report[1], step=report[0])


def tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None,
         state: optuna.trial.TrialState | None = None) -> None:
    """Finish a running trial: ``study.tell(trial, value, state=state)`` less its last read.

    Optuna's ``Study.tell`` (Optuna 5.0, ``optuna/study/study.py``) tells through
    ``optuna.study._tell._tell_with_warning``, as its own ``optimize`` loop does, then
    reads the finished trial back from the storage to return a copy of it: one more
    transaction of six statements on the search's main thread per trial, a tenth of its
    storage statements, for a value searcher never used (issue #13, host overhead;
    ``python benchmarks/host_overhead.py`` prints the main thread's statements per trial).
    This calls the first part alone: the same checks, warnings, sampler's ``after_trial``
    and stored state. It is private to Optuna (``pyproject.toml`` asks for optuna >= 5
    only): where an Optuna no longer has it, ``Study.tell`` itself.

    Raises:
        ValueError: as ``Study.tell``: the trial is finished, or the value and state do not
            go together (a value with PRUNED, none with COMPLETE).
    """
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:  # an Optuna that moved it: its public tell, read-back and all
        study.tell(trial, value, state=state)
        return
    _tell_with_warning(study, trial, value, state)


def load_existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The stored study called ``name``, or None when the storage has none of that name."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def load_stored_study(storage: optuna.storages.BaseStorage, kind: str, spec: StudySpec,
                      device: str, M: int) -> optuna.Study | None:
    """``spec``'s stored study of ``kind`` at batch size ``M`` on ``device``, or None where
    the storage has none.

    A study's name leaves out its space, so two studies of one shape and GPU (e.g.
    ``h200-e64-n1408`` on vLLM's 432 configs and ``h200-e64-n1408-extended``) share
    names: read as ``spec``'s, the other one's results would be shown and exported as this
    one's. A stored study of another space is refused, as ``run`` refuses to resume it. One
    whose space file was edited since (same name, another fingerprint) is read: what it
    measured is still that study's.

    Raises:
        StorageError: the stored study searched another space; the message names both.
    """
    name = study_name(spec.kernel, kind, spec.shape, device, M)
    study = load_existing_study(storage, name)
    stored = None if study is None else study.user_attrs.get(record.SPACE)
    if stored is not None and stored != spec.space.name:
        raise StorageError(
            f"study {name!r} in this storage searched space {stored!r}, but study {spec.name} "
            f"searches space {spec.space.name!r}: those are another study's results (same "
            f"shape and GPU). Pass the --study that searches {stored!r}, or another --storage")
    return study


def iter_studies(storage: optuna.storages.BaseStorage, kind: str, spec: StudySpec, device: str,
                 batch_sizes: Iterable[int]) -> Iterable[tuple[int, optuna.Study | None]]:
    """The stored study of ``kind`` of each batch size (None where nothing is stored).

    Raises:
        StorageError: a stored study searched another space (:func:`load_stored_study`).
    """
    for M in batch_sizes:
        yield M, load_stored_study(storage, kind, spec, device, M)


def stored_devices(storage: optuna.storages.BaseStorage, kernel: Kernel, kind: str,
                   problem: Problem) -> list[str]:
    """The devices ``storage`` holds studies of ``kind`` of this kernel and problem for."""
    prefix = f"{kernel.name}:{kind}:{problem.label()}:"
    names = [s.study_name for s in storage.get_all_studies()]
    return sorted({n[len(prefix):].rsplit(":M=", 1)[0] for n in names if n.startswith(prefix)})


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a zombie, killed but not yet
    reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def claim(storage: optuna.storages.BaseStorage, kernel: Kernel, what: str) -> bool:
    """Claim a piece of work once among all processes on ``storage``.

    Every claim is a trial of the storage's one bookkeeping study,
    :data:`searcher.store.record.CLAIMS_STUDY`, created with its
    :data:`~searcher.store.record.CLAIM` (``what``) and its holder's host and pid in one
    write (Optuna inserts a trial and its template's attributes in one transaction, or one
    journal entry). The process then
    reads the other claims of ``what``: it holds the claim (stored COMPLETE, value 0) only
    when none is held or pending, else it withdraws its own (stored PRUNED). Since every
    claimant writes before it reads, of two claimants the later one sees the earlier:
    at most one holds the claim, on every storage; rarely both withdraw, and the work is
    claimed again on the next pass (as the budget check in :mod:`searcher.tune.search` does).

    A claim of a dead process on this host is passed over and the work taken over (its
    trial stays as it was: a finished trial cannot be changed; one left pending is
    withdrawn); one of a live process, or of another host, is not.

    Before this, each claim was a study of its own (``KERNEL-claim:WHAT``, made by study
    creation, which fails for all but one process): optuna-dashboard listed one per batch
    size beside the real studies. Those stored claims are left as they are and not read.

    Returns True when this process holds the claim.
    """
    import datetime

    import optuna
    from optuna.exceptions import DuplicatedStudyError
    from optuna.trial import FrozenTrial, TrialState

    try:
        study_id = storage.get_study_id_from_name(record.CLAIMS_STUDY)
    except KeyError:
        try:
            study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE],
                                                record.CLAIMS_STUDY)
        except DuplicatedStudyError:
            study_id = storage.get_study_id_from_name(record.CLAIMS_STUDY)
    me = record.worker_identity()
    mine = storage.create_new_trial(study_id, template_trial=FrozenTrial(
        number=0, state=TrialState.RUNNING, value=None,
        datetime_start=datetime.datetime.now(), datetime_complete=None, params={},
        distributions={}, user_attrs={record.CLAIM: what, record.KERNEL: kernel.name, **me},
        system_attrs={}, intermediate_values={}, trial_id=0))
    held = False
    for t in storage.get_all_trials(study_id, deepcopy=False,
                                    states=(TrialState.RUNNING, TrialState.COMPLETE)):
        if t._trial_id == mine or t.user_attrs.get(record.CLAIM) != what:
            continue
        pid = t.user_attrs.get(record.PID)
        if t.user_attrs.get(record.HOST) == me[record.HOST] and pid is not None \
                and pid != me[record.PID] and not process_alive(pid):
            _end_claim(storage, t._trial_id, TrialState.PRUNED)  # its holder died pending
            continue
        held = True
    _end_claim(storage, mine, TrialState.PRUNED if held else TrialState.COMPLETE)
    return not held


def _end_claim(storage: optuna.storages.BaseStorage, trial_id: int, state: Any) -> None:
    """Store a claim as held (COMPLETE) or withdrawn (PRUNED); one another process ended
    first stays as it is."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        storage.set_trial_state_values(
            trial_id, state, values=[0.0] if state == TrialState.COMPLETE else None)
    except UpdateFinishedTrialError:
        pass
