"""vLLM's default config, the one it runs when it has no tuned file for a layer.

Read from vLLM 0.33.0 ``get_default_config`` (``model_executor/layers/fused_moe/fused_moe.py``)
and its caller ``try_get_optimal_moe_config``, which passes the file-name dtype string of
``_get_config_dtype_str`` (``config.py``) and the layer's ``block_shape``:

* ``fp8_w8a8`` with a ``block_shape`` takes the block-wise branch;
* ``fp8_w8a8`` without one (per-tensor, and per-channel too: ``per_channel_quant`` /
  ``per_act_token_quant`` reach neither the dtype string nor ``block_shape``) takes the
  general branch with ``BLOCK_SIZE_K = 128`` at every M;
* ``int8_w8a16`` without a ``block_shape`` (vLLM's ExpertsInt8, per-channel scales) takes
  the general branch exactly as bf16 does; with a group ``block_shape`` it would take the
  wna16 branch, a partial config for another kernel, which searcher does not tune;
* bf16, fp16 (dtype string None) and fp32 (``"float32"``) take the general branch.

The heuristic of the general branch is vLLM PR #34846. ``VLLM_BATCH_INVARIANT`` replaces
all of this with one fixed config; searcher does not model that mode.
"""

from __future__ import annotations

from searcher.errors import ConfigError
from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.problem import DTYPES

__all__ = ["vllm_default_config"]


def vllm_default_config(
    M: int,
    E: int,
    dtype: str = "bf16",
    block_shape: tuple[int, int] | None = None,
    *,
    rocm: bool = False,
) -> KernelConfig:
    """The config vLLM 0.33.0 ``get_default_config`` picks when it has no tuned file.

    Block-wise fp8 (``dtype = "fp8_w8a8"`` with ``block_shape = (block_n, block_k)``):
        BLOCK_SIZE_M 16 if M <= 64 else 64; BLOCK_SIZE_N 64 if M <= 8 and block_n is a
        multiple of 64 (CUDA only), else block_n; BLOCK_SIZE_K = block_k; GROUP_SIZE_M 1 if
        M <= 16 else 32; 4 warps; num_stages 4 if M <= 4 and BLOCK_SIZE_N took the 64
        branch, else 3 (2 on ROCm, where BLOCK_SIZE_N is always block_n).

    Everything else (bf16, fp16, fp32, per-tensor and per-channel fp8, int8_w8a16):
        BLOCK_SIZE_M 16 if M <= 32, 32 if M <= 96, 64 if M <= 512, else 128;
        BLOCK_SIZE_N 64 if M <= 64 else 128; BLOCK_SIZE_K 128 for fp8_w8a8 at every M,
        else 128 if M <= 64 else 64; GROUP_SIZE_M 16 if M // E > 128 else 1; num_warps 4 if
        M <= 128 else 8; num_stages 4 if M <= 32 else 3 on CUDA, 2 at every M on ROCm.

    Args:
        M: number of tokens in the batch.
        E: number of experts (of this rank: the file's E).
        dtype: searcher's dtype name (:data:`~searcher.kernels.fused_moe.problem.DTYPES`).
        block_shape: ``(block_n, block_k)`` of block-quantized fp8 weights, else None.
        rocm: the ROCm variant.

    Raises:
        ConfigError: M or E is not a positive integer, the dtype is unknown, or a
            block_shape is given with a dtype other than fp8_w8a8 (vLLM's wna16 branch).
    """
    for name, value in (("M", M), ("E", E)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} = {value!r} must be a positive integer")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype = {dtype!r} must be one of: {', '.join(DTYPES)}")
    if block_shape is not None:
        if dtype != "fp8_w8a8":
            raise ConfigError(
                f"block_shape = {list(block_shape)} with dtype = {dtype!r}: vLLM's default "
                "for grouped weights is the wna16 kernel's partial config, not modelled"
            )
        return _block_fp8(M, block_shape, rocm)
    return _general(M, E, dtype == "fp8_w8a8", rocm)


def _block_fp8(M: int, block_shape: tuple[int, int], rocm: bool) -> KernelConfig:
    block_n, block_k = block_shape
    if rocm:
        block_size_n, stages = block_n, 2
    elif M <= 8 and block_n % 64 == 0:
        # At decode a 64-wide N tile gives twice the thread blocks of a 128-wide one.
        block_size_n, stages = 64, 4 if M <= 4 else 3
    else:
        block_size_n, stages = block_n, 3
    return KernelConfig(
        BLOCK_SIZE_M=16 if M <= 64 else 64,
        BLOCK_SIZE_N=block_size_n,
        BLOCK_SIZE_K=block_k,
        GROUP_SIZE_M=1 if M <= 16 else 32,
        num_warps=4,
        num_stages=stages,
    )


def _general(M: int, E: int, fp8: bool, rocm: bool) -> KernelConfig:
    if M <= 32:
        block_m = 16
    elif M <= 96:
        block_m = 32
    elif M <= 512:
        block_m = 64
    else:
        block_m = 128
    if rocm:
        stages = 2
    else:
        stages = 4 if M <= 32 else 3
    return KernelConfig(
        BLOCK_SIZE_M=block_m,
        BLOCK_SIZE_N=64 if M <= 64 else 128,
        BLOCK_SIZE_K=128 if fp8 or M <= 64 else 64,
        GROUP_SIZE_M=16 if M // E > 128 else 1,
        num_warps=4 if M <= 128 else 8,
        num_stages=stages,
    )
