"""Host side of the built-in fused MoE layer: buffers, launches, compile-ahead.

Everything a CUDA graph replays is preallocated in a :class:`MoEWorkspace`, so one layer
call is a fixed sequence of launches (a memset and eight Triton kernels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.triton_kernels import (
    ACT_PER_GROUP,
    ACT_PER_TENSOR,
    ACT_PER_TOKEN,
    FP8_MAX,
    QUANT_FP8_BLOCK,
    QUANT_FP8_CHANNEL,
    QUANT_FP8_TENSOR,
    QUANT_INT8_W8A16,
    QUANT_NONE,
    _align_offsets_kernel,
    _align_scatter_kernel,
    _grouped_gemm_kernel,
    _naive_assign_kernel,
    _quantize_fp8_kernel,
    _silu_and_mul_kernel,
    _sum_topk_kernel,
    _topk_softmax_kernel,
)
from searcher.kernels.fused_moe.problem import Shape

__all__ = [
    "TORCH_DTYPES",
    "MoEInputs",
    "MoEWorkspace",
    "fused_moe",
    "uses_naive_path",
    "make_inputs",
    "compile_config",
    "quantize_weights",
    "uses_swap_ab",
]

#: dtype of the hidden states (the layer's input and output) per problem dtype.
TORCH_DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
    "fp8_w8a8": torch.bfloat16,
    "int8_w8a16": torch.bfloat16,
}
#: dtype of the stored expert weights per problem dtype.
WEIGHT_DTYPES: dict[str, torch.dtype] = {
    **TORCH_DTYPES, "fp8_w8a8": torch.float8_e4m3fn, "int8_w8a16": torch.int8,
}
_QUANT_MODES = {"none": QUANT_NONE, "per_tensor": QUANT_FP8_TENSOR,
                "per_channel": QUANT_FP8_CHANNEL, "block": QUANT_FP8_BLOCK}
INT8_MAX = 127.0

#: vLLM 0.33 skips the alignment and gives each routed row a block of its own when
#: M * top_k * NAIVE_FACTOR <= E. Kept here (see README, "tiny-batch path") because it
#: was measured faster at those sizes on H100/H200; ``naive=False`` turns it off.
NAIVE_FACTOR = 4


def uses_naive_path(M: int, top_k: int, E: int) -> bool:
    """Whether vLLM 0.33 (and the built-in layer, by default) skips alignment."""
    return M * top_k * NAIVE_FACTOR <= E


def uses_swap_ab(shape: Shape, config: KernelConfig, capability: tuple[int, int] | None) -> bool:
    """Whether vLLM 0.33.0 computes the GEMM tiles with swapped operands: fp8_w8a8 on
    compute capability 9.0 with BLOCK_SIZE_M < 64 and BLOCK_SIZE_N >= 64
    (``enable_swap_ab`` in vLLM's fused_moe/utils.py)."""
    return (shape.dtype == "fp8_w8a8" and capability == (9, 0)
            and config.BLOCK_SIZE_M < 64 and config.BLOCK_SIZE_N >= 64)


def _quant_mode(shape: Shape) -> int:
    if shape.dtype == "int8_w8a16":
        return QUANT_INT8_W8A16
    return _QUANT_MODES[shape.scheme]


@dataclass
class MoEInputs:
    """The tensors of one layer problem: activations, router logits and expert weights.

    Unquantized: ``w1`` [E, 2N, H] and ``w2`` [E, H, N] in the problem's dtype, no scales.
    fp8_w8a8: e4m3 weights; ``w1_scale``/``w2_scale`` fp32 [E] (per-tensor), [E, 2N] /
    [E, H] (per-channel), or [E, cdiv(2N, block_n), cdiv(H, block_k)] /
    [E, cdiv(H, block_n), cdiv(N, block_k)] (block-wise); per-tensor also has the static
    activation scales ``a1_scale``/``a2_scale`` fp32 [1]. int8_w8a16: int8 weights with
    per-channel scales [E, 2N] / [E, H]. ``x`` is bf16 for every quantized dtype.
    Dequantized weight = weight * scale (broadcast over its row, or its block).
    """

    shape: Shape
    M: int
    x: torch.Tensor  # [M, H]
    logits: torch.Tensor  # [M, E] fp32
    w1: torch.Tensor  # [E, 2N, H]
    w2: torch.Tensor  # [E, H, N]
    w1_scale: torch.Tensor | None = None
    w2_scale: torch.Tensor | None = None
    a1_scale: torch.Tensor | None = None
    a2_scale: torch.Tensor | None = None


def quantize_weights(w: torch.Tensor, shape: Shape) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Quantize fp32 expert weights [E, n_out, k] the way the problem's checkpoint holds
    them: scale = amax / 448 (fp8) or amax / 127 (int8) over the expert, each output row,
    or each [block_n, block_k] tile; returns (quantized weights, fp32 scales) or
    (weights in the problem's dtype, None) when unquantized.
    """
    scheme = shape.scheme
    if not shape.quantized:
        return w.to(WEIGHT_DTYPES[shape.dtype]), None
    E, n_out, k = w.shape
    if scheme == "block":
        bn, bk = shape.block_shape  # type: ignore[misc]
        tiles_n, tiles_k = triton.cdiv(n_out, bn), triton.cdiv(k, bk)
        padded = torch.zeros(E, tiles_n * bn, tiles_k * bk, dtype=w.dtype, device=w.device)
        padded[:, :n_out, :k] = w
        amax = padded.view(E, tiles_n, bn, tiles_k, bk).abs().amax(dim=(2, 4))
        scale = amax.clamp_min(1e-10) / FP8_MAX
        full = scale.repeat_interleave(bn, 1).repeat_interleave(bk, 2)[:, :n_out, :k]
        return (w / full).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale
    if scheme == "per_tensor":
        scale = w.abs().amax(dim=(1, 2)).clamp_min(1e-10) / FP8_MAX  # [E]
        return (w / scale[:, None, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale
    if shape.dtype == "int8_w8a16":
        scale = w.abs().amax(dim=2).clamp_min(1e-10) / INT8_MAX  # [E, n_out]
        q = torch.round(w / scale[:, :, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
        return q, scale
    scale = w.abs().amax(dim=2).clamp_min(1e-10) / FP8_MAX  # per-channel fp8, [E, n_out]
    return (w / scale[:, :, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale


def make_inputs(
    shape: Shape,
    M: int,
    device: str | torch.device = "cuda",
    generator: torch.Generator | None = None,
    scale_weights: bool = False,
) -> MoEInputs:
    """Random inputs as vLLM's tuner makes them (``randn``; router logits in fp32).

    Quantized weights are ``randn`` values quantized with :func:`quantize_weights`;
    per-tensor fp8's static activation scales are calibrated from this batch with
    :func:`~searcher.kernels.fused_moe.reference.static_activation_scales`.

    Args:
        scale_weights: divide weights by sqrt of their fan-in, for correctness checks
            where the plain ``randn`` magnitudes (~1e5 at the output) are awkward.
    """
    dtype = TORCH_DTYPES[shape.dtype]
    E, N, H = shape.E, shape.N, shape.hidden

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator, device=device, dtype=torch.float32)

    w1 = randn(E, 2 * N, H)
    w2 = randn(E, H, N)
    if scale_weights:
        w1 /= H**0.5
        w2 /= N**0.5
    w1q, w1_scale = quantize_weights(w1, shape)
    del w1
    w2q, w2_scale = quantize_weights(w2, shape)
    del w2
    inputs = MoEInputs(shape=shape, M=M, x=randn(M, H).to(dtype), logits=randn(M, shape.routed_experts),
                       w1=w1q, w2=w2q, w1_scale=w1_scale, w2_scale=w2_scale)
    if shape.scheme == "per_tensor":
        from searcher.kernels.fused_moe.reference import static_activation_scales

        inputs.a1_scale, inputs.a2_scale = static_activation_scales(inputs)
    return inputs


class MoEWorkspace:
    """Preallocated buffers for one (problem, BLOCK_SIZE_M), reusable across calls.

    Args:
        swap_ab: compute fp8 tiles with swapped operands; None decides by vLLM's rule on
            the current GPU (:func:`uses_swap_ab`), per config at launch.
    """

    def __init__(self, inputs: MoEInputs, block_m: int, naive: bool | None = None,
                 swap_ab: bool | None = None) -> None:
        shape, M = inputs.shape, inputs.M
        device = inputs.x.device
        self.block_m = block_m
        self.naive = uses_naive_path(M, shape.top_k, shape.routed_experts) if naive is None else naive
        self.swap_ab = swap_ab
        self.capability = (torch.cuda.get_device_capability(device)
                           if device.type == "cuda" else None)
        numel = M * shape.top_k
        self.numel = numel
        if self.naive:
            self.max_ids = numel * block_m
            self.max_blocks = numel
        else:
            self.max_ids = numel + shape.routed_experts * (block_m - 1)
            self.max_blocks = triton.cdiv(self.max_ids, block_m)
        i32 = dict(dtype=torch.int32, device=device)
        f32 = dict(dtype=torch.float32, device=device)
        self.topk_weights = torch.empty(M, shape.top_k, **f32)
        self.topk_ids = torch.empty(M, shape.top_k, **i32)
        self.counts = torch.zeros(shape.routed_experts, **i32)
        self.cursor = torch.empty(shape.routed_experts, **i32)
        self.sorted_ids = torch.empty(1 if self.naive else self.max_ids, **i32)
        self.expert_ids = torch.empty(self.max_blocks, **i32)
        self.num_post_padded = torch.empty(1, **i32)
        dtype = inputs.x.dtype
        self.gate_up = torch.empty(numel, 2 * shape.N, dtype=dtype, device=device)
        self.act = torch.empty(numel, shape.N, dtype=dtype, device=device)
        self.down = torch.empty(M, shape.top_k, shape.hidden, dtype=dtype, device=device)
        self.out = torch.empty(M, shape.hidden, dtype=dtype, device=device)
        # fp8_w8a8: the GEMM inputs quantized inside the layer, and their scales.
        self.x_q = self.x_scale = self.act_q = self.act_scale = None
        if shape.dtype == "fp8_w8a8":
            fp8 = dict(dtype=torch.float8_e4m3fn, device=device)
            self.x_q = torch.empty(M, shape.hidden, **fp8)
            self.act_q = torch.empty(numel, shape.N, **fp8)
            if shape.scheme == "per_tensor":
                self.x_scale, self.act_scale = inputs.a1_scale, inputs.a2_scale
            elif shape.scheme == "per_channel":
                self.x_scale = torch.empty(M, 1, **f32)
                self.act_scale = torch.empty(numel, 1, **f32)
            else:
                block_k = shape.block_shape[1]  # type: ignore[index]
                self.x_scale = torch.empty(M, triton.cdiv(shape.hidden, block_k), **f32)
                self.act_scale = torch.empty(numel, triton.cdiv(shape.N, block_k), **f32)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, n))


def _launch(kernel: Any, grid: tuple[int, ...], *args: Any, warmup: bool = False,
            **meta: Any) -> Any:
    """Launch ``kernel``, or with ``warmup`` only compile it for these arguments (Triton
    specializes integer arguments, e.g. on divisibility by 16, so each batch size and
    BLOCK_SIZE_M may need its own compile of a helper kernel)."""
    if warmup:
        return kernel.warmup(*args, grid=grid, **meta)
    return kernel[grid](*args, **meta)


def _route(inputs: MoEInputs, logits: torch.Tensor, ws: MoEWorkspace, renormalize: bool,
           warmup: bool = False) -> None:
    shape, M = inputs.shape, inputs.M
    # Routing and alignment run over all ranks' experts (E * ep), as vLLM's do under
    # expert parallelism; blocks of other ranks' experts then get expert id -1.
    routed = shape.routed_experts
    block_e = _pow2(routed)
    block_t = max(1, min(16, 4096 // block_e))
    count = not ws.naive
    if count and not warmup:
        ws.counts.zero_()
    _launch(_topk_softmax_kernel, (triton.cdiv(M, block_t),),
            logits, ws.topk_weights, ws.topk_ids, ws.counts, M, routed, logits.stride(0),
            TOP_K=shape.top_k, TOP_K_P2=_pow2(shape.top_k), BLOCK_E=block_e, BLOCK_T=block_t,
            RENORMALIZE=renormalize, COUNT=count, warmup=warmup)
    if ws.naive:
        _launch(_naive_assign_kernel, (triton.cdiv(ws.numel, 1024),),
                ws.topk_ids, ws.expert_ids, ws.num_post_padded, ws.numel, ws.block_m,
                BLOCK=1024, warmup=warmup)
    else:
        _launch(_align_offsets_kernel, (1,),
                ws.counts, ws.cursor, ws.sorted_ids, ws.expert_ids, ws.num_post_padded,
                routed, ws.numel, ws.max_ids, ws.max_blocks, ws.block_m,
                BLOCK_E=block_e, BLOCK=1024, BLOCK_B=max(16, 8192 // block_e), warmup=warmup)
        _launch(_align_scatter_kernel, (triton.cdiv(ws.numel, 256),),
                ws.topk_ids, ws.cursor, ws.sorted_ids, ws.numel, BLOCK=256, warmup=warmup)
    if not warmup:
        _drop_remote_experts(shape, ws)


def _drop_remote_experts(shape: Shape, ws: MoEWorkspace) -> None:
    """Expert parallelism: this rank holds experts 0..E-1; blocks of the others get -1,
    which the GEMM turns into zero rows (vLLM maps ids through its ``expert_map``)."""
    if shape.ep > 1:
        ws.expert_ids.masked_fill_(ws.expert_ids >= shape.E, -1)


def _quantize(shape: Shape, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor,
              warmup: bool = False) -> None:
    """Quantize activations [rows, K] to fp8 into ``q``, as the problem's scheme does."""
    rows, K = x.shape
    if shape.scheme == "block":
        group = shape.block_shape[1]  # type: ignore[index]
        mode, grid = ACT_PER_GROUP, (rows, triton.cdiv(K, group))
    elif shape.scheme == "per_channel":
        group = min(1024, _pow2(K))
        mode, grid = ACT_PER_TOKEN, (rows, 1)
    else:
        group = min(1024, _pow2(K))
        mode, grid = ACT_PER_TENSOR, (rows, triton.cdiv(K, group))
    stride_sm = scale.stride(0) if scale.dim() == 2 else 0
    stride_sk = scale.stride(1) if scale.dim() == 2 else 0
    _launch(_quantize_fp8_kernel, grid,
            x, q, scale, K, x.stride(0), q.stride(0), stride_sm, stride_sk,
            MODE=mode, GROUP=group, FP8_MAX=FP8_MAX, warmup=warmup)


def _gemm(
    a: torch.Tensor, w: torch.Tensor, c: torch.Tensor, ws: MoEWorkspace, config: KernelConfig,
    shape: Shape, a_scale: torch.Tensor | None, w_scale: torch.Tensor | None,
    a_row_div: int, mul_routed_weight: bool, warmup: bool = False,
):
    n_out, k = w.shape[1], w.shape[2]
    em = ws.max_ids
    block_k = config.BLOCK_SIZE_K
    group_n = group_k = 0
    if shape.block_shape is not None:
        group_n, group_k = shape.block_shape
        # vLLM clamps the K tile to the quantization block so that each K step has one
        # scale per row and column (invoke_fused_moe_triton_kernel).
        block_k = min(block_k, group_n, group_k)
    swap_ab = ws.swap_ab
    if swap_ab is None:
        swap_ab = uses_swap_ab(shape, config, ws.capability)
    grid = (triton.cdiv(em, config.BLOCK_SIZE_M) * triton.cdiv(n_out, config.BLOCK_SIZE_N),)
    # Unused scale pointers get a valid tensor; the kernel never reads them.
    a_s = a_scale if a_scale is not None else ws.topk_weights
    w_s = w_scale if w_scale is not None else ws.topk_weights
    stride_asm = a_s.stride(0) if a_scale is not None and a_s.dim() == 2 else 0
    stride_ask = a_s.stride(1) if a_scale is not None and a_s.dim() == 2 else 0
    stride_bse = w_s.stride(0) if w_scale is not None else 0
    stride_bsn = w_s.stride(1) if w_scale is not None and w_s.dim() >= 2 else 0
    stride_bsk = w_s.stride(2) if w_scale is not None and w_s.dim() == 3 else 0
    args = (
        a, w, c, a_s, w_s, ws.topk_weights, ws.sorted_ids, ws.expert_ids, ws.num_post_padded,
        n_out, k, em, ws.numel,
        a.stride(0), a.stride(1), w.stride(0), w.stride(2), w.stride(1), c.stride(0), c.stride(1),
        stride_asm, stride_ask, stride_bse, stride_bsk, stride_bsn,
    )
    meta = dict(
        A_ROW_DIV=a_row_div, MUL_ROUTED_WEIGHT=mul_routed_weight, NAIVE=ws.naive,
        QUANT=_quant_mode(shape), GROUP_N=group_n, GROUP_K=group_k, SWAP_AB=swap_ab,
        BLOCK_SIZE_M=config.BLOCK_SIZE_M, BLOCK_SIZE_N=config.BLOCK_SIZE_N,
        BLOCK_SIZE_K=block_k, GROUP_SIZE_M=config.GROUP_SIZE_M,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return _launch(_grouped_gemm_kernel, grid, *args, warmup=warmup, **meta)


def _gemm1(inputs: MoEInputs, ws: MoEWorkspace, config: KernelConfig, warmup: bool = False):
    a = ws.x_q if ws.x_q is not None else inputs.x
    return _gemm(a, inputs.w1, ws.gate_up, ws, config, inputs.shape, ws.x_scale,
                 inputs.w1_scale, a_row_div=inputs.shape.top_k, mul_routed_weight=False,
                 warmup=warmup)


def _gemm2(inputs: MoEInputs, ws: MoEWorkspace, config: KernelConfig, warmup: bool = False):
    a = ws.act_q if ws.act_q is not None else ws.act
    down = ws.down.view(ws.numel, inputs.shape.hidden)
    return _gemm(a, inputs.w2, down, ws, config, inputs.shape, ws.act_scale, inputs.w2_scale,
                 a_row_div=1, mul_routed_weight=True, warmup=warmup)


def fused_moe(
    inputs: MoEInputs,
    config: KernelConfig,
    workspace: MoEWorkspace | None = None,
    logits: torch.Tensor | None = None,
    renormalize: bool = True,
) -> torch.Tensor:
    """Run the whole layer once and return the [M, H] output (a workspace buffer).

    fp8_w8a8 quantizes the GEMM inputs (x, then the SiLU-and-mul output) to e4m3 inside
    the layer, as vLLM 0.33.0 does, so that step is part of the layer and its timing.

    Args:
        inputs: the problem's tensors.
        config: the launch config of both GEMMs; its BLOCK_SIZE_M drives alignment.
        workspace: buffers from a previous call with the same BLOCK_SIZE_M, or None.
        logits: router logits to use instead of ``inputs.logits`` (same shape).
        renormalize: renormalise the top-k weights to sum to one, as vLLM's tuner does.
    """
    ws = workspace or MoEWorkspace(inputs, config.BLOCK_SIZE_M)
    _layer(inputs, config, ws, inputs.logits if logits is None else logits, renormalize)
    return ws.out


def _layer(inputs: MoEInputs, config: KernelConfig, ws: MoEWorkspace, logits: torch.Tensor,
           renormalize: bool, warmup: bool = False) -> None:
    """The layer's launches in order (see :func:`fused_moe`); with ``warmup``, each kernel
    is only compiled for the arguments it would get."""
    if ws.block_m != config.BLOCK_SIZE_M:
        raise ValueError(f"workspace built for BLOCK_SIZE_M={ws.block_m}, config has {config}")
    shape = inputs.shape
    _route(inputs, logits, ws, renormalize, warmup=warmup)
    if ws.x_q is not None:
        _quantize(shape, inputs.x, ws.x_q, ws.x_scale, warmup=warmup)
    _gemm1(inputs, ws, config, warmup=warmup)
    block = min(1024, _pow2(shape.N))
    _launch(_silu_and_mul_kernel, (ws.numel, triton.cdiv(shape.N, block)),
            ws.gate_up, ws.act, shape.N, ws.gate_up.stride(0), ws.act.stride(0), BLOCK=block,
            warmup=warmup)
    if ws.act_q is not None:
        _quantize(shape, ws.act, ws.act_q, ws.act_scale, warmup=warmup)
    _gemm2(inputs, ws, config, warmup=warmup)
    block = min(1024, _pow2(shape.hidden))
    _launch(_sum_topk_kernel, (inputs.M, triton.cdiv(shape.hidden, block)),
            ws.down, ws.out, shape.hidden, ws.down.stride(0), ws.down.stride(1),
            ws.out.stride(0), TOP_K=shape.top_k, BLOCK=block, warmup=warmup)


def compile_config(inputs: MoEInputs, config: KernelConfig, workspace: MoEWorkspace,
                   renormalize: bool = True) -> None:
    """Compile every kernel the layer launches for a config, without launching any
    (thread-safe enough to run on a CPU thread while the GPU measures another config):
    both GEMM variants and the helpers (routing, alignment, SiLU-and-mul, quantization,
    the top-k sum), which Triton compiles again where an integer argument's
    specialization changes (e.g. divisibility by 16 of the padded row count, which
    depends on BLOCK_SIZE_M). Compiling only the GEMMs left the helpers to the first
    launch: on a cold Triton cache, up to 0.5 s inside a trial's measurement on the H200
    (issue #13).

    Compile errors propagate; resource limits (shared memory) surface at the first launch.
    """
    _layer(inputs, config, workspace, inputs.logits, renormalize, warmup=True)
