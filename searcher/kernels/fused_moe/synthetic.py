"""The fused MoE's made-up landscape for ``--synthetic`` (see :mod:`searcher.measure.synthetic`).

Times follow a smooth function of the config with a batch-size dependent optimum, plus
fixed per-config bumps; configs over the shared-memory limit fail as out of resources and
one tile shape "fails to compile". Nothing here claims to predict a real GPU.
"""

from __future__ import annotations

import math
import zlib

from searcher.measure.device import GpuFacts
from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.problem import Shape
from searcher.measure.measurement import Status

__all__ = ["MoELandscape"]


class MoELandscape:
    """Made-up times of fused-MoE configs for one shape on one GPU."""

    def __init__(self, shape: Shape, gpu: GpuFacts) -> None:
        self.shape = shape
        self.gpu = gpu

    def true_time(self, M: int, c: KernelConfig) -> float:
        """The noiseless time (us) of ``c`` at batch size M."""
        s = self.shape
        rows_per_expert = max(1.0, M * s.top_k / s.routed_experts)
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
        base = 30.0 + 0.25 * M * s.local_top_k * s.N * s.hidden / 1.5e7
        return base * (1.0 + penalty) * (1.0 + 0.04 * bump)

    def failure(self, c: KernelConfig) -> tuple[Status, str] | None:
        """Out of resources over the GPU's shared memory; a "compile error" for 256x256
        tiles with 4 warps; None for every other config."""
        smem = (c.BLOCK_SIZE_M + c.BLOCK_SIZE_N) * c.BLOCK_SIZE_K * self.shape.element_size \
            * c.num_stages
        if smem > self.gpu.shared_mem_per_block:
            return (Status.OUT_OF_RESOURCES,
                    f"OutOfResources: shared memory, required: {smem}, hardware limit: "
                    f"{self.gpu.shared_mem_per_block}")
        if c.BLOCK_SIZE_M == 256 and c.BLOCK_SIZE_N == 256 and c.num_warps == 4:
            return Status.COMPILE_ERROR, "CompilationError: synthetic"
        return None
