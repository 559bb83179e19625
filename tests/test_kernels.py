"""Tests for searcher.kernels: the registry, and the fused MoE's side of the Kernel seam
that needs no GPU."""

from __future__ import annotations

import pytest

from searcher.measure.device import KNOWN_GPUS
from searcher.errors import SpecError
from searcher.kernels import DEFAULT_KERNEL, KERNELS, get_kernel
from searcher.kernels.fused_moe import FUSED_MOE, Shape, vllm_default_config

H100 = KNOWN_GPUS["NVIDIA_H100_80GB_HBM3"]
SHAPE = Shape(E=64, N=1408, hidden=2048, top_k=6, dtype="bf16")


def test_the_registry_holds_the_fused_moe() -> None:
    assert get_kernel("fused_moe") is FUSED_MOE
    assert KERNELS == {"fused_moe": FUSED_MOE}
    assert DEFAULT_KERNEL == "fused_moe"


def test_an_unknown_kernel_is_named_with_a_suggestion() -> None:
    with pytest.raises(SpecError) as err:
        get_kernel("fused-moe")
    message = str(err.value)
    assert "unknown kernel 'fused-moe'" in message
    assert "did you mean 'fused_moe'?" in message
    assert "must be one of: fused_moe" in message


def test_the_fused_moe_context() -> None:
    ctx = FUSED_MOE.context(SHAPE, 256, H100)
    assert tuple(ctx) == FUSED_MOE.context_names
    assert ctx == {
        "E": 64,
        "N": 1408,
        "hidden": 2048,
        "top_k": 6,
        "dtype_bytes": 2,
        "M": 256,
        "smem_per_block": 232448,
        "sm_count": 132,
        "block_n": 0,
        "block_k": 0,
        "fp8": 0,
        "a_bytes": 2,
        "b_bytes": 2,
    }
    assert FUSED_MOE.context(Shape(8, 16, 16, 2, "fp32"), 1, H100)["dtype_bytes"] == 4
    block = Shape(8, 16, 16, 2, "fp8_w8a8", block_shape=(128, 64))
    assert {k: FUSED_MOE.context(block, 1, H100)[k] for k in ("block_n", "block_k", "fp8")} \
        == {"block_n": 128, "block_k": 64, "fp8": 1}
    for bad in (0, -1, 1.5, True):
        with pytest.raises(SpecError, match="M = "):
            FUSED_MOE.context(SHAPE, bad, H100)  # type: ignore[arg-type]


def test_the_fused_moe_default_is_vllms() -> None:
    for M in (1, 64, 4096):
        assert FUSED_MOE.default_config(SHAPE, M) == vllm_default_config(M, SHAPE.E)


def test_configs_from_values_and_dicts() -> None:
    config = FUSED_MOE.make_config([16, 32, 64, 1, 4, 3])
    assert FUSED_MOE.config_from_dict(config.to_dict()) == config
    assert tuple(config.to_dict()) == FUSED_MOE.config_keys
