"""The built-in fused MoE kernels against the fp32 torch reference, in Triton's interpreter.

Each test draws random inputs from a seed fixed per test (``SEARCHER_TEST_SEED`` shifts it; the
seed is in the failure message), poisons every
output buffer with NaN first, and draws configs from vLLM's 1,920-config CUDA space.
bf16 is left to the GPU check (``benchmarks/check_kernel.py``): the interpreter's bf16
``tl.dot`` is broken.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.default import vllm_default_config
from searcher.kernels.fused_moe.layer import (
    MoEWorkspace,
    fused_moe,
    make_inputs,
    uses_naive_path,
)
from searcher.kernels.fused_moe.reference import fused_moe_reference, route_reference
from searcher.kernels.fused_moe.problem import Shape

# vLLM's benchmark_moe.py CUDA space (1,920 configs).
SPACE_1920 = [
    KernelConfig(*values)
    for values in itertools.product(
        [16, 32, 64, 128, 256], [32, 64, 128, 256], [64, 128, 256], [1, 16, 32, 64], [4, 8],
        [2, 3, 4, 5],
    )
]
TOL = {"fp32": 1e-5, "fp16": 5e-3}

# (E, N, hidden, top_k, M): E not a power of two, N and K not multiples of any block,
# M=1, M below and above BLOCK_SIZE_M, experts that receive no token.
CASES = [
    (5, 24, 40, 2, 1),
    (5, 24, 40, 2, 7),
    (7, 40, 72, 3, 3),
    (7, 40, 72, 3, 33),
    (12, 48, 100, 4, 2),  # most experts get nothing
    (12, 20, 36, 2, 70),
    (64, 24, 40, 6, 1),  # tiny-batch path (M*top_k*4 <= E)
    (64, 24, 40, 6, 2),
    (3, 16, 16, 1, 300),  # many rows per expert, several blocks each
]


def _poison(ws: MoEWorkspace) -> None:
    for buf in (ws.gate_up, ws.act, ws.down, ws.out):
        buf.fill_(float("nan"))
    ws.sorted_ids.fill_(-7)
    ws.expert_ids.fill_(-7)


def _check(shape: Shape, M: int, config: KernelConfig, seed: int, naive=None) -> None:
    gen = torch.Generator().manual_seed(seed)
    inputs = make_inputs(shape, M, device="cpu", generator=gen, scale_weights=True)
    ws = MoEWorkspace(inputs, config.BLOCK_SIZE_M, naive=naive)
    _poison(ws)
    out = fused_moe(inputs, config, ws)
    ref = fused_moe_reference(inputs.x, inputs.logits, inputs.w1, inputs.w2, shape.top_k)
    where = f"{shape.label()} M={M} {config.short()} naive={ws.naive} seed={seed}"
    assert out.shape == (M, shape.hidden), where
    assert not torch.isnan(out).any(), f"unwritten output elements: {where}"
    # clamp: under expert parallelism a batch may route nothing to this rank (ref = 0)
    err = ((out.float() - ref).norm() / ref.norm().clamp_min(1e-6)).item()
    assert err < TOL[shape.dtype], f"relative error {err:.2e}: {where}"


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "E{}-N{}-H{}-k{}-M{}".format(*c))
def test_matches_reference_on_random_configs(case, dtype, fresh_seed):
    E, N, H, top_k, M = case
    shape = Shape(E=E, N=N, hidden=H, top_k=top_k, dtype=dtype)
    rng = random.Random(fresh_seed)
    # Two random configs from the 1,920 space, plus one with small tiles so that N and K
    # span several blocks (the 1,920 space starts at 32x64).
    configs = rng.sample(SPACE_1920, 2) + [
        KernelConfig(16, 16, 16, rng.choice([1, 2, 16]), 4, rng.choice([2, 3]))
    ]
    for config in configs:
        _check(shape, M, config, fresh_seed)


def test_default_configs_match_reference(fresh_seed):
    shape = Shape(E=9, N=40, hidden=56, top_k=2, dtype="fp16")
    for M in (1, 24, 100, 600):
        _check(shape, M, vllm_default_config(M, shape.E), fresh_seed + M)


def test_tiny_batch_path_equals_aligned_path(fresh_seed):
    shape = Shape(E=64, N=24, hidden=40, top_k=6, dtype="fp32")
    assert uses_naive_path(2, 6, 64) and not uses_naive_path(3, 6, 64)
    gen = torch.Generator().manual_seed(fresh_seed)
    inputs = make_inputs(shape, 2, device="cpu", generator=gen, scale_weights=True)
    config = KernelConfig(16, 32, 64, 1, 4, 3)
    outs = []
    for naive in (True, False):
        ws = MoEWorkspace(inputs, config.BLOCK_SIZE_M, naive=naive)
        assert ws.naive is naive
        _poison(ws)
        outs.append(fused_moe(inputs, config, ws).clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block_m", [16, 32, 64])
def test_alignment_invariants(block_m, fresh_seed):
    """sorted_token_ids / expert_ids / num_tokens_post_padded as vLLM defines them."""
    shape = Shape(E=13, N=16, hidden=16, top_k=3, dtype="fp32")
    M = 57
    gen = torch.Generator().manual_seed(fresh_seed)
    inputs = make_inputs(shape, M, device="cpu", generator=gen)
    ws = MoEWorkspace(inputs, block_m, naive=False)
    _poison(ws)
    fused_moe(inputs, KernelConfig(block_m, 16, 16, 1, 4, 2), ws)

    weights, ids = route_reference(inputs.logits, shape.top_k)
    assert torch.equal(ws.topk_ids.long(), ids), f"seed={fresh_seed}"
    torch.testing.assert_close(ws.topk_weights, weights)
    numel = M * shape.top_k
    counts = torch.bincount(ids.flatten(), minlength=shape.E)
    padded = (counts + block_m - 1) // block_m * block_m
    total = int(ws.num_post_padded.item())
    assert total == int(padded.sum())
    sorted_ids = ws.sorted_ids[:total]
    # Every routed row appears exactly once; the rest of the slots hold the sentinel.
    real = sorted_ids[sorted_ids < numel]
    assert torch.equal(real.sort().values, torch.arange(numel, dtype=torch.int32))
    assert (ws.sorted_ids[total:] == numel).all()
    assert (sorted_ids[sorted_ids >= numel] == numel).all()
    # Each block holds rows of one expert, the expert its expert_ids entry names.
    flat_ids = ids.flatten()
    for b in range(total // block_m):
        rows = sorted_ids[b * block_m:(b + 1) * block_m]
        rows = rows[rows < numel].long()
        expert = int(ws.expert_ids[b])
        assert (flat_ids[rows] == expert).all(), f"block {b} seed={fresh_seed}"
    assert (ws.expert_ids[total // block_m:] == -1).all()


def test_renormalized_routing_weights_sum_to_one(fresh_seed):
    shape = Shape(E=10, N=16, hidden=16, top_k=4, dtype="fp32")
    gen = torch.Generator().manual_seed(fresh_seed)
    inputs = make_inputs(shape, 20, device="cpu", generator=gen)
    ws = MoEWorkspace(inputs, 16)
    fused_moe(inputs, KernelConfig(16, 16, 16, 1, 4, 2), ws)
    torch.testing.assert_close(ws.topk_weights.sum(-1), torch.ones(20))


# Expert parallelism: E local experts of E * ep, top_k over all of them (top_k > E here);
# rows routed to other ranks' experts are skipped. (E, N, hidden, top_k, ep, M).
EP_CASES = [
    (2, 24, 40, 4, 4, 1),  # tiny-batch path over the 8 routed experts
    (2, 24, 40, 4, 4, 9),
    (3, 20, 36, 5, 4, 40),
    (1, 16, 16, 8, 16, 33),  # one local expert, as vLLM's E=1 files
]


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("case", EP_CASES, ids=lambda c: "E{}-N{}-H{}-k{}-ep{}-M{}".format(*c))
def test_expert_parallel_layer_matches_reference(case, dtype, fresh_seed):
    E, N, H, top_k, ep, M = case
    shape = Shape(E=E, N=N, hidden=H, top_k=top_k, dtype=dtype, ep=ep)
    assert shape.top_k > shape.E
    for config in (vllm_default_config(M, E), KernelConfig(16, 32, 64, 1, 4, 2)):
        _check(shape, M, config, fresh_seed)


def test_expert_parallel_skips_other_ranks_experts():
    """With a rank's experts never routed to, the layer's output is zero."""
    shape = Shape(E=2, N=16, hidden=16, top_k=2, dtype="fp32", ep=4)
    gen = torch.Generator().manual_seed(0)
    inputs = make_inputs(shape, 5, device="cpu", generator=gen)
    inputs.logits[:, :2] = -1e4  # experts 0 and 1 (this rank's) never picked
    out = fused_moe(inputs, KernelConfig(16, 32, 64, 1, 4, 2))
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("dtype,block_shape,M", [("fp16", None, 33), ("fp16", None, 1),
                                                  ("fp8_w8a8", (128, 128), 5)])
def test_compile_config_compiles_every_launch_of_the_layer(monkeypatch, dtype, block_shape, M):
    """Issue #13: a config's compile ahead covers every kernel the layer launches (routing,
    alignment or the tiny-batch path, both GEMMs, SiLU-and-mul, fp8 quantization, the
    top-k sum) with the arguments the launch gets, since Triton compiles again where an
    integer argument's specialization changes; before, the helpers compiled inside the
    first measurement."""
    from searcher.kernels.fused_moe import layer

    calls: list[tuple] = []

    def recording(kernel, grid, *args, warmup=False, **meta):
        plain = tuple(a if isinstance(a, (int, float, bool)) else
                      (tuple(a.shape), a.dtype, a.stride()) for a in args)
        calls.append((kernel, grid, plain, tuple(sorted(meta.items())), warmup))

    monkeypatch.setattr(layer, "_launch", recording)
    shape = Shape(E=64, N=256, hidden=512, top_k=6, dtype=dtype, block_shape=block_shape)
    inputs = make_inputs(shape, M, device="cpu", generator=torch.Generator().manual_seed(0))
    config = KernelConfig(16, 64, 128, 1, 4, 3)
    ws = MoEWorkspace(inputs, config.BLOCK_SIZE_M)
    fused_moe(inputs, config, ws)
    launched, calls[:] = list(calls), []
    layer.compile_config(inputs, config, ws)
    assert len(launched) >= 6 and not any(c[-1] for c in launched)
    assert all(c[-1] for c in calls)
    assert [c[:-1] for c in calls] == [c[:-1] for c in launched]
