"""A synthetic benchmarker: a made-up but structured landscape, for tests and demos.

Times follow a smooth function of the config with a batch-size dependent optimum, plus
fixed per-config bumps and seeded noise; configs over the shared-memory limit fail as
out of resources and one tile shape "fails to compile". Costs imitate a GPU (a short
measurement is cheaper than a full one; a config's first measurement pays its compile).
Nothing here claims to predict a real GPU.

Test hooks, read from the environment by :func:`synthetic_from_env` (what ``--synthetic``
builds, inside the measuring child process when measurements are isolated):

- ``SEARCHER_SYNTHETIC_SLEEP=F``: really sleep F times each measurement's charged cost
  (kill tests need trials that take wall time).
- ``SEARCHER_SYNTHETIC_NOISE=F``: relative noise of a full measurement (0: every process
  measures alike).
- ``SEARCHER_SYNTHETIC_CRASH=CONFIG``: measuring CONFIG (as :meth:`KernelConfig.short`
  prints it, e.g. ``M16 N64 K128 G1 w4 s4``; several separated by commas) kills the
  measuring process with SIGSEGV, as a kernel that breaks the CUDA context can.
- ``SEARCHER_SYNTHETIC_HANG=CONFIG``: measuring CONFIG never returns, as a deadlocked
  kernel.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
import zlib
from typing import Any, Iterable

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.device import KNOWN_GPUS, GpuFacts
from searcher.measurement import FIDELITIES, Fidelity, Measurement, Status
from searcher.kernels.fused_moe.problem import Shape

__all__ = ["SyntheticBenchmarker", "synthetic_from_env"]


class SyntheticBenchmarker:
    """Args:
        shape: the layer shape (sets the scale of times and the optimum).
        device: the vLLM device name reported (and whose shared memory limit applies).
        seed: seeds the noise.
        noise: relative standard deviation of a full measurement.
        costs: seconds charged per (short, full, long) measurement and per compile.
        sleep: really sleep for the charged cost times this factor (kill tests need trials
            that take wall time).
        crash_on: configs (their :meth:`KernelConfig.short` labels) whose measurement kills
            this process with SIGSEGV: for isolation tests only.
        hang_on: configs whose measurement sleeps forever: for isolation tests only.
    """

    def __init__(
        self,
        shape: Shape,
        device: str = "NVIDIA_H100_80GB_HBM3",
        seed: int = 0,
        noise: float = 0.01,
        costs: dict[str, float] | None = None,
        sleep: float = 0.0,
        crash_on: Iterable[str] = (),
        hang_on: Iterable[str] = (),
    ) -> None:
        self.shape = shape
        self.device = device
        self.facts: GpuFacts = KNOWN_GPUS.get(device, GpuFacts(232448, 132))
        self.noise = noise
        self.costs = {"short": 0.06, "full": 0.25, "long": 1.0, "compile": 1.0, **(costs or {})}
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.compiled: set[tuple[int, KernelConfig]] = set()
        self.calls: list[tuple[int, KernelConfig, str]] = []
        self.crash_on = frozenset(crash_on)
        self.hang_on = frozenset(hang_on)

    def device_info(self) -> dict[str, Any]:
        return {"name": self.device.replace("_", " "), "vllm_name": self.device,
                "torch_version": "synthetic", "triton_version": "synthetic",
                "backend": "synthetic"}

    def precompile(self, M: int, configs: Iterable[KernelConfig]) -> None:
        pass

    def true_time(self, M: int, c: KernelConfig) -> float:
        """The noiseless time (us) of ``c`` at batch size M."""
        s = self.shape
        rows_per_expert = max(1.0, M * s.top_k / s.E)
        best_m = min(128.0, max(16.0, 2 ** round(math.log2(rows_per_expert))))
        best_k = 128.0 if M <= 64 else 64.0
        best_w = 4 if M <= 128 else 8
        best_stages = 4 if M <= 32 else 3
        penalty = (
            0.18 * abs(math.log2(c.BLOCK_SIZE_M / best_m))
            + 0.10 * abs(math.log2(c.BLOCK_SIZE_N / (64.0 if M <= 64 else 128.0)))
            + 0.08 * abs(math.log2(c.BLOCK_SIZE_K / best_k))
            + 0.06 * abs(c.num_stages - best_stages)
            + 0.10 * (c.num_warps != best_w) * abs(math.log2(c.num_warps / best_w))
            + 0.01 * math.log2(c.GROUP_SIZE_M)
        )
        bump = (zlib.crc32(repr((M, c.astuple())).encode()) % 1000) / 1000.0  # fixed per config
        base = 30.0 + 0.25 * M * s.top_k * s.N * s.hidden / 1.5e7
        return base * (1.0 + penalty) * (1.0 + 0.04 * bump)

    def measure(self, M: int, config: KernelConfig, fidelity: Fidelity | str) -> Measurement:
        fid = FIDELITIES[fidelity] if isinstance(fidelity, str) else fidelity
        self.calls.append((M, config, fid.name))
        if self.crash_on or self.hang_on:
            self._misbehave(config)
        cost = self.costs[fid.name]
        compile_s = 0.0
        if (M, config) not in self.compiled:
            compile_s = self.costs["compile"]
            self.compiled.add((M, config))
        if self.sleep:
            time.sleep((cost + compile_s) * self.sleep)
        dev = self.device_info()
        c = config
        smem = (c.BLOCK_SIZE_M + c.BLOCK_SIZE_N) * c.BLOCK_SIZE_K * self.shape.element_size \
            * c.num_stages
        if smem > self.facts.shared_mem_per_block:
            return Measurement.failed(
                Status.OUT_OF_RESOURCES,
                f"OutOfResources: shared memory, required: {smem}, hardware limit: "
                f"{self.facts.shared_mem_per_block}", fid.name, cost_s=compile_s, device=dev)
        if c.BLOCK_SIZE_M == 256 and c.BLOCK_SIZE_N == 256 and c.num_warps == 4:
            return Measurement.failed(Status.COMPILE_ERROR, "CompilationError: synthetic",
                                      fid.name, cost_s=compile_s, device=dev)
        true = self.true_time(M, config)
        sigma = self.noise * math.sqrt(FIDELITIES["full"].replays / fid.replays)
        median = true * (1.0 + self.rng.gauss(0.0, sigma))
        return Measurement(status=Status.OK, fidelity=fid.name, median_us=median,
                           mean_us=median, spread_us=true * sigma * 1.35, samples=fid.replays,
                           device=dev, cost_s=cost + compile_s, compile_s=compile_s,
                           gpu_s=cost * 0.8)

    def _misbehave(self, config: KernelConfig) -> None:
        label = config.short()
        if label in self.crash_on:
            try:  # no core file for a crash on purpose
                import resource

                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            except (ImportError, ValueError, OSError):  # pragma: no cover
                pass
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(60)  # pragma: no cover - the signal ends the process first
        if label in self.hang_on:
            while True:
                time.sleep(3600)


def _labels(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def synthetic_from_env(shape: Shape, device: str, seed: int) -> SyntheticBenchmarker:
    """The synthetic benchmarker ``--synthetic`` uses, with the test hooks of the
    ``SEARCHER_SYNTHETIC_*`` environment variables (see the module's docstring).

    Module level and picklable by reference, so a measuring child process can build it.
    """
    env = os.environ
    return SyntheticBenchmarker(
        shape, device=device, seed=seed,
        sleep=float(env.get("SEARCHER_SYNTHETIC_SLEEP", "0")),
        noise=float(env.get("SEARCHER_SYNTHETIC_NOISE", "0.01")),
        crash_on=_labels(env.get("SEARCHER_SYNTHETIC_CRASH", "")),
        hang_on=_labels(env.get("SEARCHER_SYNTHETIC_HANG", "")),
    )
