"""The quantized fused-MoE layers (fp8_w8a8 per-tensor, per-channel, block-wise;
int8_w8a16) against the fp32 reference, in Triton's interpreter.

What Triton's interpreter does with these dtypes (triton 3.9.0 on the CPU, seen
2026-11-29; ``tests/test_kernel_quant.py`` pins it):

* ``tl.dot`` on float8_e4m3fn operands is exact (fp8 x fp8 -> fp32), so the fp8 GEMMs,
  the swapped-operand tiles and the block scales run here.
* Its fp32 -> e4m3 cast is not round-to-nearest-even: a value that should round up to a
  power of two (31.7 -> 32) comes out as half of it (16), ties round away from zero
  (84 -> 88, not 80), and subnormals (below 2**-6) are truncated (0.0073 -> 3 * 2**-9,
  not 4 * 2**-9). On the GPU the cast is the hardware's round-to-nearest-even. So here
  the reference dequantizes the activations the kernel quantized (its workspace
  buffers), and the quantization is checked against torch's scales and against the
  values Triton casts on this platform, element by element; on a GPU it must equal
  torch's quantization exactly.
* ``tl.dot`` on bf16 is wrong (see test_kernel.py), so int8_w8a16 runs here with fp16
  activations; bf16 is checked on the GPU (``benchmarks/check_quant.py``).
"""

from __future__ import annotations

import os

import pytest
import torch
import triton
import triton.language as tl

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.layer import (
    MoEWorkspace,
    fused_moe,
    make_inputs,
    quantize_weights,
    uses_swap_ab,
)
from searcher.kernels.fused_moe.problem import Shape
from searcher.kernels.fused_moe.reference import (
    dequantize_activations,
    dequantize_weights,
    layer_reference,
    quantize_activations,
)

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
#: Relative error (Frobenius) of the layer against the reference that uses the kernel's
#: own quantized activations: two bf16 roundings (GEMM2's output and the top-k sum).
TOL = 1e-2

VARIANTS = {
    "fp8-per-tensor": dict(dtype="fp8_w8a8"),
    "fp8-per-channel": dict(dtype="fp8_w8a8", per_channel=True),
    "fp8-block-32x32": dict(dtype="fp8_w8a8", block_shape=(32, 32)),
    "fp8-block-16x32": dict(dtype="fp8_w8a8", block_shape=(16, 32)),
    "int8-w8a16": dict(dtype="int8_w8a16"),
}
# (E, N, hidden, top_k, M): N and K not multiples of the tiles or the quantization
# blocks, experts without tokens, the tiny-batch path.
CASES = [(7, 72, 100, 2, 33), (12, 40, 72, 4, 3), (64, 24, 40, 6, 1)]
CONFIGS = [KernelConfig(16, 64, 64, 1, 4, 2), KernelConfig(32, 32, 32, 2, 4, 3),
           KernelConfig(16, 16, 128, 1, 4, 2), KernelConfig(64, 128, 32, 16, 4, 2),
           KernelConfig(8, 64, 32, 1, 4, 2)]


def _inputs(shape: Shape, M: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    inputs = make_inputs(shape, M, device="cpu", generator=gen, scale_weights=True)
    if INTERPRETED and shape.dtype == "int8_w8a16":
        inputs.x = inputs.x.half()  # the interpreter's bf16 dot is broken (module doc)
    return inputs


@triton.jit
def _cast_fp8_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(y_ptr + offs, x.to(y_ptr.dtype.element_ty), mask=offs < n)


def _platform_fp8(values: torch.Tensor) -> torch.Tensor:
    """fp32 values cast to e4m3 by Triton on this platform (the interpreter's rounding
    here, the hardware's on a GPU)."""
    flat = values.float().contiguous().view(-1)
    out = torch.empty_like(flat, dtype=torch.float8_e4m3fn)
    _cast_fp8_kernel[(triton.cdiv(flat.numel(), 1024),)](flat, out, flat.numel(), BLOCK=1024)
    return out.view(values.shape)


def _assert_quantized(shape: Shape, src: torch.Tensor, q: torch.Tensor, scale: torch.Tensor,
                      static: torch.Tensor | None, where: str) -> None:
    """The kernel's fp8 activations and scales are torch's (:func:`quantize_activations`),
    up to the platform's rounding of the final cast: the values cast are compared exactly."""
    want_q, want_scale = quantize_activations(src, shape, static)
    torch.testing.assert_close(scale, want_scale, rtol=1e-6, atol=0, msg=where)
    full = dequantize_activations(torch.ones_like(src, dtype=torch.float32), want_scale, shape)
    cast = _platform_fp8((src.float() / full).clamp(-448, 448))
    bad = (q.float() != cast.float()).sum().item()
    assert bad == 0, f"{bad} of {q.numel()} fp8 values differ: {where}"
    if not INTERPRETED:
        # On a GPU Triton's division is not IEEE's (div.full), so a value next to a
        # rounding boundary may land one e4m3 step away from torch's (6 to 63 of about
        # 10^6-10^7 values per variant in benchmarks/results/check-quant-NVIDIA_H200.json).
        step = torch.ldexp(torch.ones_like(want_q.float()),
                           torch.frexp(want_q.float().abs())[1] - 4).clamp_min(2**-9)
        assert ((q.float() - want_q.float()).abs() <= step).all(), where


def _check(shape: Shape, M: int, config: KernelConfig, seed: int, swap_ab: bool | None):
    inputs = _inputs(shape, M, seed)
    ws = MoEWorkspace(inputs, config.BLOCK_SIZE_M, swap_ab=swap_ab)
    for buf in (ws.gate_up, ws.act, ws.down, ws.out):
        buf.fill_(float("nan"))
    out = fused_moe(inputs, config, ws).float()
    where = f"{shape.label()} M={M} {config.short()} swap_ab={swap_ab} seed={seed}"
    assert not torch.isnan(out).any(), f"unwritten output elements: {where}"
    if shape.dtype == "fp8_w8a8":
        # Stage by stage: x's quantization, GEMM1, the SiLU output's quantization.
        _assert_quantized(shape, inputs.x, ws.x_q, ws.x_scale, inputs.a1_scale, where)
        _assert_quantized(shape, ws.act, ws.act_q, ws.act_scale, inputs.a2_scale, where)
        x = dequantize_activations(ws.x_q, ws.x_scale, shape)
        w1 = dequantize_weights(inputs.w1, inputs.w1_scale, shape)
        ids = ws.topk_ids.long()
        for e in torch.unique(ids).tolist():
            token, slot = torch.nonzero(ids == e, as_tuple=True)
            want = x[token] @ w1[e].T
            got = ws.gate_up[token * shape.top_k + slot].float()
            err = ((got - want).norm() / want.norm()).item()
            assert err < TOL, f"GEMM1 of expert {e}: relative error {err:.2e}: {where}"
    ref = layer_reference(inputs, ws if shape.dtype == "fp8_w8a8" else None)
    err = ((out - ref).norm() / ref.norm()).item()
    assert err < TOL, f"relative error {err:.2e}: {where}"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda i: "E{}-N{}-H{}-k{}-M{}".format(*CASES[i]))
def test_quantized_layer_matches_reference(variant, case):
    """One config per (variant, case), rotating through CONFIGS; fp8 alternates the
    swapped-operand tiles, so every variant runs both and most configs (fixed seeds)."""
    E, N, H, top_k, M = CASES[case]
    shape = Shape(E=E, N=N, hidden=H, top_k=top_k, **VARIANTS[variant])
    index = list(VARIANTS).index(variant)
    config = CONFIGS[(case + index) % len(CONFIGS)]
    swap_ab = bool((case + index) % 2) if shape.dtype == "fp8_w8a8" else None
    _check(shape, M, config, seed=1000 * index + case, swap_ab=swap_ab)


def test_block_k_is_clamped_to_the_quantization_block():
    """vLLM runs BLOCK_SIZE_K = min(BLOCK_SIZE_K, block_n, block_k): a config asking for 128
    computes exactly what the config with 32 computes."""
    shape = Shape(E=5, N=48, hidden=80, top_k=2, dtype="fp8_w8a8", block_shape=(32, 32))
    inputs = _inputs(shape, 9, seed=3)
    outs = []
    for bk in (128, 32):
        cfg = KernelConfig(16, 32, bk, 1, 4, 2)
        outs.append(fused_moe(inputs, cfg, MoEWorkspace(inputs, 16, swap_ab=False)).clone())
    assert torch.equal(outs[0], outs[1])


def test_swap_ab_follows_vllm_rule():
    fp8 = Shape(8, 64, 64, 2, "fp8_w8a8")
    assert uses_swap_ab(fp8, KernelConfig(16, 64, 128, 1, 4, 3), (9, 0))
    assert uses_swap_ab(fp8, KernelConfig(32, 128, 128, 1, 4, 3), (9, 0))
    assert not uses_swap_ab(fp8, KernelConfig(64, 64, 128, 1, 4, 3), (9, 0))  # M tile 64
    assert not uses_swap_ab(fp8, KernelConfig(16, 32, 128, 1, 4, 3), (9, 0))  # N tile 32
    assert not uses_swap_ab(fp8, KernelConfig(16, 64, 128, 1, 4, 3), (10, 0))  # not sm90
    assert not uses_swap_ab(fp8, KernelConfig(16, 64, 128, 1, 4, 3), None)
    bf16 = Shape(8, 64, 64, 2, "bf16")
    assert not uses_swap_ab(bf16, KernelConfig(16, 64, 128, 1, 4, 3), (9, 0))


@pytest.mark.parametrize("variant", VARIANTS)
def test_weight_quantization_round_trips(variant):
    """Quantized weights dequantize to within half a quantization step of the originals,
    and every scale is amax / 448 (fp8) or amax / 127 (int8) of its group."""
    shape = Shape(E=3, N=40, hidden=72, top_k=2, **VARIANTS[variant])
    w = torch.randn(3, 80, 72, generator=torch.Generator().manual_seed(1))
    q, scale = quantize_weights(w, shape)
    back = dequantize_weights(q, scale, shape)
    rel = ((back - w).abs() / w.abs().clamp_min(1e-3)).median().item()
    step = 2**-4 if shape.dtype == "fp8_w8a8" else 1 / 127
    assert rel < step, f"median relative error {rel:.3g} for {shape.label()}"
    if shape.scheme == "block":
        bn, bk = shape.block_shape
        assert scale.shape == (3, -(-80 // bn), -(-72 // bk))
        torch.testing.assert_close(scale[1, 0, 0], w[1, :bn, :bk].abs().max() / 448)
    elif shape.scheme == "per_tensor":
        assert scale.shape == (3,)
        torch.testing.assert_close(scale[2], w[2].abs().max() / 448)
    else:
        assert scale.shape == (3, 80)
        top = 127 if shape.dtype == "int8_w8a16" else 448
        torch.testing.assert_close(scale[0, 5], w[0, 5].abs().max() / top)


def test_activation_quantization_scales():
    """Per-token and per-group scales are amax / 448 of their row or block_k columns; a
    zero row gets the floor 1e-10 / 448 instead of a division by zero."""
    x = torch.randn(4, 70, generator=torch.Generator().manual_seed(2))
    x[3] = 0
    per_token = Shape(4, 16, 70, 2, "fp8_w8a8", per_channel=True)
    q, s = quantize_activations(x, per_token)
    assert s.shape == (4, 1)
    torch.testing.assert_close(s[:3, 0], x[:3].abs().amax(1) / 448)
    assert s[3, 0].item() == pytest.approx(1e-10 / 448) and (q[3].float() == 0).all()
    block = Shape(4, 16, 70, 2, "fp8_w8a8", block_shape=(32, 32))
    q, s = quantize_activations(x, block)
    assert s.shape == (4, 3)
    torch.testing.assert_close(s[1, 2], x[1, 64:].abs().max() / 448)
    assert (q.float().abs() <= 448).all()
    back = dequantize_activations(q, s, block)
    assert ((back - x).abs() <= x.abs() * 2**-4 + 1e-6).all()
