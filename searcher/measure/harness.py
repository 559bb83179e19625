"""Timing configs of a kernel on a GPU, the way vLLM's tuner times its fused MoE layer.

The kernel's :class:`~searcher.kernels.base.Workload` provides the layer calls and the
per-replay inputs; this module owns the timing. One measurement: build the layer for the config, compile it (or take the result of a
compile started ahead on a CPU thread), run it once eagerly, capture ``calls_per_graph``
layer calls in one CUDA graph, replay it ``warmup`` times, then ``replays`` times with
fresh per-replay inputs (the router logits) copied in before each replay and CUDA events around the replay
alone. Per-call time = replay time / calls_per_graph. Failures come back as a
:class:`~searcher.measure.measurement.Measurement` with a status and a reason, never raised.

Which inputs each replay gets (:func:`replay_inputs`): timed replay ``j`` of every
fidelity uses input set ``j % ROUTING_CYCLE`` and warm-up replays use sets of their own.
So ``full`` (20 replays) times one whole cycle and ``long`` (100) five: both time the same
routings, and their medians differ only by noise, not by which routings they drew.
``short`` (5) times the cycle's first sets: it is only compared with other short
measurements (pruning), which all time those same sets. Until this order, replay ``i``
(warm-ups counted) used set ``i % 32``, so short, full and long timed different samples of
routings; with few experts and small M a replay's time depends much on its routing (at
M=2, top_k=2 of E=8 a replay touches 2 to 4 experts, up to twice the weight bytes), and
the search-phase times came out below the finalists' re-measurement of the same config.
A study records the order it was measured with (:data:`TIMINGS`, its ``timing``), and a
stored study of another order is not resumed (:func:`searcher.store.storage.open_study`).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from searcher.measure.measurement import (FIDELITIES, Fidelity, Measurement, Status,
                                         summarize_samples)

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import LayerCall, Workload

__all__ = ["Benchmarker", "GpuBenchmarker", "classify_error", "replay_inputs", "round_order",
           "ROUND_STRIDE", "ROUTING_CYCLE",
           "WARMUP_SETS", "INPUT_SETS", "TIMINGS"]

#: Input sets one cycle of timed replays goes through: ``full`` times 1 cycle, ``long`` 5.
ROUTING_CYCLE = 20
#: Input sets kept apart for the warm-up replays (never timed).
WARMUP_SETS = 5
#: Input sets a workload's ``refresh`` must accept (0 .. INPUT_SETS - 1); the ``legacy``
#: order needs 32.
INPUT_SETS = ROUTING_CYCLE + WARMUP_SETS
_LEGACY_SETS = 32
#: The replay-input orders, by name, and what a study records of each as its ``timing``
#: (``legacy``: every study measured before the order was recorded; kept to benchmark it).
TIMINGS: dict[str, str] = {
    "cycle": f"timed replay j: inputs j % {ROUTING_CYCLE}; warm-ups: {WARMUP_SETS} sets apart",
    "legacy": f"replay i (warm-ups counted): inputs i % {_LEGACY_SETS}",
}


def replay_inputs(fidelity: Fidelity, order: str = "cycle") -> list[int]:
    """The input set each replay of one measurement uses, warm-ups first.

    Args:
        fidelity: how many warm-up and timed replays.
        order: a key of :data:`TIMINGS` (``legacy`` only to benchmark the old order).

    Raises:
        ValueError: an unknown order.
    """
    if order == "cycle":
        return ([ROUTING_CYCLE + i % WARMUP_SETS for i in range(fidelity.warmup)]
                + [j % ROUTING_CYCLE for j in range(fidelity.replays)])
    if order == "legacy":
        return [i % _LEGACY_SETS for i in range(fidelity.warmup + fidelity.replays)]
    raise ValueError(f"replay order {order!r}: must be one of {', '.join(TIMINGS)}")


#: Python's default ``sys.getswitchinterval()``; a measuring process set otherwise
#: (``SEARCHER_SWITCH_INTERVAL_S``) records its own in every measurement's device info.
_PYTHON_SWITCH_INTERVAL_S = 0.005

#: Compile threads of one measuring process at most: on the lent H100 host (16 cores), 12
#: threads compiled 24 configs 5.0x faster than one, with the GIL held 70% of the time
#: (benchmarks/results/compile-parallel-NVIDIA_H100_80GB_HBM3.md); more mostly wait for it.
MAX_COMPILE_THREADS = 12

#: Cores each measuring process leaves to its own search: the main thread (storage,
#: pruning), the asker thread (sampler) and the measuring thread.
SEARCH_CORES = 3


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS has one, e.g. under
    ``taskset`` or a container's cpuset; else ``os.cpu_count()``). A CPU quota without a
    cpuset (Docker's ``--cpus``, a Kubernetes CPU limit) is not seen: a container held to
    8 CPUs of a 128-core host counts 128."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on macOS and Windows
        return os.cpu_count() or 1


def compile_threads_for(cores: int, workers: int = 1) -> int:
    """Compile threads for each of ``workers`` measuring processes sharing ``cores`` CPU
    cores: each worker's share of the cores less :data:`SEARCH_CORES`, at least 1 and at
    most :data:`MAX_COMPILE_THREADS`. Each thread runs Triton's compile and then ptxas (a
    process of its own) on a core; with more threads than cores, the search's threads and
    the measuring thread wait for a core (issue #13: compile off the critical path, sized
    to the machine's cores). 16 cores, one worker: 12; 8 cores: 5; 2 cores: 1; 32 cores,
    two workers: 12 each; 16 cores, two workers: 5 each."""
    return max(1, min(MAX_COMPILE_THREADS, cores // max(1, workers) - SEARCH_CORES))


#: Steps between the input sets of neighbouring configs in one interleaved step
#: (:func:`round_order`): with 2, no replay follows one of the same input set (which would
#: find that routing's experts still in L2) for any number of configs, as in a plain
#: measurement, where replay j follows replay j - 1.
ROUND_STRIDE = 2


def round_order(fidelity: Fidelity, configs: int,
                order: str = "cycle") -> list[list[tuple[int, bool]]]:
    """The replays of an interleaved round of ``configs`` configs: one list per step, of
    (input set, timed) per config. Every config gets the warm-ups and the timed replays of
    :func:`replay_inputs` (the same sets, so the same routings); config ``p``'s timed
    sets are rotated by ``ROUND_STRIDE * p``. One config: exactly :func:`replay_inputs`."""
    sets = replay_inputs(fidelity, order)
    warm, timed = sets[:fidelity.warmup], sets[fidelity.warmup:]
    steps: list[list[tuple[int, bool]]] = [[(s, False)] * configs for s in warm]
    n = len(timed)
    for i in range(n):
        steps.append([(timed[(i + ROUND_STRIDE * p) % n], True) for p in range(configs)])
    return steps


class Benchmarker(Protocol):
    """What the search needs from whatever produces measurements (GPU, replay, synthetic)."""

    def measure(self, M: int, config: Any, fidelity: Fidelity) -> Measurement:
        """Time ``config`` at batch size ``M``; failures are returned, not raised."""

    def measure_round(self, M: int, configs: Sequence[Any],
                      fidelity: Fidelity) -> list[Measurement]:
        """Time ``configs`` side by side, one measurement each, in their order (the
        finalists' rounds); a GPU interleaves their replays, others may measure one by
        one."""

    def precompile(self, M: int, configs: Iterable[Any]) -> None:
        """Hint: these configs will be measured soon (compile them ahead if useful)."""

    def ready(self, M: int, config: Any) -> bool:
        """Whether measuring ``config`` now would not wait for a compile: False while a
        compile hinted ahead is still running (the search measures another trial of the
        batch first). Cheap and thread-safe: asked from the search's main thread while a
        measurement runs. A benchmarker that compiles nothing returns True; one without
        this method counts as such."""

    def device_info(self) -> dict[str, Any]:
        """The device and software versions attached to every measurement."""


def classify_error(exc: BaseException) -> tuple[Status, str]:
    """Map an exception from compiling or running a config to a status and a reason."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    # Triton's errors, matched by name so this module need not import triton.
    if name == "OutOfResources":
        return Status.OUT_OF_RESOURCES, f"{name}: {first}"
    if name in ("CompilationError", "CompileTimeAssertionFailure", "MLIRCompilationError",
                "PTXASError") or "compil" in name.lower():
        return Status.COMPILE_ERROR, f"{name}: {first}"[:500]
    if "out of resource" in first.lower() or "shared memory" in first.lower():
        return Status.OUT_OF_RESOURCES, f"{name}: {first}"
    return Status.RUNTIME_ERROR, f"{name}: {first}"[:500]


class GpuBenchmarker:
    """Measures configs of one kernel problem on the current CUDA device.

    Args:
        workload: the kernel's problem on this GPU (inputs, layer calls, per-replay state).
        compile_threads: CPU threads compiling configs ahead (0 compiles inline).
        order: which inputs each replay gets (:func:`replay_inputs`); only a benchmark of
            the measurement itself picks another than ``cycle``.
        switch_interval_s: where given, this process's ``sys.setswitchinterval`` (seconds;
            Python's default 0.005): how long the measuring thread, back from a CUDA sync
            (which releases the GIL), may wait for compile threads holding it before
            they are asked to drop it. None leaves Python's own
            (``benchmarks/gil_convoy.py``; issue #13, an experiment that changed nothing
            on one H100: examples/h100-e64-n1408-switch-interval/).

    Raises:
        ValueError: an unknown ``order``, or a ``switch_interval_s`` not above 0.
    """

    def __init__(self, workload: Workload, compile_threads: int = 4, order: str = "cycle",
                 switch_interval_s: float | None = None) -> None:
        import sys

        import torch

        from searcher.measure.device import current_device

        if order not in TIMINGS:
            raise ValueError(f"replay order {order!r}: must be one of {', '.join(TIMINGS)}")
        if switch_interval_s is not None:
            if not switch_interval_s > 0:
                raise ValueError(f"switch interval {switch_interval_s!r} s: must be above 0")
            sys.setswitchinterval(switch_interval_s)
        self.switch_interval_s = sys.getswitchinterval()
        self.order = order
        self.workload = workload
        self.device = current_device()
        self._torch = torch
        self._pool = ThreadPoolExecutor(compile_threads) if compile_threads > 0 else None
        self._pending: dict[tuple[int, Any], Future] = {}
        self._layers: dict[tuple[int, Any], LayerCall] = {}
        self._lock = threading.Lock()
        # The search asks ahead on a thread of its own (searcher.tune.search), whose precompile
        # hint builds layers, i.e. allocates CUDA buffers: never while this thread captures
        # a CUDA graph (an allocation from another thread invalidates the capture).
        self._cuda = threading.RLock()

    def device_info(self) -> dict[str, Any]:
        info = self.device.to_dict()
        info.update(self.workload.info())
        info["timing"] = TIMINGS[self.order]
        if self.switch_interval_s != _PYTHON_SWITCH_INTERVAL_S:
            info["switch_interval_s"] = self.switch_interval_s  # an experiment's runs say so
        return info

    # -- compile ahead ----------------------------------------------------------------
    def _layer(self, M: int, config: Any) -> LayerCall:
        key = (M, config)
        with self._lock:
            layer = self._layers.get(key)
            if layer is None:
                layer = self.workload.layer(M, config)
                self._layers[key] = layer
        return layer

    def precompile(self, M: int, configs: Iterable[Any]) -> None:
        if self._pool is None:
            return
        for config in configs:
            key = (M, config)
            if key in self._pending:
                continue
            with self._cuda:
                layer = self._layer(M, config)
            self._pending[key] = self._pool.submit(layer.compile)

    def ready(self, M: int, config: Any) -> bool:
        """True once the compile hinted for ``config`` has finished (or failed); False for
        one still compiling or never hinted. Without compile threads, always True (every
        config compiles as it is measured)."""
        if self._pool is None:
            return True
        future = self._pending.get((M, config))
        return future is not None and future.done()

    def compiled_ahead(self) -> list[tuple[int, Any]]:
        """The (M, config) pairs hinted ahead whose compile has finished and that are not
        measured yet (what :meth:`ready` answers True for; the measuring process sends
        them to its parent with each reply, :mod:`searcher.measure.isolation`)."""
        return [key for key, future in list(self._pending.items()) if future.done()]

    def _compile(self, M: int, config: Any, layer: LayerCall) -> float:
        """Wait for (or do) the compile of ``config``; returns the seconds this thread spent
        on it (near zero when a compile thread finished it ahead)."""
        start = time.perf_counter()
        future = self._pending.pop((M, config), None)
        if future is None:
            layer.compile()
        else:
            future.result()
        return time.perf_counter() - start

    # -- measuring --------------------------------------------------------------------
    def measure(self, M: int, config: Any, fidelity: Fidelity | str) -> Measurement:
        return self.measure_round(M, [config], fidelity)[0]

    def measure_round(self, M: int, configs: Sequence[Any],
                      fidelity: Fidelity | str) -> list[Measurement]:
        """Measure ``configs`` together, their replays interleaved (see :func:`round_order`):
        each config's graph is captured first, then replay i of every config runs before
        replay i + 1 of any, so a change of the GPU's clocks during the round reaches every
        config alike and cancels in their ratios. One config: the plain measurement."""
        with self._cuda:
            return self._measure_round(M, list(configs), fidelity)

    def _prepare(self, M: int, config: Any, fidelity: Fidelity) -> tuple[Any, float]:
        """Build, compile, run once eagerly and capture ``config``'s graph; returns the graph
        and the seconds spent waiting for the compile."""
        torch = self._torch
        layer = self._layer(M, config)
        compile_s = self._compile(M, config, layer)
        layer()  # the eager call: loads the kernels, surfaces resource errors
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(fidelity.calls_per_graph):
                layer()
        torch.cuda.synchronize()
        return graph, compile_s

    def _measure_round(self, M: int, configs: list[Any],
                       fidelity: Fidelity | str) -> list[Measurement]:
        if isinstance(fidelity, str):
            fidelity = FIDELITIES[fidelity]
        torch = self._torch
        device = self.device_info()
        results: list[Measurement | None] = [None] * len(configs)
        graphs: dict[int, Any] = {}
        compile_s: dict[int, float] = {}
        prepare_s: dict[int, float] = {}
        try:
            for j, config in enumerate(configs):
                start = time.perf_counter()
                try:
                    graphs[j], compile_s[j] = self._prepare(M, config, fidelity)
                except Exception as exc:  # a failed config is data, not a crash
                    status, reason = classify_error(exc)
                    results[j] = Measurement.failed(status, reason, fidelity.name,
                                                    cost_s=time.perf_counter() - start,
                                                    device=device)
                    self._forget(M, config)
                prepare_s[j] = time.perf_counter() - start
            live = sorted(graphs)
            per_call: dict[int, list[float]] = {j: [] for j in live}
            gpu_ms = dict.fromkeys(live, 0.0)
            start = time.perf_counter()
            try:
                begin = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                for step in round_order(fidelity, len(live), self.order):
                    for j, (inputs, timed) in zip(live, step):
                        self.workload.refresh(M, inputs)
                        torch.cuda.synchronize()
                        begin.record()
                        graphs[j].replay()
                        end.record()
                        end.synchronize()
                        elapsed_ms = begin.elapsed_time(end)
                        gpu_ms[j] += elapsed_ms
                        if timed:
                            per_call[j].append(elapsed_ms * 1000.0 / fidelity.calls_per_graph)
            except Exception as exc:  # the context may be gone: no config of the round counts
                status, reason = classify_error(exc)
                share = (time.perf_counter() - start) / max(1, len(live))
                for j in live:
                    results[j] = Measurement.failed(status, reason, fidelity.name,
                                                    cost_s=prepare_s[j] + share, device=device)
                return [r for r in results if r is not None]
            share = (time.perf_counter() - start) / max(1, len(live))
            for j in live:
                median, mean, spread = summarize_samples(per_call[j])
                results[j] = Measurement(
                    status=Status.OK, fidelity=fidelity.name, median_us=median, mean_us=mean,
                    spread_us=spread, samples=len(per_call[j]), device=device,
                    cost_s=prepare_s[j] + share, compile_s=compile_s[j],
                    gpu_s=gpu_ms[j] / 1000.0)
        finally:
            graphs.clear()
            for config in configs:
                self._forget(M, config)
        return [r for r in results if r is not None]

    def _forget(self, M: int, config: Any) -> None:
        with self._lock:
            self._layers.pop((M, config), None)
        self._pending.pop((M, config), None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

