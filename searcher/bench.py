"""``searcher bench``: time given configs of a layer shape on the GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe import FUSED_MOE
from searcher.errors import NoGPUError
from searcher.measurement import Measurement
from searcher.kernels.fused_moe.problem import Shape

__all__ = ["BenchRow", "bench", "require_gpu"]


@dataclass(frozen=True)
class BenchRow:
    M: int
    config: KernelConfig
    measurement: Measurement

    def to_dict(self) -> dict:
        return {"M": self.M, "config": self.config.to_dict(), **self.measurement.to_dict()}


def require_gpu(what: str) -> None:
    """Raise NoGPUError naming ``what`` when torch sees no CUDA GPU."""
    from searcher.device import cuda_available

    if not cuda_available():
        raise NoGPUError(f"{what} needs a CUDA GPU and torch sees none on this machine")


def bench(
    shape: Shape,
    batch_sizes: Sequence[int],
    config: KernelConfig | None,
    fidelity: str = "full",
    backend: str = "builtin",
    repeat: int = 1,
) -> list[BenchRow]:
    """Measure ``config`` (vLLM's default per M when None) at each batch size.

    Raises:
        NoGPUError: no CUDA GPU is visible.
        BackendError: the backend is unknown or unusable here.
    """
    require_gpu("timing a config")
    from searcher.harness import GpuBenchmarker

    bencher = GpuBenchmarker(FUSED_MOE.workload(shape, backend, seed=0), compile_threads=0)
    rows = []
    try:
        for M in batch_sizes:
            cfg = config or FUSED_MOE.default_config(shape, M)
            for _ in range(repeat):
                rows.append(BenchRow(M, cfg, bencher.measure(M, cfg, fidelity)))
    finally:
        bencher.close()
    return rows
