"""vLLM's default config heuristic, used when no tuned file exists (vLLM PR #34846)."""

from __future__ import annotations

from searcher.kernels.fused_moe.config import KernelConfig

__all__ = ["vllm_default_config"]


def vllm_default_config(M: int, E: int, rocm: bool = False) -> KernelConfig:
    """The config vLLM 0.33 picks for bf16/fp16 when it has no tuned file.

    Args:
        M: number of tokens in the batch.
        E: number of experts.
        rocm: use the ROCm variant (num_stages 2 instead of 3 for M > 32).
    """
    if M <= 32:
        block_m = 16
    elif M <= 96:
        block_m = 32
    elif M <= 512:
        block_m = 64
    else:
        block_m = 128
    return KernelConfig(
        BLOCK_SIZE_M=block_m,
        BLOCK_SIZE_N=64 if M <= 64 else 128,
        BLOCK_SIZE_K=128 if M <= 64 else 64,
        GROUP_SIZE_M=16 if M // E > 128 else 1,
        num_warps=4 if M <= 128 else 8,
        num_stages=4 if M <= 32 else (2 if rocm else 3),
    )
