"""Faults a long run meets, with real processes: a run stopped (SIGSTOP) long enough for
another process to take its trial over, and a PostgreSQL server that stops answering
mid-run (a throwaway server of the test's own, stopped and started with ``pg_ctl``)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from searcher.store.record import COUNTED_STATUSES
from searcher.study.spec import load_spec
from searcher.store.storage import open_storage, study_name
from helpers import wait_for, write_study

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "spaces" / "vllm-432.toml"


def _study(tmp_path: Path, url: str, trials: int, batch_sizes=(64,)) -> Path:
    return write_study(tmp_path / "f.toml", url, trials, batch_sizes=batch_sizes)


def _start(path: Path, cwd: Path, env: dict, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "searcher", "run", "--study", str(path),
                             "--synthetic", "--no-live"], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=stderr,
                            env=dict(os.environ, **env))


def _trials(url: str, path: Path, M: int = 64) -> list:
    spec = load_spec(path)
    name = study_name(spec.kernel, "search", spec.shape, spec.gpu, M)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(
            deepcopy=False)
    except KeyError:
        return []


def _stop_between_transactions(process: subprocess.Popen, db: Path) -> None:
    """SIGSTOP ``process`` at a moment it holds no SQLite write lock on ``db``.

    Every transaction of a run begins with ``BEGIN IMMEDIATE`` (see
    ``searcher.store.storage``), so a process stopped inside one holds the file's write
    lock until it is continued: no other process can take its trial over, and the second
    run meets a storage that stops answering ("database is locked"), which
    searcher/store/outage.py waits out and then stops on (the outage tests: below, and
    tests/test_outage.py). This test is about a process stopped between two storage calls
    or while measuring.
    """
    for _ in range(200):
        process.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(db, timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            process.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError(f"{db} stayed locked each time the run was stopped")


def _measured(trials) -> list:
    return [t for t in trials if t.user_attrs.get("status") in COUNTED_STATUSES]


# -- a stopped process ----------------------------------------------------------------------
@pytest.mark.slow
def test_a_stopped_run_whose_trial_was_taken_over_drops_it_and_goes_on(tmp_path):
    """Issue 12, case 3: the first run is stopped past the grace period, a second run
    fails its trials as stale, retries them and finishes the budget; the first, continued,
    drops its measurement with one line and ends cleanly."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    path = _study(tmp_path, url, trials=8)
    env = {"SEARCHER_GRACE_S": "3", "SEARCHER_HEARTBEAT_S": "1",
           "SEARCHER_SYNTHETIC_SLEEP": "0.6", "SEARCHER_SYNTHETIC_NOISE": "0"}
    first = _start(path, tmp_path, env)
    try:
        wait_for(lambda: [t for t in _trials(url, path)
                           if t.state == optuna.trial.TrialState.RUNNING
                           and t.user_attrs.get("measuring")], poll_s=0.1)
        _stop_between_transactions(first, tmp_path / "f.db")
        time.sleep(5)  # the stopped run's heartbeats go stale
        second = subprocess.run([sys.executable, "-m", "searcher", "run", "--study", str(path),
                                 "--synthetic", "--no-live"], cwd=tmp_path, text=True,
                                capture_output=True, env=dict(os.environ, **env), timeout=300)
        assert second.returncode == 0, second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "Traceback" not in err
    # (Stopped while measuring, the line ends "its measurement is dropped"; stopped between
    # two storage calls, "it was not measured here".)
    assert "was taken over by another process (its heartbeat went stale)" in err
    trials = _trials(url, path)
    assert len(_measured(trials)) == 8
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


# -- a storage outage -----------------------------------------------------------------------
def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return os.path.dirname(found[-1])
    ctl = shutil.which("pg_ctl")
    return os.path.dirname(ctl) if ctl and shutil.which("initdb") else None


class _Server:
    """A PostgreSQL server of one test: its own data folder and port (run as the postgres
    user when the tests run as root, as initdb refuses root)."""

    def __init__(self, bin_dir: str) -> None:
        self.bin = bin_dir
        self.data = tempfile.mkdtemp(prefix="searcher-faults-pg.")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
        self._as_server(f"{self.bin}/initdb -D {self.data} -A trust -U postgres")
        self.start()
        self._as_server(f"{self.bin}/createdb -h 127.0.0.1 -p {self.port} -U postgres faults")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/faults"

    def _as_server(self, command: str) -> None:
        argv = ["su", "postgres", "-s", "/bin/sh", "-c", command] if os.geteuid() == 0 \
            else ["/bin/sh", "-c", command]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._as_server(f"{self.bin}/pg_ctl -D {self.data} -l {self.data}/server.log -w "
                        f"-o '-h 127.0.0.1 -p {self.port} -k {self.data}' start")

    def stop(self) -> None:
        self._as_server(f"{self.bin}/pg_ctl -D {self.data} -m fast -w stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def server():
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install PostgreSQL (pg_ctl and initdb)")
        pytest.skip("no PostgreSQL binaries (pg_ctl, initdb) on this machine")
    pytest.importorskip("psycopg")
    s = _Server(bin_dir)
    yield s
    s.remove()


def _outage(server: _Server, tmp_path: Path, down_s: float, retry_s: str):
    """Start a run of 12 trials and stop the server once 3 are measured; start it again
    once the run has found it down (or has ended) and at least ``down_s`` later. Returns
    (study file, process, its stderr)."""
    path = _study(tmp_path, server.url, trials=12)
    env = {"SEARCHER_STORAGE_RETRY_S": retry_s, "SEARCHER_SYNTHETIC_SLEEP": "0.3",
           "SEARCHER_SYNTHETIC_NOISE": "0"}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        run = _start(path, tmp_path, env, stderr=stderr)
        wait_for(lambda: len(_measured(_trials(server.url, path))) >= 3
                  or run.poll() is not None, poll_s=0.1)
        assert run.poll() is None, log.read_text()
        server.stop()
        down = time.time()
        wait_for(lambda: "is not answering" in log.read_text() or run.poll() is not None,
                 poll_s=0.1)
        time.sleep(max(0.0, down_s - (time.time() - down)))
        server.start()
        run.communicate(timeout=300)
    return path, run, log.read_text()


@pytest.mark.slow
def test_a_storage_back_within_the_retry_window_loses_nothing(server, tmp_path):
    path, run, err = _outage(server, tmp_path, down_s=4, retry_s="60")
    assert run.returncode == 0, err
    assert "Traceback" not in err
    assert "is not answering" in err
    trials = _trials(server.url, path)
    assert len(_measured(trials)) == 12
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.slow
def test_a_storage_down_past_the_retry_window_stops_with_one_line_and_resumes(server,
                                                                              tmp_path):
    path, run, err = _outage(server, tmp_path, down_s=6, retry_s="2")
    assert run.returncode == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("searcher run: storage postgresql://postgres@127.0.0.1:"), err
    assert "rerun the same command to resume" in last
    measured = len(_measured(_trials(server.url, path)))
    assert 3 <= measured < 12
    rerun = subprocess.run([sys.executable, "-m", "searcher", "run", "--study", str(path),
                            "--synthetic", "--no-live"], cwd=tmp_path, text=True,
                           capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    trials = _trials(server.url, path)
    assert len(_measured(trials)) == 12
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
