"""Measurements in a child process (searcher.measure.isolation): a config that segfaults or hangs
its process is stored as a failed trial with its reason, and the run goes on."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from helpers import write_study
from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.default import vllm_default_config
from searcher.errors import BenchmarkerError, ConfigError, SearcherError
from searcher.measure.isolation import IsolatedBenchmarker, describe_exit
from searcher.measure.measurement import Measurement, Status
from searcher.tune.run import make_benchmarker
from searcher.store.record import COUNTED_STATUSES, summarize_study
from searcher.kernels.fused_moe.problem import Shape
from searcher.study.spec import load_spec
from searcher.store.storage import open_storage, study_name
from searcher.measure.synthetic import SyntheticBenchmarker
from searcher.kernels.fused_moe import FUSED_MOE

ROOT = Path(__file__).resolve().parent.parent
H100 = "NVIDIA_H100_80GB_HBM3"
SHAPE = Shape(E=64, N=1408, hidden=2048, top_k=6, dtype="bf16")
DEFAULT_16 = vllm_default_config(16, 64)
GOOD = KernelConfig(16, 128, 128, 1, 4, 3)
OTHER = KernelConfig(32, 64, 64, 1, 4, 3)


def _synthetic(**kw) -> functools.partial:
    return functools.partial(SyntheticBenchmarker, FUSED_MOE, SHAPE, device=H100, noise=0.0, **kw)


@pytest.fixture
def isolated(request):
    made = []

    def make(**kw) -> IsolatedBenchmarker:
        factory = kw.pop("factory", None) or _synthetic(
            crash_on=kw.pop("crash_on", ()), hang_on=kw.pop("hang_on", ()))
        bencher = IsolatedBenchmarker(factory, **kw)
        made.append(bencher)
        return bencher

    yield make
    for bencher in made:
        bencher.close()


def _true_us(M: int, config: KernelConfig) -> float:
    return SyntheticBenchmarker(FUSED_MOE, SHAPE, device=H100).true_time(M, config)


# -- the benchmarker ----------------------------------------------------------------------
def test_a_segfaulting_config_is_a_runtime_error_and_the_next_runs_in_a_fresh_child(isolated):
    bencher = isolated(crash_on=[DEFAULT_16.short()])
    first = bencher.measure(16, GOOD, "short")
    assert first.ok and first.median_us == pytest.approx(_true_us(16, GOOD))
    before = bencher.pid

    m = bencher.measure(16, DEFAULT_16, "short")
    assert m.status is Status.RUNTIME_ERROR
    assert f"died with signal SIGSEGV ({int(signal.SIGSEGV)})" in m.reason
    assert DEFAULT_16.short() in m.reason and "M=16" in m.reason
    assert m.fidelity == "short" and m.device["vllm_name"] == H100
    assert bencher.pid is None  # the dead child is gone; none is started until needed

    after = bencher.measure(16, OTHER, "full")
    assert after.ok and after.median_us == pytest.approx(_true_us(16, OTHER))
    assert bencher.pid not in (None, before)
    assert bencher.started == 2


def test_a_round_is_one_request_and_one_that_kills_the_child_is_measured_one_by_one(
        isolated, caplog):
    bencher = isolated()
    measured = bencher.measure_round(16, [GOOD, OTHER, DEFAULT_16], "full")
    assert [m.median_us for m in measured] == pytest.approx(
        [_true_us(16, c) for c in (GOOD, OTHER, DEFAULT_16)])
    assert bencher.started == 1
    crashing = isolated(crash_on=[DEFAULT_16.short()])
    measured = crashing.measure_round(16, [GOOD, DEFAULT_16, OTHER], "full")
    assert [m.ok for m in measured] == [True, False, True]
    assert "SIGSEGV" in measured[1].reason and DEFAULT_16.short() in measured[1].reason
    assert "during a round of 3 configs at M=16; they are measured one by one" in caplog.text


def test_a_hanging_config_times_out_and_the_next_runs_in_a_fresh_child(isolated):
    bencher = isolated(hang_on=[DEFAULT_16.short()], timeout_s=1.5)
    assert bencher.measure(16, GOOD, "short").ok
    before = bencher.pid
    start = time.monotonic()
    m = bencher.measure(16, DEFAULT_16, "full")
    took = time.monotonic() - start
    assert m.status is Status.TIMEOUT
    assert 1.5 <= took < 1.5 + 5
    assert "trial timeout of 1.5 s" in m.reason and DEFAULT_16.short() in m.reason
    assert "M=16" in m.reason and m.cost_s >= 1.5
    assert _gone(before), "the hung child was not killed"

    assert bencher.measure(16, OTHER, "short").ok
    assert bencher.pid != before


def test_the_child_is_recycled_after_n_measurements_and_results_stay_right(isolated):
    bencher = isolated(recycle_after=3)
    pids, times = [], []
    configs = [GOOD, OTHER, DEFAULT_16] * 3
    for config in configs:
        m = bencher.measure(64, config, "full")
        assert m.ok
        pids.append(bencher.pid)
        times.append(m.median_us)
    assert len(set(pids[0:3])) == len(set(pids[3:6])) == len(set(pids[6:9])) == 1
    assert len({pids[0], pids[3], pids[6]}) == 3
    assert times == pytest.approx([_true_us(64, c) for c in configs])
    for old in (pids[0], pids[3]):
        assert _gone(old), "a recycled child still runs"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_the_child_is_recycled_once_its_memory_passes_the_limit(isolated):
    """Memory, not a count, replaces the child by default (issue #13: a replacement after
    1,000 measurements cost the H200 study 7 s at M=1024); a child over the limit is
    replaced before its next measurement, one under it kept."""
    from searcher.measure.isolation import resident_gib

    assert resident_gib(os.getpid()) > 0.01  # this Python process
    low = isolated(recycle_rss_gib=1e-6)  # any process is over it
    pids = []
    for config in (GOOD, OTHER, GOOD):
        assert low.measure(64, config, "short").ok
        pids.append(low.pid)
    assert len(set(pids)) == 3
    high = isolated()  # the defaults: 16 GiB, 20,000 measurements
    kept = []
    for config in (GOOD, OTHER, GOOD):
        assert high.measure(64, config, "short").ok
        kept.append(high.pid)
    assert len(set(kept)) == 1


def test_device_info_is_fetched_once_and_cached(isolated):
    bencher = isolated(crash_on=[GOOD.short()])
    assert bencher.pid is None
    info = bencher.device_info()
    assert info == SyntheticBenchmarker(FUSED_MOE, SHAPE, device=H100).device_info()
    assert bencher.measure(16, GOOD, "short").status is Status.RUNTIME_ERROR
    assert bencher.device_info() == info
    assert bencher.pid is None and bencher.started == 1  # no child started to answer


def test_a_runtime_error_returned_by_the_benchmarker_replaces_the_child(isolated):
    # A sticky CUDA error (illegal address) makes every later launch in that process
    # fail: the child that reported one is not used again.
    bencher = isolated(factory=functools.partial(_Faulty, "runtime"))
    m = bencher.measure(16, GOOD, "short")
    assert m.status is Status.RUNTIME_ERROR and m.reason == "illegal address"
    assert bencher.pid is None
    assert bencher.measure(16, GOOD, "short").status is Status.RUNTIME_ERROR
    assert bencher.started == 2


def test_precompile_failures_and_timeouts_are_logged_and_the_run_goes_on(isolated, caplog):
    caplog.set_level(logging.WARNING, logger="searcher.measure.isolation")
    raising = isolated(factory=functools.partial(_Faulty, "precompile-raises"))
    raising.precompile(16, [GOOD])
    assert "precompiling 1 configs at M=16 failed" in caplog.text and "no compiler" in caplog.text
    assert raising.measure(16, GOOD, "short").ok and raising.started == 1

    hanging = isolated(factory=functools.partial(_Faulty, "precompile-hangs"), timeout_s=1.0)
    hanging.precompile(16, [GOOD, OTHER])
    assert "gave no answer within 1 s" in caplog.text
    assert hanging.measure(16, GOOD, "short").ok and hanging.started == 2


def test_errors_of_the_benchmarker_reach_the_parent(isolated, tmp_path):
    # A searcher error raised while building the benchmarker is raised as itself...
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    with pytest.raises(SearcherError, match="missing.csv: cannot read the dataset"):
        make_benchmarker(spec, replay=str(tmp_path / "missing.csv"))
    # ...anything else, raised by measure() (a bug: failures are returned), as a
    # BenchmarkerError with the child's traceback.
    bencher = isolated(factory=functools.partial(_Faulty, "measure-raises"))
    with pytest.raises(BenchmarkerError, match="ZeroDivisionError") as info:
        bencher.measure(16, GOOD, "short")
    assert "return 1 / 0" in str(info.value)  # the child's traceback


def test_measurements_pickle():
    ok = SyntheticBenchmarker(FUSED_MOE, SHAPE, device=H100).measure(16, GOOD, "full")
    failed = Measurement.failed(Status.TIMEOUT, "why", "short", cost_s=1.0, device={"a": 1})
    for m in (ok, failed):
        assert pickle.loads(pickle.dumps(m)) == m


def test_describe_exit():
    assert describe_exit(-9) == "died with signal SIGKILL (9)"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(None) == "died"


def test_the_child_exits_when_its_parent_is_killed(tmp_path):
    # The parent is killed while its child hangs in a measurement that never returns.
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import functools, sys
        from searcher.measure.isolation import IsolatedBenchmarker
        from searcher.kernels.fused_moe import FUSED_MOE, KernelConfig, Shape
        from searcher.measure.synthetic import SyntheticBenchmarker

        if __name__ == "__main__":
            config = KernelConfig(*{DEFAULT_16.astuple()})
            shape = Shape(E=64, N=1408, hidden=2048, top_k=6, dtype="bf16")
            bencher = IsolatedBenchmarker(functools.partial(
                SyntheticBenchmarker, FUSED_MOE, shape, hang_on=[config.short()]), timeout_s=None)
            bencher.device_info()
            print(bencher.pid, flush=True)
            bencher.measure(16, config, "short")
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        time.sleep(0.5)
        assert not _gone(child)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(child), "the child outlived its parent"
    finally:
        proc.kill()
        proc.stdout.close()


# -- wiring ----------------------------------------------------------------------------
def test_make_benchmarker_isolates_by_default_and_validates_its_options():
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    bencher, device = make_benchmarker(spec, synthetic=True)
    assert isinstance(bencher, IsolatedBenchmarker) and device == H100
    assert bencher.pid is None  # started lazily, at the first measurement
    bencher.close()
    bencher, _ = make_benchmarker(spec, synthetic=True, isolation="none")
    assert isinstance(bencher, SyntheticBenchmarker)
    with pytest.raises(ConfigError, match="--trial-timeout 0: must be a positive"):
        make_benchmarker(spec, synthetic=True, trial_timeout_s=0)
    with pytest.raises(ConfigError, match="--isolation thread: must be one of: process, none"):
        make_benchmarker(spec, synthetic=True, isolation="thread")


def test_cli_rejects_a_non_positive_trial_timeout(capsys, tmp_path, monkeypatch):
    from searcher.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--study", "h100-e64-n1408", "--synthetic",
                 "--trial-timeout", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--trial-timeout -1: must be a positive number of seconds" in err


def test_grid_stores_a_crashed_config_with_its_reason(tmp_path):
    from searcher.tune.grid import grid_order, run_grid

    spec = load_spec(_study_file(tmp_path, trials=10))
    first = grid_order(spec, 16)[0]
    url = f"sqlite:///{tmp_path / 'g.db'}"
    with IsolatedBenchmarker(_synthetic(crash_on=[first.short()])) as bencher:
        [summary] = run_grid(spec, bencher, H100, url, limit_per_m=3)
    assert summary["measured"] == 3 and summary["failed"] >= 1
    study = optuna.load_study(study_name=study_name(FUSED_MOE, "grid", spec.shape, H100, 16),
                              storage=open_storage(url))
    [crashed] = [t for t in study.trials if t.user_attrs["config"] == first.to_dict()]
    assert crashed.user_attrs["status"] == "runtime_error"
    assert "SIGSEGV" in crashed.user_attrs["reason"]


# -- end to end: `searcher run` with a config that kills or hangs its process -------------
def _study_file(tmp_path: Path, trials: int) -> Path:
    return write_study(tmp_path / "iso.toml", f"sqlite:///{tmp_path / 'iso.db'}", trials,
                       batch_sizes=[16], gpu=H100)


def _run_with(tmp_path: Path, hook: str, timeout_s: float) -> tuple[list, object]:
    study_path = _study_file(tmp_path, trials=10)
    env = dict(os.environ, **{hook: DEFAULT_16.short()})
    run = subprocess.run(
        [sys.executable, "-m", "searcher", "run", "--study", str(study_path), "--synthetic",
         "--no-live", "--trial-timeout", f"{timeout_s:g}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    spec = load_spec(study_path)
    study = optuna.load_study(study_name=study_name(FUSED_MOE, "search", spec.shape, H100, 16),
                              storage=open_storage(spec.storage))
    assert summarize_study(FUSED_MOE, study, 16).trials == 10, "the budget was not spent exactly"
    default = [t for t in study.trials if t.user_attrs.get("config") == DEFAULT_16.to_dict()
               and t.user_attrs.get("status") in COUNTED_STATUSES]
    assert len(default) == 1 and default[0].user_attrs["source"] == "default"
    return default[0], run


def test_run_survives_a_config_that_segfaults_and_stores_why(tmp_path):
    trial, run = _run_with(tmp_path, "SEARCHER_SYNTHETIC_CRASH", timeout_s=5)
    assert trial.user_attrs["status"] == "runtime_error"
    assert trial.state == optuna.trial.TrialState.PRUNED
    reason = trial.user_attrs["reason"]
    assert "child process died with signal SIGSEGV (11)" in reason
    assert f"measuring {DEFAULT_16.short()} at M=16" in reason
    assert "SIGSEGV" in run.stderr  # and the run said so as it happened


def test_run_survives_a_config_that_hangs_and_stores_why(tmp_path):
    # 3 s, not 5: the hanging config (vLLM's default) is also re-measured twice among
    # the finalists, each time waiting out the timeout.
    trial, _ = _run_with(tmp_path, "SEARCHER_SYNTHETIC_HANG", timeout_s=3)
    assert trial.user_attrs["status"] == "timeout"
    assert "no result within the trial timeout of 3 s" in trial.user_attrs["reason"]
    assert DEFAULT_16.short() in trial.user_attrs["reason"]


# -- helpers ---------------------------------------------------------------------------
class _Faulty:
    """A benchmarker that misbehaves in one chosen way (built in the child)."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.inner = SyntheticBenchmarker(FUSED_MOE, SHAPE, device=H100)

    def device_info(self):
        return self.inner.device_info()

    def precompile(self, M, configs):
        if self.how == "precompile-raises":
            raise RuntimeError("no compiler")
        if self.how == "precompile-hangs":
            time.sleep(3600)

    def measure_round(self, M, configs, fidelity):
        return [self.measure(M, c, fidelity) for c in configs]

    def measure(self, M, config, fidelity):
        if self.how == "runtime":
            return Measurement.failed(Status.RUNTIME_ERROR, "illegal address", "short")
        if self.how == "measure-raises":
            return 1 / 0
        return self.inner.measure(M, config, fidelity)


class _FreezeProbe(_Faulty):
    """Measures as the synthetic benchmarker does; its reason says how many objects the
    collector had frozen in the measuring process at the time."""

    def measure(self, M, config, fidelity):
        import gc

        m = self.inner.measure(M, config, fidelity)
        return dataclasses.replace(m, reason=f"frozen {gc.get_freeze_count()}")


def test_the_measuring_process_keeps_what_it_built_out_of_the_collectors_passes(isolated):
    """Issue #13: what the child holds once its benchmarker is built (torch, the workload)
    is frozen, so that the collector's full passes, set off by the compile threads'
    allocations, do not scan it in the middle of a measurement; the parent is left as is."""
    import gc

    bencher = isolated(factory=functools.partial(_FreezeProbe, "fine"))
    frozen = int(bencher.measure(16, GOOD, "short").reason.split()[-1])
    assert frozen > 1000  # the interpreter and the modules of a spawned child
    assert gc.get_freeze_count() == 0


def _gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


class _CompilesAhead(SyntheticBenchmarker):
    """Compiles a hinted config ahead at once (built in the child), as the GPU harness
    reports it: hinted and not yet measured."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.ahead: list = []

    def precompile(self, M, configs):
        self.ahead.extend((M, c) for c in configs)

    def compiled_ahead(self):
        return list(self.ahead)

    def measure(self, M, config, fidelity):
        if (M, config) in self.ahead:
            self.ahead.remove((M, config))
        return super().measure(M, config, fidelity)


def test_the_parent_knows_which_configs_the_child_compiled_ahead(isolated):
    """Issue #13: each reply of the child says which hinted configs have compiled, so the
    search (asking without the child's lock, while it measures) can measure those first."""
    bencher = isolated(factory=functools.partial(_CompilesAhead, FUSED_MOE, SHAPE, device=H100))
    assert bencher.ready(16, GOOD)  # no child yet: nothing compiles ahead
    bencher.device_info()
    assert not bencher.ready(16, GOOD)
    bencher.precompile(16, [GOOD])
    assert bencher.ready(16, GOOD) and not bencher.ready(16, OTHER)
    assert not bencher.ready(32, GOOD)
    assert bencher.measure(16, GOOD, "short").ok
    assert not bencher.ready(16, GOOD)  # measured: a new hint compiles it again
    plain = isolated()  # a benchmarker that compiles nothing ahead: every config is ready
    plain.device_info()
    assert plain.ready(16, GOOD) and plain.ready(64, OTHER)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_a_bad_switch_interval_is_refused_before_a_gpu_is_looked_for(value, tmp_path, capsys,
                                                                     monkeypatch):
    # The experiment's setting (README, "Still missed") is read in the measuring process;
    # a bad one is refused in the parent, in one line, with exit 2.
    from searcher.cli import main

    monkeypatch.setenv("SEARCHER_SWITCH_INTERVAL_S", value)
    code = main(["run", "--study", "h100-e64-n1408", "--storage",
                 f"sqlite:///{tmp_path / 's.db'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"SEARCHER_SWITCH_INTERVAL_S={value}: must be a number of seconds above 0" in err[0]


def test_the_switch_interval_is_read_as_seconds(monkeypatch):
    from searcher.tune.run import switch_interval_from_env

    monkeypatch.delenv("SEARCHER_SWITCH_INTERVAL_S", raising=False)
    assert switch_interval_from_env() is None
    monkeypatch.setenv("SEARCHER_SWITCH_INTERVAL_S", "")
    assert switch_interval_from_env() is None  # lent_gpu.sh's switch-ab sets it empty
    monkeypatch.setenv("SEARCHER_SWITCH_INTERVAL_S", "0.0005")
    assert switch_interval_from_env() == 0.0005
