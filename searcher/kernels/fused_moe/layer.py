"""Host side of the built-in fused MoE layer: buffers, launches, compile-ahead.

Everything a CUDA graph replays is preallocated in a :class:`MoEWorkspace`, so one layer
call is a fixed sequence of launches (a memset and eight Triton kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.triton_kernels import (
    _align_offsets_kernel,
    _align_scatter_kernel,
    _grouped_gemm_kernel,
    _naive_assign_kernel,
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
]

TORCH_DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
}

#: vLLM 0.33 skips the alignment and gives each routed row a block of its own when
#: M * top_k * NAIVE_FACTOR <= E. Kept here (see README, "tiny-batch path") because it
#: was measured faster at those sizes on H100/H200; ``naive=False`` turns it off.
NAIVE_FACTOR = 4


def uses_naive_path(M: int, top_k: int, E: int) -> bool:
    """Whether vLLM 0.33 (and the built-in layer, by default) skips alignment."""
    return M * top_k * NAIVE_FACTOR <= E


@dataclass
class MoEInputs:
    """The tensors of one layer problem: activations, router logits and expert weights."""

    shape: Shape
    M: int
    x: torch.Tensor  # [M, H]
    logits: torch.Tensor  # [M, E] fp32
    w1: torch.Tensor  # [E, 2N, H]
    w2: torch.Tensor  # [E, H, N]


def make_inputs(
    shape: Shape,
    M: int,
    device: str | torch.device = "cuda",
    generator: torch.Generator | None = None,
    scale_weights: bool = False,
) -> MoEInputs:
    """Random inputs as vLLM's tuner makes them (``randn``; router logits in fp32).

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
    return MoEInputs(
        shape=shape,
        M=M,
        x=randn(M, H).to(dtype),
        logits=randn(M, E),
        w1=w1.to(dtype),
        w2=w2.to(dtype),
    )


class MoEWorkspace:
    """Preallocated buffers for one (problem, BLOCK_SIZE_M), reusable across calls."""

    def __init__(self, inputs: MoEInputs, block_m: int, naive: bool | None = None) -> None:
        shape, M = inputs.shape, inputs.M
        device = inputs.x.device
        self.block_m = block_m
        self.naive = uses_naive_path(M, shape.top_k, shape.E) if naive is None else naive
        numel = M * shape.top_k
        self.numel = numel
        if self.naive:
            self.max_ids = numel * block_m
            self.max_blocks = numel
        else:
            self.max_ids = numel + shape.E * (block_m - 1)
            self.max_blocks = triton.cdiv(self.max_ids, block_m)
        i32 = dict(dtype=torch.int32, device=device)
        self.topk_weights = torch.empty(M, shape.top_k, dtype=torch.float32, device=device)
        self.topk_ids = torch.empty(M, shape.top_k, **i32)
        self.counts = torch.zeros(shape.E, **i32)
        self.cursor = torch.empty(shape.E, **i32)
        self.sorted_ids = torch.empty(1 if self.naive else self.max_ids, **i32)
        self.expert_ids = torch.empty(self.max_blocks, **i32)
        self.num_post_padded = torch.empty(1, **i32)
        dtype = inputs.x.dtype
        self.gate_up = torch.empty(numel, 2 * shape.N, dtype=dtype, device=device)
        self.act = torch.empty(numel, shape.N, dtype=dtype, device=device)
        self.down = torch.empty(M, shape.top_k, shape.hidden, dtype=dtype, device=device)
        self.out = torch.empty(M, shape.hidden, dtype=dtype, device=device)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, n))


def _route(inputs: MoEInputs, logits: torch.Tensor, ws: MoEWorkspace, renormalize: bool) -> None:
    shape, M = inputs.shape, inputs.M
    block_e = _pow2(shape.E)
    block_t = max(1, min(16, 4096 // block_e))
    count = not ws.naive
    if count:
        ws.counts.zero_()
    _topk_softmax_kernel[(triton.cdiv(M, block_t),)](
        logits, ws.topk_weights, ws.topk_ids, ws.counts, M, shape.E, logits.stride(0),
        TOP_K=shape.top_k, TOP_K_P2=_pow2(shape.top_k), BLOCK_E=block_e, BLOCK_T=block_t,
        RENORMALIZE=renormalize, COUNT=count,
    )
    if ws.naive:
        _naive_assign_kernel[(triton.cdiv(ws.numel, 1024),)](
            ws.topk_ids, ws.expert_ids, ws.num_post_padded, ws.numel, ws.block_m, BLOCK=1024,
        )
        return
    _align_offsets_kernel[(1,)](
        ws.counts, ws.cursor, ws.sorted_ids, ws.expert_ids, ws.num_post_padded,
        shape.E, ws.numel, ws.max_ids, ws.max_blocks, ws.block_m,
        BLOCK_E=block_e, BLOCK=1024, BLOCK_B=max(16, 8192 // block_e),
    )
    _align_scatter_kernel[(triton.cdiv(ws.numel, 256),)](
        ws.topk_ids, ws.cursor, ws.sorted_ids, ws.numel, BLOCK=256,
    )


def _gemm(
    a: torch.Tensor, w: torch.Tensor, c: torch.Tensor, ws: MoEWorkspace, config: KernelConfig,
    a_row_div: int, mul_routed_weight: bool, warmup: bool = False,
):
    n_out, k = w.shape[1], w.shape[2]
    em = ws.max_ids
    grid = (triton.cdiv(em, config.BLOCK_SIZE_M) * triton.cdiv(n_out, config.BLOCK_SIZE_N),)
    args = (
        a, w, c, ws.topk_weights, ws.sorted_ids, ws.expert_ids, ws.num_post_padded,
        n_out, k, em, ws.numel,
        a.stride(0), a.stride(1), w.stride(0), w.stride(2), w.stride(1), c.stride(0), c.stride(1),
    )
    meta = dict(
        A_ROW_DIV=a_row_div, MUL_ROUTED_WEIGHT=mul_routed_weight, NAIVE=ws.naive,
        BLOCK_SIZE_M=config.BLOCK_SIZE_M, BLOCK_SIZE_N=config.BLOCK_SIZE_N,
        BLOCK_SIZE_K=config.BLOCK_SIZE_K, GROUP_SIZE_M=config.GROUP_SIZE_M,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    if warmup:
        return _grouped_gemm_kernel.warmup(*args, grid=grid, **meta)
    return _grouped_gemm_kernel[grid](*args, **meta)


def fused_moe(
    inputs: MoEInputs,
    config: KernelConfig,
    workspace: MoEWorkspace | None = None,
    logits: torch.Tensor | None = None,
    renormalize: bool = True,
) -> torch.Tensor:
    """Run the whole layer once and return the [M, H] output (a workspace buffer).

    Args:
        inputs: the problem's tensors.
        config: the launch config of both GEMMs; its BLOCK_SIZE_M drives alignment.
        workspace: buffers from a previous call with the same BLOCK_SIZE_M, or None.
        logits: router logits to use instead of ``inputs.logits`` (same shape).
        renormalize: renormalise the top-k weights to sum to one, as vLLM's tuner does.
    """
    ws = workspace or MoEWorkspace(inputs, config.BLOCK_SIZE_M)
    if ws.block_m != config.BLOCK_SIZE_M:
        raise ValueError(f"workspace built for BLOCK_SIZE_M={ws.block_m}, config has {config}")
    shape = inputs.shape
    _route(inputs, inputs.logits if logits is None else logits, ws, renormalize)
    _gemm(inputs.x, inputs.w1, ws.gate_up, ws, config, a_row_div=shape.top_k,
          mul_routed_weight=False)
    block = min(1024, _pow2(shape.N))
    _silu_and_mul_kernel[(ws.numel, triton.cdiv(shape.N, block))](
        ws.gate_up, ws.act, shape.N, ws.gate_up.stride(0), ws.act.stride(0), BLOCK=block,
    )
    down = ws.down.view(ws.numel, shape.hidden)
    _gemm(ws.act, inputs.w2, down, ws, config, a_row_div=1, mul_routed_weight=True)
    block = min(1024, _pow2(shape.hidden))
    _sum_topk_kernel[(inputs.M, triton.cdiv(shape.hidden, block))](
        ws.down, ws.out, shape.hidden, ws.down.stride(0), ws.down.stride(1), ws.out.stride(0),
        TOP_K=shape.top_k, BLOCK=block,
    )
    return ws.out


def compile_config(inputs: MoEInputs, config: KernelConfig, workspace: MoEWorkspace) -> None:
    """Compile both GEMM variants of a config without launching them (thread-safe enough
    to run on a CPU thread while the GPU measures another config).

    Compile errors propagate; resource limits (shared memory) surface at the first launch.
    """
    shape = inputs.shape
    _gemm(inputs.x, inputs.w1, workspace.gate_up, workspace, config, shape.top_k, False, warmup=True)
    down = workspace.down.view(workspace.numel, shape.hidden)
    _gemm(workspace.act, inputs.w2, down, workspace, config, 1, True, warmup=True)
