"""The fused MoE layer in plain torch, in fp32: what the Triton kernels must compute.

For quantized problems the reference dequantizes the weights (weight x scale, per expert,
output row or [block_n, block_k] tile) and computes in fp32. Activations are quantized as
vLLM 0.33.0 does before each fp8 GEMM (``moe_kernel_quantize_input``): a static scale for
the tensor, or a dynamic one per token or per token per block_k columns (amax / 448, the
amax floored at 1e-10). :func:`layer_reference` can instead take the activations the kernel
quantized (its workspace's buffers), so that the reference dequantizes exactly what the
kernel quantized; :func:`quantize_activations` is then checked against the kernel's
quantization separately.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.fused_moe.layer import MoEInputs, MoEWorkspace
    from searcher.kernels.fused_moe.problem import Shape

__all__ = [
    "route_reference",
    "fused_moe_reference",
    "dequantize_weights",
    "quantize_activations",
    "dequantize_activations",
    "static_activation_scales",
    "layer_reference",
]

FP8_MAX = 448.0


def route_reference(logits: torch.Tensor, top_k: int, renormalize: bool = True):
    """Softmax over experts, top-k, optional renormalisation; fp32 weights, int64 ids."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, ids = torch.topk(probs, top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids


def fused_moe_reference(
    x: torch.Tensor,
    logits: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    top_k: int,
    renormalize: bool = True,
    act: torch.Tensor | None = None,
    quantize_act=None,
) -> torch.Tensor:
    """out[t] = sum_k w[t,k] * W2[e] @ (silu(W1g[e] @ x[t]) * W1u[e] @ x[t]), e = ids[t,k].

    Computed in fp32 on whatever device the tensors are on; returns fp32 [M, H].

    Args:
        x, w1, w2: hidden states [M, H] and weights [E, 2N, H], [E, H, N], any float dtype
            (dequantized already for quantized problems).
        act: the GEMM2 inputs [M*top_k, N] (row = token*top_k + slot) to use instead of
            computing them, e.g. the kernel's own quantized activations, dequantized.
        quantize_act: a function [rows, N] fp32 -> fp32 applied to the computed GEMM2
            inputs (fake quantization), when ``act`` is not given.
    """
    weights, ids = route_reference(logits, top_k, renormalize)
    x32, w1_32, w2_32 = x.float(), w1.float(), w2.float()
    N = w2.shape[2]
    flat_act = torch.empty(x.shape[0] * top_k, N, dtype=torch.float32, device=x.device)
    local = w1.shape[0]  # expert parallelism: ids >= local are other ranks' (skipped)
    flat_act.zero_()
    for expert in torch.unique(ids).tolist():
        if expert >= local:
            continue
        token, slot = torch.nonzero(ids == expert, as_tuple=True)
        h = x32[token] @ w1_32[expert].T  # [rows, 2N]
        flat_act[token * top_k + slot] = torch.nn.functional.silu(h[:, :N]) * h[:, N:]
    if act is not None:
        flat_act = act.float()
    elif quantize_act is not None:
        flat_act = quantize_act(flat_act)
    out = torch.zeros(x.shape[0], w2.shape[1], dtype=torch.float32, device=x.device)
    for expert in torch.unique(ids).tolist():
        if expert >= local:
            continue
        token, slot = torch.nonzero(ids == expert, as_tuple=True)
        y = flat_act[token * top_k + slot] @ w2_32[expert].T  # [rows, H]
        out.index_add_(0, token, y * weights[token, slot, None])
    return out


def dequantize_weights(w: torch.Tensor, scale: torch.Tensor | None, shape: Shape) -> torch.Tensor:
    """fp32 weights [E, n_out, k] from quantized ones and their scales (see MoEInputs)."""
    w32 = w.float()
    if scale is None:
        return w32
    if scale.dim() == 1:  # per-tensor: one scale per expert
        return w32 * scale[:, None, None]
    if scale.dim() == 2:  # per-channel: one per output row
        return w32 * scale[:, :, None]
    bn, bk = shape.block_shape  # type: ignore[misc]
    n_out, k = w.shape[1], w.shape[2]
    full = scale.repeat_interleave(bn, 1).repeat_interleave(bk, 2)[:, :n_out, :k]
    return w32 * full


def quantize_activations(x: torch.Tensor, shape: Shape, static_scale: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8 activations [rows, K] and their fp32 scales, as vLLM 0.33.0 quantizes them:
    per-tensor with ``static_scale`` [1]; per-channel problems per token ([rows, 1]);
    block-wise per token per block_k columns ([rows, cdiv(K, block_k)])."""
    x32 = x.float()
    rows, K = x32.shape
    if shape.scheme == "per_tensor":
        if static_scale is None:
            raise ValueError("per-tensor fp8 activations need a static scale")
        scale = static_scale.float()
        q = (x32 / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
        return q, scale
    if shape.scheme == "per_channel":
        scale = x32.abs().amax(dim=1, keepdim=True).clamp_min(1e-10) / FP8_MAX
        return (x32 / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale
    group = shape.block_shape[1]  # type: ignore[index]
    groups = -(-K // group)
    padded = torch.zeros(rows, groups * group, dtype=torch.float32, device=x.device)
    padded[:, :K] = x32
    scale = padded.view(rows, groups, group).abs().amax(dim=2).clamp_min(1e-10) / FP8_MAX
    full = scale.repeat_interleave(group, 1)[:, :K]
    return (x32 / full).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale


def dequantize_activations(q: torch.Tensor, scale: torch.Tensor, shape: Shape) -> torch.Tensor:
    """fp32 activations from :func:`quantize_activations`' output (or the kernel's)."""
    q32 = q.float()
    if shape.scheme == "block":
        group = shape.block_shape[1]  # type: ignore[index]
        return q32 * scale.repeat_interleave(group, 1)[:, : q.shape[1]]
    return q32 * scale


def static_activation_scales(inputs: MoEInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor fp8's static activation scales [1] for GEMM1 and GEMM2, calibrated on
    this batch as a checkpoint's are on data: amax / 448 of x and of the fp32 reference's
    SiLU-and-mul output (with the dequantized weights)."""
    shape = inputs.shape
    a1 = (inputs.x.float().abs().amax().clamp_min(1e-10) / FP8_MAX).reshape(1)
    amax = torch.zeros((), device=inputs.x.device)

    def record(act: torch.Tensor) -> torch.Tensor:
        amax.copy_(act.abs().amax())
        return act

    x_q, _ = quantize_activations(inputs.x, shape, a1)
    fused_moe_reference(
        dequantize_activations(x_q, a1, shape), inputs.logits,
        dequantize_weights(inputs.w1, inputs.w1_scale, shape),
        dequantize_weights(inputs.w2, inputs.w2_scale, shape), shape.top_k,
        quantize_act=record,
    )
    return a1, (amax.clamp_min(1e-10) / FP8_MAX).reshape(1)


def layer_reference(inputs: MoEInputs, workspace: MoEWorkspace | None = None) -> torch.Tensor:
    """The fp32 reference output [M, H] of the layer ``inputs`` describe.

    Args:
        workspace: for fp8_w8a8, a workspace the kernel just ran in: the reference then
            uses the activations the kernel quantized (x and the GEMM2 inputs, dequantized
            with the kernel's scales). Without it, activations are quantized here with
            :func:`quantize_activations`.
    """
    shape = inputs.shape
    w1 = dequantize_weights(inputs.w1, inputs.w1_scale, shape)
    w2 = dequantize_weights(inputs.w2, inputs.w2_scale, shape)
    if shape.dtype != "fp8_w8a8":
        return fused_moe_reference(inputs.x, inputs.logits, w1, w2, shape.top_k)
    if workspace is not None:
        x = dequantize_activations(workspace.x_q, workspace.x_scale, shape)
        act = dequantize_activations(workspace.act_q, workspace.act_scale, shape)
        return fused_moe_reference(x, inputs.logits, w1, w2, shape.top_k, act=act)
    x_q, x_scale = quantize_activations(inputs.x, shape, inputs.a1_scale)

    def fake_quant(act: torch.Tensor) -> torch.Tensor:
        q, scale = quantize_activations(act, shape, inputs.a2_scale)
        return dequantize_activations(q, scale, shape)

    return fused_moe_reference(dequantize_activations(x_q, x_scale, shape), inputs.logits,
                               w1, w2, shape.top_k, quantize_act=fake_quant)
