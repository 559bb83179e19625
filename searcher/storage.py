"""Where studies live: opening an Optuna storage, naming studies, and checking that a
stored study is the one a spec describes.

Every (kind, shape, device, M) gets its own Optuna study, named deterministically, e.g.
``fused_moe:search:E=64,N=1408,H=2048,top_k=6,bf16:NVIDIA_H200:M=64``. The default storage is
an embedded SQLite file (``sqlite:///searcher.db`` in the current directory); any
SQLAlchemy URL works through ``--storage``, and a path ending in ``.log`` or ``.journal``
opens Optuna's journal file storage.
"""

from __future__ import annotations

import os
import socket
import warnings
from typing import TYPE_CHECKING, Any

from searcher.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.shape import Shape
    from searcher.space import Space

__all__ = [
    "KERNEL",
    "study_name",
    "open_storage",
    "open_study",
    "load_existing_study",
    "HEARTBEAT_INTERVAL_S",
    "GRACE_PERIOD_S",
]

KERNEL = "fused_moe"

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


def study_name(kind: str, shape: Shape, device: str, M: int) -> str:
    """The storage name of the study of one batch size (``kind`` is search or grid)."""
    return f"{KERNEL}:{kind}:{shape.label()}:{device}:M={M}"


def _journal_path(url: str) -> str | None:
    for prefix in ("journal:///", "journal://"):
        if url.startswith(prefix):
            return url[len(prefix):]
    if url.endswith((".log", ".journal")) and "://" not in url:
        return url
    return None


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open (creating if needed) the storage at ``url``, with heartbeats enabled.

    Raises:
        StorageError: the URL is malformed, its driver is missing, or the server cannot be
            reached.
    """
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
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
        storage = RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            heartbeat_stale_trial_callback=retry,
        )
        if url.startswith("sqlite"):
            _fast_sqlite(storage)
        return storage
    except ImportError as exc:
        raise StorageError(f"storage {url!r}: a database driver is missing ({exc})") from None
    except Exception as exc:  # sqlalchemy's errors are many; say which URL and why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"storage {url!r} cannot be opened: {first}") from None


def _fast_sqlite(storage: Any) -> None:
    """Write-ahead logging with ``synchronous=NORMAL`` on every connection.

    Optuna commits once per attribute it stores; with SQLite's default rollback journal
    each commit waits for the disk (about 0.4 s of storage per trial was measured). WAL
    commits survive a killed process (only a power cut can lose the last ones) and let
    readers (``searcher status``) work while a run writes.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect, so every pooled connection has the pragmas


def expected_attrs(kind: str, shape: Shape, device: str, M: int, space: Space) -> dict[str, Any]:
    """What a study must record about itself; a mismatch refuses a resume."""
    return {
        "kernel": KERNEL,
        "kind": kind,
        "shape": shape.label(),
        "device": device,
        "M": M,
        "space": space.name,
        "space_fingerprint": space.fingerprint(),
    }


def open_study(
    storage: optuna.storages.BaseStorage,
    kind: str,
    shape: Shape,
    device: str,
    M: int,
    space: Space,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    storage_url: str = "",
) -> optuna.Study:
    """Create or resume the study of one batch size, refusing one made differently.

    Raises:
        StorageError: the stored study was made for another space, shape or device.
    """
    import optuna

    name = study_name(kind, shape, device, M)
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, pruner=pruner,
        direction="minimize", load_if_exists=True,
    )
    want = expected_attrs(kind, shape, device, M, space)
    have = study.user_attrs
    if not have:
        for key, value in want.items():
            study.set_user_attr(key, value)
        return study
    for key, value in want.items():
        if have.get(key) == value:
            continue
        if key.startswith("space"):
            stored = f"space {have.get('space')!r} (fingerprint {str(have.get('space_fingerprint'))[:12]})"
            given = f"space {want['space']!r} (fingerprint {want['space_fingerprint'][:12]})"
        else:
            stored, given = f"{key} {have.get(key)!r}", f"{key} {value!r}"
        raise StorageError(
            f"storage {storage_url or '(given)'}: study {name!r} was made with {stored}, but "
            f"the spec now has {given}; resuming would mix two different searches. Use "
            "another --storage, or restore what the study was made with"
        )
    return study


def load_existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The stored study called ``name``, or None when the storage has none of that name."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def worker_identity() -> dict[str, Any]:
    """Who runs a trial: lets a later run on the same host see that its process died."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
