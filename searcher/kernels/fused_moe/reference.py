"""The fused MoE layer in plain torch, in fp32: what the Triton kernels must compute."""

from __future__ import annotations

import torch

__all__ = ["route_reference", "fused_moe_reference"]


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
) -> torch.Tensor:
    """out[t] = sum_k w[t,k] * W2[e] @ (silu(W1g[e] @ x[t]) * W1u[e] @ x[t]), e = ids[t,k].

    Computed in fp32 on whatever device the tensors are on; returns fp32 [M, H].
    """
    weights, ids = route_reference(logits, top_k, renormalize)
    x32, w1_32, w2_32 = x.float(), w1.float(), w2.float()
    N = w2.shape[2]
    out = torch.zeros(x.shape[0], w2.shape[1], dtype=torch.float32, device=x.device)
    for expert in torch.unique(ids).tolist():
        token, slot = torch.nonzero(ids == expert, as_tuple=True)
        h = x32[token] @ w1_32[expert].T  # [rows, 2N]
        act = torch.nn.functional.silu(h[:, :N]) * h[:, N:]
        y = act @ w2_32[expert].T  # [rows, H]
        out.index_add_(0, token, y * weights[token, slot, None])
    return out
