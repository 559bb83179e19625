"""Tests for searcher.store.storage: the one place storages are opened."""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna
import pytest

from searcher.errors import StorageError
from searcher.store.storage import open_storage


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


def test_a_gzipped_storage_is_named_with_the_gunzip_to_run(tmp_path: Path) -> None:
    # The repository's example storages are kept gzipped: a user passes the .gz, or the
    # .db before unzipping it.
    import gzip

    db = tmp_path / "s.db"
    optuna.create_study(study_name="x", storage=open_storage(f"sqlite:///{db}"))
    gz = tmp_path / "s.db.gz"
    gz.write_bytes(gzip.compress(db.read_bytes()))
    db.unlink()
    with pytest.raises(StorageError, match=f"no such file {db}; {gz} is there: gunzip -k"):
        open_storage(f"sqlite:///{db}", read_only=True)
    for read_only in (True, False):  # status and the like; run and the like
        with pytest.raises(StorageError, match=f"gzipped\\? gunzip -k it and pass {db}"):
            open_storage(f"sqlite:///{gz}", read_only=read_only)


def test_a_file_that_is_no_storage_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(StorageError, match="not a searcher/Optuna storage or is damaged "
                                           r"\(file is not a database\)"):
        open_storage(f"sqlite:///{path}", read_only=True)


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("url, says", [
    ("sqlite:///:memory:", "in-memory SQLite database keeps nothing"),
    ("sqlite:///", "in-memory SQLite database keeps nothing"),  # no path: SQLite in memory
    ("sqlite://", "in-memory SQLite database keeps nothing"),
    ("url.db", "for a SQLite file write sqlite:///url.db"),
    ("/data/url.db", "for a SQLite file write sqlite:////data/url.db"),
    ("sqlite:url.db", "for a SQLite file write sqlite:///url.db"),  # the slashes left out
    ("sqlite:/data/url.db", "for a SQLite file write sqlite:////data/url.db"),
    ("sqlite:", "for a SQLite file write sqlite:///searcher.db"),
    ("sqlite://tmp/x.db", "write sqlite:///tmp/x.db (relative to this folder) or "
                          "sqlite:////tmp/x.db (absolute)"),  # two slashes: a host
    ("postgres://u@localhost/x", "write postgresql://u@localhost/x"),
    ("postgres+psycopg://u@localhost/x", "write postgresql+psycopg://u@localhost/x"),
])
def test_url_forms_that_cannot_be_meant_name_the_form_to_write(
        url: str, says: str, read_only: bool) -> None:
    with pytest.raises(StorageError, match=f"--storage {re.escape(url)}: .*{re.escape(says)}"):
        open_storage(url, read_only=read_only)


def test_journal_urls_follow_sqlalchemys_slashes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    open_storage("journal:///runs/a.journal")  # three slashes: relative
    assert (tmp_path / "runs" / "a.journal").exists()
    absolute = tmp_path / "b.journal"
    open_storage(f"journal:///{absolute}")  # four slashes: absolute
    assert absolute.exists()
    with pytest.raises(StorageError, match=(
            "folder tmp/searcher-nowhere does not exist; journal:///PATH is relative.*"
            "write journal:////tmp/searcher-nowhere/y.journal")):
        open_storage("journal:///tmp/searcher-nowhere/y.journal")


@pytest.mark.parametrize("read_only", [False, True])
def test_random_bytes_in_a_database_name_the_file(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "s.db"
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="x", storage=open_storage(url))
    for i in range(300):
        study.enqueue_trial({"p": i}, user_attrs={"pad": "x" * 1000})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle - 100_000:middle + 100_000] = os.urandom(200_000)
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=f"{path} is not a searcher/Optuna storage or is "
                                           "damaged"):
        open_storage(url, read_only=read_only)


def test_a_sqlite_file_without_optuna_tables_is_not_read(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StorageError, match="holds no Optuna tables"):
        open_storage(f"sqlite:///{path}", read_only=True)


def test_a_new_study_names_its_objective_for_optunas_tools(tmp_path: Path) -> None:
    from searcher.study.spec import load_spec
    from searcher.store.storage import open_study

    spec = load_spec(Path(__file__).resolve().parent.parent / "studies" / "h100-e64-n1408.toml")
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    args = (storage, "search", spec.shape, "NVIDIA_H100_80GB_HBM3", 64, spec.space,
            optuna.samplers.RandomSampler(), optuna.pruners.NopPruner(), {})
    assert open_study(*args).metric_names == ["median_us"]
    assert open_study(*args).metric_names == ["median_us"]  # resumed: unchanged


def _claims(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="searcher:claims", storage=open_storage(url)).trials


@pytest.mark.parametrize("scheme", ["sqlite", "journal"])
def test_claims_are_trials_of_one_bookkeeping_study_held_once(tmp_path: Path, monkeypatch,
                                                              scheme: str) -> None:
    from searcher.store import record
    from searcher.kernels.fused_moe import FUSED_MOE
    from searcher.store.storage import claim

    url = f"sqlite:///{tmp_path / 's.db'}" if scheme == "sqlite" else \
        f"journal:///{tmp_path / 's.journal'}"
    storage = open_storage(url)
    assert claim(storage, FUSED_MOE, "a:final@80")
    assert claim(storage, FUSED_MOE, "b:final@80")
    # Another live process (this test's parent stands in for it) asks for the same work.
    monkeypatch.setattr(record, "worker_identity",
                        lambda: {record.HOST: "elsewhere", record.PID: os.getppid()})
    assert not claim(storage, FUSED_MOE, "a:final@80")
    assert optuna.get_all_study_names(storage) == ["searcher:claims"]
    states = [(t.user_attrs["claim"], t.state.name) for t in _claims(url)]
    assert states == [("a:final@80", "COMPLETE"), ("b:final@80", "COMPLETE"),
                      ("a:final@80", "PRUNED")]


def test_a_claim_of_a_dead_process_of_this_host_is_taken_over(tmp_path: Path,
                                                                monkeypatch) -> None:
    import socket
    import subprocess
    import sys

    from searcher.store import record
    from searcher.kernels.fused_moe import FUSED_MOE
    from searcher.store.storage import claim

    url = f"sqlite:///{tmp_path / 's.db'}"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    me = record.worker_identity
    monkeypatch.setattr(record, "worker_identity",
                        lambda: {record.HOST: socket.gethostname(), record.PID: int(dead.stdout)})
    assert claim(open_storage(url), FUSED_MOE, "a:final@80")
    monkeypatch.setattr(record, "worker_identity", me)
    assert claim(open_storage(url), FUSED_MOE, "a:final@80")
    # Both held it, one after the other (a finished trial is never changed).
    assert [(t.user_attrs["pid"], t.state.name) for t in _claims(url)] == [
        (int(dead.stdout), "COMPLETE"), (os.getpid(), "COMPLETE")]
    assert not claim(open_storage(url), FUSED_MOE, "a:final@80")  # held by this live one


def test_two_claimants_writing_before_either_reads_never_both_hold(tmp_path: Path,
                                                                     monkeypatch) -> None:
    # The race: B's claim is written after A's but before A reads. A sees B's pending
    # claim and withdraws; B sees A's (withdrawn by then, or pending) and does not hold
    # it twice.
    from searcher.store import record
    from searcher.kernels.fused_moe import FUSED_MOE
    from searcher.store import storage as storage_module

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url)
    real_create = storage.create_new_trial
    results = []

    def create_then_let_b_claim(study_id, template_trial=None):
        trial_id = real_create(study_id, template_trial=template_trial)
        if not results:
            results.append(None)
            monkeypatch.setattr(record, "worker_identity",
                                lambda: {record.HOST: "b", record.PID: 2})
            results.append(storage_module.claim(storage, FUSED_MOE, "a:final@80"))
            monkeypatch.setattr(record, "worker_identity",
                                lambda: {record.HOST: "a", record.PID: 1})
        return trial_id

    monkeypatch.setattr(record, "worker_identity", lambda: {record.HOST: "a", record.PID: 1})
    monkeypatch.setattr(storage, "create_new_trial", create_then_let_b_claim)
    a_holds = storage_module.claim(storage, FUSED_MOE, "a:final@80")
    assert [a_holds, results[1]].count(True) <= 1


def test_threads_sharing_a_sqlite_storage_take_turns_without_deadlock(tmp_path: Path) -> None:
    """Issue #13: the threads of one run (the main one telling, the asker suggesting,
    the heartbeat) take turns through one lock per storage. Optuna's cached storage calls
    private backend methods (``_set_trial_param``) that open a transaction and then make
    public calls: while only the public ones took the lock, a suggest and a tell on two
    threads deadlocked (each held what the other waited for)."""
    import threading

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert storage.serial is not None
    study = optuna.create_study(storage=storage, study_name="turns")
    errors: list[BaseException] = []

    def asker() -> None:
        try:
            for i in range(60):
                trial = study.ask()
                trial.suggest_int("x", 0, 100)
                trial.suggest_float("y", 0.0, 1.0)
                study.tell(trial, float(i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def teller(trial: optuna.trial.Trial) -> None:
        try:
            for i in range(200):
                trial.set_user_attr(f"k{i % 7}", i)
                storage.record_heartbeat(trial._trial_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    held = study.ask()
    threads = [threading.Thread(target=asker, daemon=True),
               threading.Thread(target=teller, args=(held,), daemon=True)]
    for t in threads:
        t.start()
    # About 2 s on a CPU; a deadlock lasts until SQLite's 60 s lock timeout, then retries.
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "the threads deadlocked"
    assert not errors, errors
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 60


def _storage_url(tmp_path: Path, kind: str) -> str:
    """A fresh storage of each kind searcher opens: SQL, journal file, in memory."""
    return {"sqlite": f"sqlite:///{tmp_path / 's.db'}",
            "journal": f"journal:///{tmp_path / 's.journal'}", "memory": "memory://"}[kind]


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_store_on_trial_stores_what_optunas_own_calls_store(tmp_path, kind):
    """Issue #13: a trial's attributes, its ``valid`` constraint and a reported value go in
    one transaction on a SQL storage (one commit, where Optuna commits each), and read back
    as ``set_user_attr``, ``set_constraint`` and ``report`` store them, on every storage;
    a finished trial refuses them."""
    from optuna.exceptions import UpdateFinishedTrialError
    from sqlalchemy import event

    from searcher.store.storage import store_on_trial

    url = _storage_url(tmp_path, kind)
    storage = open_storage(url)
    mine = optuna.create_study(storage=storage, study_name="mine")
    theirs = optuna.create_study(storage=storage, study_name="theirs")
    trial = mine.ask()
    commits = []
    if kind == "sqlite":
        event.listen(storage.engine, "commit", lambda _conn: commits.append(1))
    store_on_trial(mine, trial, {"config": {"BLOCK_SIZE_M": 16}, "cost_s": 0.5}, valid=0.0,
                   report=(0, 38.5))
    assert len(commits) == (1 if kind == "sqlite" else 0)
    other = theirs.ask()
    other.set_user_attr("config", {"BLOCK_SIZE_M": 16})
    other.set_user_attr("cost_s", 0.5)
    other.set_constraint("valid", 0.0)
    other.report(38.5, step=0)
    for t in (trial, other):
        stored = t.study._storage.get_trial(t._trial_id)
        assert stored.user_attrs == {"config": {"BLOCK_SIZE_M": 16}, "cost_s": 0.5}
        assert stored.system_attrs == {"constraints:valid": 0.0}
        assert stored.intermediate_values == {0: 38.5}
        assert t.user_attrs == stored.user_attrs  # the trial object sees them too
    assert not trial.should_prune()  # reads the reported value from the trial object
    mine.tell(trial, 38.5)
    with pytest.raises(UpdateFinishedTrialError):
        store_on_trial(mine, trial, {"status": "ok"})


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_tell_finishes_a_trial_as_study_tell_does_without_reading_it_back(tmp_path, kind):
    """Issue #13: searcher's tell stores what ``Study.tell`` stores (a value, or PRUNED
    with the last reported value, the sampler told) and refuses what it refuses, in fewer
    SQL statements: Study.tell reads the finished trial back to return it."""
    from optuna.trial import TrialState
    from sqlalchemy import event

    from searcher.store.storage import tell

    url = _storage_url(tmp_path, kind)
    storage = open_storage(url)
    told: list[tuple[int, TrialState]] = []

    class Sampler(optuna.samplers.RandomSampler):
        def after_trial(self, study, trial, state, values):
            told.append((trial.number, state))

    mine = optuna.create_study(storage=storage, study_name="mine", sampler=Sampler())
    theirs = optuna.create_study(storage=storage, study_name="theirs")
    statements = {"mine": 0, "theirs": 0}
    counting = ["mine"]
    if kind == "sqlite":
        def count(*_args) -> None:
            statements[counting[0]] += 1
        event.listen(storage.engine, "before_cursor_execute", count)
    for study, finish in ((mine, tell), (theirs, optuna.Study.tell)):
        counting[0] = study.study_name
        done, pruned = study.ask(), study.ask()
        pruned.report(41.0, step=0)
        finish(study, done, 38.5)
        finish(study, pruned, state=TrialState.PRUNED)
        stored = {t.number: (t.state, t.value) for t in study.get_trials()}
        assert stored == {0: (TrialState.COMPLETE, 38.5), 1: (TrialState.PRUNED, 41.0)}
        with pytest.raises(ValueError, match="Cannot tell a COMPLETE trial"):
            finish(study, done, 1.0)
        with pytest.raises(ValueError, match="Values are required"):
            finish(study, study.ask(), state=TrialState.COMPLETE)
    assert told == [(0, TrialState.COMPLETE), (1, TrialState.PRUNED)]
    if kind == "sqlite":
        assert 0 < statements["mine"] < statements["theirs"], statements


def test_a_folder_or_a_journal_url_without_slashes_is_read_as_meant(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """A fresh user's findings: ``status --storage sqlite:///a-folder`` said "no such
    file"; ``journal:x.journal`` (the slashes left out) made a file named
    ``journal:x.journal``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(StorageError, match="runs is a folder, not a storage file"):
        open_storage("sqlite:///runs", read_only=True)
    storage = open_storage("journal:x.journal")
    optuna.create_study(storage=storage, study_name="s")
    assert (tmp_path / "x.journal").is_file()
    assert not (tmp_path / "journal:x.journal").exists()


def test_a_stale_trials_retry_carries_its_config_not_its_dead_process(tmp_path: Path) -> None:
    """The retry of a trial left by a dead process is queued with its params and config but
    without that process's pid, host, status or measurements: carrying the dead pid, a
    retry asked by one worker was failed again at once by another's recovery (a CI run of
    tests/test_workers.py saw it), its new retry naming the first failed trial."""
    from searcher.store import record
    from searcher.store.storage import retry_stale_trial

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    trial = study.ask()
    trial.suggest_int("x", 0, 10)
    attrs = {record.CONFIG: {"BLOCK_SIZE_M": 16}, record.SOURCE: "sampler",
             record.HOST: "h", record.PID: 12345, record.STATUS: "interrupted",
             record.MEASURING: True, record.SHORT: {"median_us": 1.0}}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    failed = study.trials[0]
    retry_stale_trial()(study, failed)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].user_attrs == {record.CONFIG: {"BLOCK_SIZE_M": 16},
                                     record.SOURCE: "sampler"}
    assert waiting[0].system_attrs["failed_trial"] == failed.number
    assert waiting[0].params == failed.params == {"x": failed.params["x"]}
    assert failed.user_attrs[record.PID] == 12345  # the failed trial keeps its record
