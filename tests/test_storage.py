"""Tests for searcher.storage: the one place storages are opened."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from searcher.errors import StorageError
from searcher.storage import open_storage


def test_reading_a_missing_storage_refuses_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with pytest.raises(StorageError, match=f"no such file {path}"):
        open_storage(f"sqlite:///{path}", read_only=True)
    assert not path.exists()


def test_a_read_only_storage_reads_and_never_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="x", storage=open_storage(url)).set_user_attr("a", 1)
    reader = open_storage(url, read_only=True)
    study = optuna.load_study(study_name="x", storage=reader)
    assert study.user_attrs == {"a": 1}
    with pytest.raises(optuna.exceptions.StorageInternalError):
        study.set_user_attr("a", 2)  # SQLite's query_only refuses the commit
    assert optuna.load_study(study_name="x", storage=open_storage(url)).user_attrs == {"a": 1}


def test_a_file_that_is_no_storage_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(StorageError, match="cannot be read as a searcher storage"):
        open_storage(f"sqlite:///{path}", read_only=True)
