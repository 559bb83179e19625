"""``searcher bench``: time given configs of a kernel's problem on the GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from searcher.errors import NoGPUError
from searcher.measure.measurement import Measurement

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Config, Kernel, Problem

__all__ = ["BenchRow", "bench", "require_gpu"]


@dataclass(frozen=True)
class BenchRow:
    M: int
    config: Config
    measurement: Measurement

    def to_dict(self) -> dict:
        return {"M": self.M, "config": self.config.to_dict(), **self.measurement.to_dict()}


def require_gpu(what: str) -> None:
    """Raise NoGPUError naming ``what`` when torch sees no CUDA GPU."""
    from searcher.measure.device import cuda_available

    if not cuda_available():
        raise NoGPUError(f"{what} needs a CUDA GPU and torch sees none on this machine")


def bench(
    kernel: Kernel,
    problem: Problem,
    batch_sizes: Sequence[int],
    config: Config | None,
    fidelity: str = "full",
    backend: str = "builtin",
    repeat: int = 1,
) -> list[BenchRow]:
    """Measure ``config`` (the kernel's default per M when None) at each batch size.

    Raises:
        NoGPUError: no CUDA GPU is visible.
        BackendError: the backend is unknown or unusable here.
    """
    require_gpu("timing a config")
    from searcher.measure.harness import GpuBenchmarker

    bencher = GpuBenchmarker(kernel.workload(problem, backend, seed=0), compile_threads=0)
    rows = []
    try:
        for M in batch_sizes:
            cfg = config or kernel.default_config(problem, M)
            for _ in range(repeat):
                rows.append(BenchRow(M, cfg, bencher.measure(M, cfg, fidelity)))
    finally:
        bencher.close()
    return rows
