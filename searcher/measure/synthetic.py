"""A synthetic benchmarker: a made-up but structured landscape, for tests and demos.

The landscape is the kernel's (``kernel.synthetic_landscape``: a time per config with a
batch-size dependent optimum, and configs that fail); this module adds seeded noise and
costs that imitate a GPU (a short measurement is cheaper than a full one; a config's first
measurement pays its compile). Nothing here claims to predict a real GPU.

Test hooks, read from the environment by :func:`synthetic_from_env` (what ``--synthetic``
builds, inside the measuring child process when measurements are isolated):

- ``SEARCHER_SYNTHETIC_SLEEP=F``: really sleep F times each measurement's charged cost
  (kill tests need trials that take wall time).
- ``SEARCHER_SYNTHETIC_NOISE=F``: relative noise of a full measurement (0: every process
  measures alike).
- ``SEARCHER_SYNTHETIC_CRASH=CONFIG``: measuring CONFIG (as the config's ``short()``
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
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from searcher.measure.device import KNOWN_GPUS, GpuFacts
from searcher.kernels import get_kernel
from searcher.measure.measurement import (
    FIDELITIES, Fidelity, Measurement, Status, calls_scale)

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Config, Kernel, Problem

__all__ = ["SyntheticBenchmarker", "synthetic_from_env"]


#: The share of a synthetic measurement's cost spent replaying graphs (``gpu_s``); the
#: rest (capture, launches, syncs) does not shrink with fewer layer calls a graph. On the
#: lent H100 (examples/h100-e64-n1408-finalists-budget) the rest was about 6 ms of a
#: full measurement's 83 ms at M=16 and 8-20 ms of 170-220 ms at M=1536.
REPLAY_SHARE = 0.93


class SyntheticBenchmarker:
    """Args:
        kernel: the kernel whose landscape is measured.
        problem: the kernel's problem (sets the scale of times and the optimum).
        device: the vLLM device name reported (and whose shared memory limit applies).
        seed: seeds the noise.
        noise: relative standard deviation of a full measurement.
        costs: seconds charged per (short, full, long) measurement and per compile.
        sleep: really sleep for the charged cost times this factor (kill tests need trials
            that take wall time).
        crash_on: configs (their ``short()`` labels) whose measurement kills this process
            with SIGSEGV: for isolation tests only.
        hang_on: configs whose measurement sleeps forever: for isolation tests only.
    """

    def __init__(
        self,
        kernel: Kernel,
        problem: Problem,
        device: str = "NVIDIA_H100_80GB_HBM3",
        seed: int = 0,
        noise: float = 0.01,
        costs: dict[str, float] | None = None,
        sleep: float = 0.0,
        crash_on: Iterable[str] = (),
        hang_on: Iterable[str] = (),
    ) -> None:
        self.device = device
        facts: GpuFacts = KNOWN_GPUS.get(device, GpuFacts(232448, 132))
        self.landscape = kernel.synthetic_landscape(problem, facts)
        self.noise = noise
        self.costs = {"short": 0.06, "full": 0.25, "long": 1.0, "compile": 1.0, **(costs or {})}
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.compiled: set[tuple[int, Config]] = set()
        self.calls: list[tuple[int, Config, str]] = []
        self.crash_on = frozenset(crash_on)
        self.hang_on = frozenset(hang_on)

    def device_info(self) -> dict[str, Any]:
        return {"name": self.device.replace("_", " "), "vllm_name": self.device,
                "torch_version": "synthetic", "triton_version": "synthetic",
                "backend": "synthetic"}

    def precompile(self, M: int, configs: Iterable[Config]) -> None:
        pass

    def ready(self, M: int, config: Config) -> bool:
        """Always True: nothing compiles ahead here."""
        return True

    def true_time(self, M: int, config: Config) -> float:
        """The noiseless time (us) of ``config`` at batch size M."""
        return self.landscape.true_time(M, config)

    def measure_round(self, M: int, configs: Sequence[Config],
                      fidelity: Fidelity | str) -> list[Measurement]:
        """One measurement per config, one after the other (nothing to interleave here)."""
        return [self.measure(M, config, fidelity) for config in configs]

    def measure(self, M: int, config: Config, fidelity: Fidelity | str) -> Measurement:
        fid = FIDELITIES[fidelity] if isinstance(fidelity, str) else fidelity
        self.calls.append((M, config, fid.name))
        if self.crash_on or self.hang_on:
            self._misbehave(config)
        # Of a measurement's cost, REPLAY_SHARE replays graphs (it scales with the layer
        # calls a graph); the rest (capture, launches, syncs) does not.
        named = self.costs[fid.name]
        replay = named * REPLAY_SHARE * calls_scale(fid)
        cost = named * (1.0 - REPLAY_SHARE) + replay
        compile_s = 0.0
        if (M, config) not in self.compiled:
            compile_s = self.costs["compile"]
            self.compiled.add((M, config))
        if self.sleep:
            time.sleep((cost + compile_s) * self.sleep)
        dev = self.device_info()
        failure = self.landscape.failure(config)
        if failure is not None:
            status, reason = failure
            return Measurement.failed(status, reason, fid.name, cost_s=compile_s, device=dev)
        true = self.true_time(M, config)
        sigma = self.noise * math.sqrt(FIDELITIES["full"].replays / fid.replays
                                       / calls_scale(fid))
        median = true * (1.0 + self.rng.gauss(0.0, sigma))
        return Measurement(status=Status.OK, fidelity=fid.name, median_us=median,
                           mean_us=median, spread_us=true * sigma * 1.35, samples=fid.replays,
                           device=dev, cost_s=cost + compile_s, compile_s=compile_s,
                           gpu_s=replay)

    def _misbehave(self, config: Config) -> None:
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


def synthetic_from_env(kernel: str, problem: Problem, device: str,
                       seed: int) -> SyntheticBenchmarker:
    """The synthetic benchmarker ``--synthetic`` uses for the kernel named ``kernel``, with
    the test hooks of the ``SEARCHER_SYNTHETIC_*`` environment variables (see the
    module's docstring).

    Module level and picklable by reference, so a measuring child process can build it.

    Raises:
        SpecError: no kernel of that name.
    """
    env = os.environ
    return SyntheticBenchmarker(
        get_kernel(kernel), problem, device=device, seed=seed,
        sleep=float(env.get("SEARCHER_SYNTHETIC_SLEEP", "0")),
        noise=float(env.get("SEARCHER_SYNTHETIC_NOISE", "0.01")),
        crash_on=_labels(env.get("SEARCHER_SYNTHETIC_CRASH", "")),
        hang_on=_labels(env.get("SEARCHER_SYNTHETIC_HANG", "")),
    )
