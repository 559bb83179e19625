"""searcher.measure.harness on a CPU: which inputs each replay of each fidelity times.

The GPU calls (CUDA graphs, events) are replaced by fakes whose "replay time" is a function
of the input set the workload last received, so the harness's own loop decides what is
timed, as it does on a GPU.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest

from searcher.errors import StorageError
from searcher.measure.harness import (INPUT_SETS, ROUTING_CYCLE, TIMINGS, WARMUP_SETS,
                                      GpuBenchmarker, replay_inputs)
from searcher.measure.measurement import FIDELITIES


class FakeWorkload:
    """Records the input set of every refresh; a replay takes 1 ms per input-set index."""

    def __init__(self) -> None:
        self.refreshed: list[int] = []

    def layer(self, M, config):
        class Call:
            def compile(self) -> None:
                pass

            def __call__(self) -> None:
                pass

        return Call()

    def refresh(self, M: int, inputs: int) -> None:
        assert 0 <= inputs < 32
        self.refreshed.append(inputs)

    def info(self) -> dict:
        return {"backend": "fake"}


@pytest.fixture
def bencher_of(monkeypatch):
    """GpuBenchmarker(FakeWorkload(), order=...) with torch.cuda's graph and events faked."""
    import torch

    import searcher.measure.device

    class Device:
        def to_dict(self) -> dict:
            return {"name": "Fake GPU", "vllm_name": "Fake_GPU"}

    monkeypatch.setattr(searcher.measure.device, "current_device", lambda: Device())
    made: list[FakeWorkload] = []

    class Event:
        def __init__(self, **_kw) -> None:
            pass

        def record(self) -> None:
            pass

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, _end) -> float:
            return 1.0 + made[-1].refreshed[-1]  # ms; set k is slower than set k - 1

    class Graph:
        def replay(self) -> None:
            pass

    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", lambda _g: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Event", Event)

    def make(order: str = "cycle", workload: FakeWorkload | None = None,
             compile_threads: int = 0) -> tuple[GpuBenchmarker, FakeWorkload]:
        workload = workload or FakeWorkload()
        made.append(workload)
        return GpuBenchmarker(workload, compile_threads=compile_threads, order=order), workload

    return make


def _timed(bencher, workload, fidelity: str):
    workload.refreshed.clear()
    m = bencher.measure(2, "config", fidelity)
    warmup = FIDELITIES[fidelity].warmup
    return m, workload.refreshed[:warmup], workload.refreshed[warmup:]


def test_full_and_long_time_the_same_routings_in_whole_cycles(bencher_of) -> None:
    bencher, workload = bencher_of()
    _, _, short = _timed(bencher, workload, "short")
    full_m, full_warm, full = _timed(bencher, workload, "full")
    long_m, long_warm, long = _timed(bencher, workload, "long")
    assert Counter(full) == Counter(range(ROUTING_CYCLE))  # one whole cycle
    assert Counter(long) == Counter({k: 5 for k in range(ROUTING_CYCLE)})  # five of them
    assert short == [0, 1, 2, 3, 4]  # the cycle's first sets, the same for every short
    # Warm-ups never use a timed set.
    assert set(full_warm + long_warm) <= set(range(ROUTING_CYCLE, ROUTING_CYCLE + WARMUP_SETS))
    assert ROUTING_CYCLE + WARMUP_SETS == INPUT_SETS
    # Same distribution: where a replay's time is its routing's, the medians agree.
    assert full_m.median_us == long_m.median_us == statistics.median(
        100.0 * (1 + k) for k in range(ROUTING_CYCLE))
    assert full_m.samples == 20 and long_m.samples == 100
    assert bencher.device_info()["timing"] == TIMINGS["cycle"]


def test_the_legacy_order_timed_a_different_sample_per_fidelity(bencher_of) -> None:
    bencher, workload = bencher_of("legacy")
    _, _, short = _timed(bencher, workload, "short")
    full_m, _, full = _timed(bencher, workload, "full")
    long_m, _, long = _timed(bencher, workload, "long")
    assert short == [1, 2, 3, 4, 5] and full == list(range(5, 25))
    assert long == [i % 32 for i in range(5, 105)]
    assert full_m.median_us != long_m.median_us  # the phase bias, from routing alone
    assert bencher.device_info()["timing"] == TIMINGS["legacy"]


def test_replay_inputs_rejects_an_unknown_order() -> None:
    with pytest.raises(ValueError, match="must be one of cycle, legacy"):
        replay_inputs(FIDELITIES["full"], "random")


def _open(storage, info):
    from searcher.study.spec import load_spec
    from searcher.store.storage import open_study

    spec = load_spec(Path(__file__).resolve().parent.parent / "studies" / "h100-e64-n1408.toml")
    return open_study(storage, "search", spec.shape, "NVIDIA_H100_80GB_HBM3", 64, spec.space,
                      optuna.samplers.RandomSampler(), optuna.pruners.NopPruner(), info)


def test_a_gpu_study_stored_before_the_timing_was_recorded_is_not_resumed(tmp_path) -> None:
    from searcher.store.storage import open_storage

    gpu = {"name": "NVIDIA H100", "backend": "builtin", "triton_version": "3.6.0"}
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    _open(storage, gpu)
    # As a GPU study was stored before the timing was recorded: no timing attribute, and a
    # device_info without one.
    import sqlite3

    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("DELETE FROM study_user_attributes WHERE key = 'timing'")
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(StorageError, match="was made with timing 'replay i .*but this run "
                       "measures with timing 'timed replay j"):
        _open(storage, {**gpu, "timing": TIMINGS["cycle"]})
    # The legacy order itself (a benchmark of it) may still resume it.
    assert _open(storage, {**gpu, "timing": TIMINGS["legacy"]}).user_attrs["timing"] == \
        TIMINGS["legacy"]


def test_synthetic_studies_have_no_timing_and_resume_as_before(tmp_path) -> None:
    from searcher.store.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    info = {"name": "H100", "backend": "synthetic", "triton_version": "synthetic"}
    assert _open(storage, info).user_attrs["timing"] is None
    assert _open(storage, info).user_attrs["timing"] is None


def test_a_round_interleaves_replays_and_times_each_config_on_the_same_routings(bencher_of) -> None:
    from searcher.measure.harness import ROUND_STRIDE, round_order

    bencher, workload = bencher_of()
    single, _, _ = _timed(bencher, workload, "full")
    workload.refreshed.clear()
    measured = bencher.measure_round(2, ["a", "b", "c"], "full")
    assert [m.median_us for m in measured] == [single.median_us] * 3
    assert all(m.ok and m.samples == 20 for m in measured)
    fid = FIDELITIES["full"]
    warm, timed = workload.refreshed[:3 * fid.warmup], workload.refreshed[3 * fid.warmup:]
    assert set(warm) <= set(range(ROUTING_CYCLE, INPUT_SETS))
    # Replay i of every config before replay i + 1 of any; each config one whole cycle.
    per_config = [timed[p::3] for p in range(3)]
    assert all(Counter(sets) == Counter(range(ROUTING_CYCLE)) for sets in per_config)
    assert per_config[1][0] == ROUND_STRIDE and per_config[2][0] == 2 * ROUND_STRIDE
    # No timed replay follows one of the same input set (its experts would still be in L2).
    for configs in range(1, 7):
        for name in ("full", "long"):
            replays = [r for step in round_order(FIDELITIES[name], configs) for r in step]
            assert all(b[0] != a[0] for a, b in zip(replays, replays[1:]) if b[1]), (configs, name)
    # One config: exactly a plain measurement's order.
    assert [s for step in round_order(fid, 1) for s, _ in step] == replay_inputs(fid)


def test_a_config_that_fails_to_capture_fails_alone_in_its_round(bencher_of) -> None:
    bencher, workload = bencher_of()

    class Broken:
        def compile(self) -> None:
            raise RuntimeError("out of resource: shared memory, Required: 300000")

        def __call__(self) -> None:
            pass

    good = workload.layer
    workload.layer = lambda M, config: Broken() if config == "bad" else good(M, config)
    measured = bencher.measure_round(2, ["a", "bad", "c"], "full")
    assert [m.ok for m in measured] == [True, False, True]
    assert measured[1].status.value == "out_of_resources"


class GatedWorkload(FakeWorkload):
    """A config's compile waits until its gate is opened (a compile that takes a while)."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, threading.Event] = {}

    def layer(self, M, config):
        gate = self.gates.setdefault(config, threading.Event())

        class Call:
            def compile(self) -> None:
                assert gate.wait(10)

            def __call__(self) -> None:
                pass

        return Call()


def test_ready_says_whether_a_compile_ahead_has_finished(bencher_of) -> None:
    """Issue #13: the search measures first a config whose compile ahead is done; the
    benchmarker answers from its compile futures, and forgets a config once measured."""
    bencher, workload = bencher_of(workload=GatedWorkload(), compile_threads=2)
    bencher.precompile(2, ["slow", "fast"])
    workload.gates["fast"].set()
    bencher._pending[(2, "fast")].result(timeout=10)
    assert bencher.ready(2, "fast") and not bencher.ready(2, "slow")
    assert not bencher.ready(2, "never hinted") and not bencher.ready(4, "fast")
    assert bencher.compiled_ahead() == [(2, "fast")]
    bencher.measure(2, "fast", "short")
    assert not bencher.ready(2, "fast") and bencher.compiled_ahead() == []
    workload.gates["slow"].set()
    bencher._pending[(2, "slow")].result(timeout=10)
    assert bencher.ready(2, "slow") and bencher.compiled_ahead() == [(2, "slow")]
    bencher.close()


def test_without_compile_threads_every_config_is_ready(bencher_of) -> None:
    bencher, _ = bencher_of()
    bencher.precompile(2, ["a"])
    assert bencher.ready(2, "a") and bencher.ready(2, "never hinted")
    assert bencher.compiled_ahead() == []


@pytest.mark.parametrize("cores, workers, threads", [
    (16, 1, 12),  # the lent GPU host: 12, as measured (compile-parallel-*.md)
    (128, 8, 12),  # an 8-GPU host: 16 cores a worker, at most 12
    (32, 2, 12),
    (16, 2, 5),  # two workers on 16 cores: 8 each, 3 left to each search
    (8, 1, 5),
    (4, 1, 1),
    (2, 1, 1),  # never none: a config would compile inside its measurement
    (1, 4, 1),
])
def test_compile_threads_are_each_workers_share_of_the_cores_less_the_searchs(
        cores: int, workers: int, threads: int) -> None:
    from searcher.measure.harness import compile_threads_for

    assert compile_threads_for(cores, workers) == threads


def test_a_worker_process_sizes_its_compile_threads_by_the_workers_of_its_run() -> None:
    import argparse

    from searcher.cli.common import source_kwargs

    args = argparse.Namespace(replay=None, synthetic=False, allow_other_gpu=False,
                              isolation="process", trial_timeout=60.0, worker=None)
    assert source_kwargs(args)["workers"] == 1
    args.worker = "2/4"  # as spawn_workers starts the third of four
    assert source_kwargs(args)["workers"] == 4
    del args.worker  # decide's and compare's parsers have no workers
    assert source_kwargs(args)["workers"] == 1
