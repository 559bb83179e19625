"""Several worker processes on one storage (`--workers`), on the CPU with the synthetic
benchmarker: budgets, uniqueness, a killed worker, Ctrl-C, and the storages that allow
several writers (SQLite in WAL mode, Optuna's journal file, and PostgreSQL when
SEARCHER_TEST_POSTGRES_URL names a server, as .ci/run does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import optuna
import pytest

from helpers import wait_for, write_study
from searcher.kernels.fused_moe.default import vllm_default_config
from searcher.errors import ConfigError, NoGPUError
from searcher.store.record import COUNTED_STATUSES, summarize_study
from searcher.study.spec import load_spec
from searcher.store.storage import open_storage, study_name
from searcher.measure.synthetic import SyntheticBenchmarker
from searcher.tune.workers import child_argv, parse_worker, resolve_workers
from searcher.kernels.fused_moe import FUSED_MOE

ROOT = Path(__file__).resolve().parent.parent
H100 = "NVIDIA_H100_80GB_HBM3"
SMALL = ROOT / "tests" / "data" / "spaces" / "small.toml"
POSTGRES = os.environ.get("SEARCHER_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def url(request, tmp_path):
    """A storage several processes may write at once."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'w.db'}"
    if request.param == "journal":
        return f"journal:///{tmp_path / 'w.journal'}"
    if not POSTGRES:
        if os.environ.get("CI"):
            pytest.fail("CI must start PostgreSQL and set SEARCHER_TEST_POSTGRES_URL")
        pytest.skip("no PostgreSQL server (set SEARCHER_TEST_POSTGRES_URL)")
    # One database, shared by tests: each test gets studies of its own GPU name.
    return POSTGRES


def _tiny_space(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent("""
        schema = 1
        [params]
        BLOCK_SIZE_M = [16, 32, 64]
        BLOCK_SIZE_N = [64, 128]
        BLOCK_SIZE_K = [64, 128]
        GROUP_SIZE_M = [1]
        num_warps = [4, 8]
        num_stages = [2, 3]
    """))
    return path


def _study(tmp_path: Path, url: str, trials: int, space: Path = SMALL,
           batch_sizes=(16, 64), pruner: str = "none") -> Path:
    # A GPU name unique per test, so a shared server is fine.
    return write_study(tmp_path / "w.toml", url, trials, space=space, batch_sizes=batch_sizes,
                       pruner=pruner)


def _searcher(args: list[str], cwd: Path, env: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "searcher", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def _trials(url: str, kind: str, spec, M: int):
    study = optuna.load_study(study_name=study_name(FUSED_MOE, kind, spec.shape, spec.gpu, M),
                              storage=open_storage(url))
    return study, study.get_trials(deepcopy=False)


def _measured(trials) -> list:
    return [t for t in trials if t.user_attrs.get("status") in COUNTED_STATUSES]


def _key(t) -> str:
    return json.dumps(t.user_attrs["config"], sort_keys=True)


# -- unit ---------------------------------------------------------------------------------
def test_workers_option_is_checked(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert resolve_workers("auto", uses_gpu=True) == (2, ["2", "3"])
    assert resolve_workers("2", uses_gpu=True) == (2, ["2", "3"])
    assert resolve_workers("1", uses_gpu=True) == (1, None)  # no workers: no GPU check here
    with pytest.raises(ConfigError, match=r"--workers 3: only 2 GPU\(s\) visible \(2,3\)"):
        resolve_workers("3", uses_gpu=True)
    for bad in ("0", "-2", "many", "1.5"):
        with pytest.raises(ConfigError, match=f"--workers {bad}: must be 'auto' or a positive"):
            resolve_workers(bad, uses_gpu=False)
    assert resolve_workers("4", uses_gpu=False) == (4, None)
    assert resolve_workers("auto", uses_gpu=False)[0] == (os.cpu_count() or 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(NoGPUError, match="--replay"):
        resolve_workers("auto", uses_gpu=True)
    assert parse_worker("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/2/3"):
        with pytest.raises(ConfigError, match="--worker"):
            parse_worker(bad)


def test_worker_arguments_drop_the_parent_only_options():
    argv = ["grid", "--study", "s", "--workers", "4", "--dataset=d.csv", "--time-limit", "9"]
    assert child_argv(argv, ["--dataset"], 2, 4) == [
        "grid", "--study", "s", "--time-limit", "9", "--worker", "2/4"]
    argv = ["grid", "--dataset", "d.csv", "--study", "s", "--workers=auto"]
    assert child_argv(argv, ["--dataset"], 0, 2, ["--no-live"]) == [
        "grid", "--study", "s", "--no-live", "--worker", "0/2"]


# -- processes ----------------------------------------------------------------------------
@pytest.mark.slow
def test_four_workers_share_the_budget_exactly_and_find_the_single_process_best(url, tmp_path):
    """The whole small space as budget: four workers and one process measure the same
    candidates, each exactly once, and agree on the best."""
    env = {"SEARCHER_SYNTHETIC_NOISE": "0"}
    path = _study(tmp_path, url, trials=1000, space=_tiny_space(tmp_path))
    spec = load_spec(path)
    four = _searcher(["run", "--study", str(path), "--synthetic", "--workers", "4",
                      "--json"], tmp_path, env)
    assert four.returncode == 0, four.stderr
    pids = set()
    for M in spec.batch_sizes:
        study, trials = _trials(url, "search", spec, M)
        valid = spec.space.enumerate(spec.kernel.context(spec.shape, M, spec.gpu_facts))
        measured = _measured(trials)
        keys = [_key(t) for t in measured]
        assert len(keys) == len(set(keys)) == len(valid), f"M={M}: not each config once"
        assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING], \
            "a trial left running"
        pids |= {t.user_attrs["pid"] for t in measured}
        summary = summarize_study(FUSED_MOE, study, M)
        assert summary.finalized and summary.running == 0
        # vLLM's default config competes in the final round too.
        true_time = SyntheticBenchmarker(FUSED_MOE, spec.shape).true_time
        best = min([*valid, vllm_default_config(M, 64)], key=lambda c: true_time(M, c))
        assert summary.winner == best, f"M={M}"
    assert len(pids) >= 2, "the work was not shared"

    single_url = f"sqlite:///{tmp_path / 'one.db'}"
    one = _searcher(["run", "--study", str(path), "--synthetic", "--storage", single_url],
                    tmp_path, env)
    assert one.returncode == 0, one.stderr
    for M in spec.batch_sizes:
        a, b = _trials(url, "search", spec, M)[0], _trials(single_url, "search", spec, M)[0]
        assert summarize_study(FUSED_MOE, a, M).winner == summarize_study(FUSED_MOE, b, M).winner


@pytest.mark.slow
def test_four_workers_stop_at_the_budget_of_the_study_not_of_each_worker(url, tmp_path):
    path = _study(tmp_path, url, trials=17, space=ROOT / "spaces" / "vllm-432.toml",
                  batch_sizes=(16, 64, 256), pruner="ratio")
    spec = load_spec(path)
    run = _searcher(["run", "--study", str(path), "--synthetic", "--workers", "4"], tmp_path)
    assert run.returncode == 0, run.stderr
    for M in spec.batch_sizes:
        study, trials = _trials(url, "search", spec, M)
        measured = _measured(trials)
        assert len(measured) == 17, f"M={M}: {len(measured)} measured for a budget of 17"
        assert len({_key(t) for t in measured}) == 17
        assert summarize_study(FUSED_MOE, study, M).finalized
        storage = open_storage(url)
        assert not [s for s in optuna.get_all_study_names(storage) if "claim:" in s]
        claims = optuna.load_study(study_name="searcher:claims", storage=storage).trials
        held = [t for t in claims if t.state == optuna.trial.TrialState.COMPLETE
                and t.user_attrs["claim"].startswith(f"{study.study_name}:final@")]
        assert len(held) == 1, "the finalists were re-measured more than once"


@pytest.mark.slow
def test_grid_workers_measure_each_config_once(url, tmp_path):
    path = _study(tmp_path, url, trials=10, space=_tiny_space(tmp_path))
    spec = load_spec(path)
    env = {"SEARCHER_SYNTHETIC_NOISE": "0"}
    four = _searcher(["grid", "--study", str(path), "--synthetic", "--workers", "4"],
                     tmp_path, env)
    assert four.returncode == 0, four.stderr
    for M in spec.batch_sizes:
        _, trials = _trials(url, "grid", spec, M)
        valid = spec.space.enumerate(spec.kernel.context(spec.shape, M, spec.gpu_facts))
        keys = [_key(t) for t in trials]
        assert len(keys) == len(set(keys)) == len(valid)
        assert len({t.user_attrs["order"] % 4 for t in trials}) == 4
        assert f"M={M}: {len(valid)}/{len(valid)} measured" in four.stdout


def _running(url: str, spec) -> list:
    out = []
    for M in spec.batch_sizes:
        try:
            out += [t for t in _trials(url, "search", spec, M)[1]
                    if t.state == optuna.trial.TrialState.RUNNING and "pid" in t.user_attrs]
        except KeyError:
            pass
    return out


def _start_four_workers(tmp_path: Path, name: str):
    """A study of 4 batch sizes x 10 trials whose synthetic trials take real time, run by
    `searcher run --workers 4` in the background: (url, study file, spec, parent process)."""
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    path = _study(tmp_path, url, trials=10, space=ROOT / "spaces" / "vllm-432.toml",
                  batch_sizes=(16, 64, 256, 1024))
    env = dict(os.environ, SEARCHER_SYNTHETIC_SLEEP="0.2")
    parent = subprocess.Popen([sys.executable, "-m", "searcher", "run", "--study", str(path),
                               "--synthetic", "--workers", "4"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return url, path, load_spec(path), parent


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_the_others_running_and_nothing_lost(tmp_path):
    url, path, spec, parent = _start_four_workers(tmp_path, "k")
    victim = wait_for(lambda: _running(url, spec))[0]
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    out, err = parent.communicate(timeout=600)
    assert parent.returncode == 137, err  # the parent reports the killed worker
    assert "killed by signal 9" in err
    # The other workers took over the dead one's batch sizes and its running trial.
    for M in spec.batch_sizes:
        study, trials = _trials(url, "search", spec, M)
        assert len(_measured(trials)) == 10, f"M={M}"
        assert summarize_study(FUSED_MOE, study, M).finalized, f"M={M}"
    # What the dead worker had asked (its trial in flight, the rest of its batch) was
    # failed as interrupted and queued again. (The trial seen running may have finished
    # just before the kill landed: it is then measured, and the batch behind it is not.)
    pid = victim.user_attrs["pid"]
    trials = [t for M in spec.batch_sizes for t in _trials(url, "search", spec, M)[1]]
    dead = [t for t in trials if t.user_attrs.get("pid") == pid
            and t.state != optuna.trial.TrialState.COMPLETE
            and t.user_attrs.get("status") not in ("pruned", "duplicate", "invalid")]
    assert dead, "the killed worker left nothing behind to recover"
    for t in dead:
        assert t.state == optuna.trial.TrialState.FAIL
        assert t.user_attrs["status"] == "interrupted", t.user_attrs.get("status")
        # (A retry still queued when the budget ran out has no params yet, only fixed ones.)
        assert any(r.system_attrs.get("failed_trial") == t.number
                   and (r.params or r.system_attrs.get("fixed_params")) == t.params
                   for r in _trials(url, "search", spec, _batch_of(url, spec, t))[1]), \
            f"trial {t.number} not retried"
    before = {t._trial_id: (t.state, t.value) for M in spec.batch_sizes
              for t in _trials(url, "search", spec, M)[1]}
    rerun = _searcher(["run", "--study", str(path), "--synthetic"], tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    after = {t._trial_id: (t.state, t.value) for M in spec.batch_sizes
             for t in _trials(url, "search", spec, M)[1]}
    assert all(after[k] == v for k, v in before.items()), "a stored trial changed"


def _batch_of(url: str, spec, trial) -> int:
    for M in spec.batch_sizes:
        if any(t._trial_id == trial._trial_id for t in _trials(url, "search", spec, M)[1]):
            return M
    raise AssertionError("trial not found")


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_cleanly_and_the_rerun_finishes(tmp_path):
    url, path, spec, parent = _start_four_workers(tmp_path, "c")
    wait_for(lambda: len(_running(url, spec)) >= 2)
    parent.send_signal(signal.SIGINT)
    out, err = parent.communicate(timeout=120)
    assert parent.returncode == 130, err
    assert "interrupted" in err and "rerun the same command to resume" in err
    counted = {}
    for M in spec.batch_sizes:
        try:
            study, trials = _trials(url, "search", spec, M)
        except KeyError:
            continue
        assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING], \
            f"M={M}: Ctrl-C left a trial running"
        counted[M] = Counter(t.user_attrs.get("status") for t in trials)
    assert sum(c["ok"] + c["pruned"] for c in counted.values()) < 40, "it did not stop"
    rerun = _searcher(["run", "--study", str(path), "--synthetic", "--workers", "2"], tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    for M in spec.batch_sizes:
        study, trials = _trials(url, "search", spec, M)
        measured = _measured(trials)
        assert len(measured) == 10 and len({_key(t) for t in measured}) == 10, f"M={M}"
