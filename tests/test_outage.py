"""searcher/store/outage.py: which errors are waited out, for how long, and what is said.
(A real server stopped mid-run is in tests/test_faults.py.)"""

from __future__ import annotations

import sqlite3
import time

import pytest
from optuna.exceptions import StorageInternalError
from sqlalchemy import exc as sa

from searcher.store import outage
from searcher.errors import StorageError, StorageUnavailable
from searcher.store.outage import RetryingRDBStorage, display_url
from searcher.store.storage import open_storage


def _lost() -> Exception:
    # What Optuna raises when the connection drops inside a session: its own error,
    # caused by SQLAlchemy's.
    try:
        raise sa.OperationalError("SELECT 1", {}, sqlite3.OperationalError("server closed"))
    except sa.OperationalError as cause:
        try:
            raise StorageInternalError("An exception is raised during the commit.") from cause
        except StorageInternalError as exc:
            return exc


@pytest.fixture
def storage(tmp_path, monkeypatch):
    monkeypatch.setattr(outage, "_FIRST_WAIT_S", 0.01)
    s = open_storage(f"sqlite:///{tmp_path / 'o.db'}")
    assert isinstance(s, RetryingRDBStorage)
    return s


def _failing(storage, monkeypatch, errors: list[Exception]):
    real = outage.RDBStorage.get_all_studies
    calls = []

    def flaky(self):
        calls.append(time.monotonic())
        if errors:
            raise errors.pop(0)
        return real(self)

    monkeypatch.setattr(outage.RDBStorage, "get_all_studies", flaky)
    return calls


def test_a_lost_connection_is_retried_until_the_storage_answers(storage, monkeypatch, capsys):
    calls = _failing(storage, monkeypatch, [_lost(), _lost(), _lost()])
    assert storage.get_all_studies() == []
    assert len(calls) == 4
    assert calls[2] - calls[1] > calls[1] - calls[0]  # backing off
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert "is not answering (server closed); retrying for up to 60 s" in err[0]
    assert "answers again" in err[1]


def test_a_storage_silent_past_the_window_raises_one_message(storage, monkeypatch, capsys):
    storage.retry_s = 0.2
    storage.label = "postgresql://u:***@db/x"
    calls = _failing(storage, monkeypatch, [_lost() for _ in range(100)])
    with pytest.raises(StorageUnavailable) as caught:
        storage.get_all_studies()
    assert isinstance(caught.value, StorageError)  # the CLI's one line and exit 2
    assert str(caught.value) == (
        "storage postgresql://u:***@db/x has not answered for 0.2 s (server closed); what "
        "was measured is stored: once it answers, rerun the same command to resume")
    n = len(calls)
    assert 2 <= n < 100
    with pytest.raises(StorageUnavailable):  # given up: the next call does not wait again
        storage.get_all_studies()
    assert len(calls) == n + 1


def test_other_errors_are_not_retried(storage, monkeypatch):
    calls = _failing(storage, monkeypatch, [sa.IntegrityError("INSERT", {}, Exception("dup"))])
    with pytest.raises(sa.IntegrityError):
        storage.get_all_studies()
    assert len(calls) == 1
    with pytest.raises(KeyError):  # Optuna's "no such study" is no outage
        storage.get_study_id_from_name("nope")


def test_urls_are_shown_without_their_password():
    assert display_url("postgresql://me:secret@host:5432/db") == "postgresql://me:***@host:5432/db"
    assert display_url("sqlite:///a.db") == "sqlite:///a.db"
