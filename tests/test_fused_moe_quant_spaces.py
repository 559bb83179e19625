"""The shipped spaces and studies for quantized fused-MoE layers.

Spaces are read with :func:`searcher.study.space.load_space` and enumerated with the kernel's own
context (:meth:`FusedMoE.context`), studies' ``[shape]`` tables with
:meth:`FusedMoE.parse_problem`: the names a quantized problem adds (``block_n``,
``block_k``, ``fp8``, ``a_bytes``, ``b_bytes``) come from the kernel.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import searcher
import searcher.study.space as space_module
from searcher.measure.device import KNOWN_GPUS
from searcher.kernels.fused_moe import FUSED_MOE, KernelConfig, Shape
from searcher.study.space import Space, load_space

ROOT = Path(searcher.__file__).resolve().parent.parent
SPACES = ROOT / "spaces"
STUDIES = ROOT / "studies"
H200 = KNOWN_GPUS["NVIDIA_H200"]
BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)

DEEPSEEK_V3_TP8 = Shape(256, 256, 7168, 8, "fp8_w8a8", block_shape=(128, 128))
MIXTRAL_TP2_FP8 = Shape(8, 7168, 4096, 2, "fp8_w8a8")


@pytest.fixture(autouse=True)
def _space_accepts_kernel_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bridge until searcher.study.space takes the names a constraint may use from the kernel
    # (the kernel-seam branch): let it accept FusedMoE.context_names. A no-op once it does.
    names = getattr(space_module, "_EXPRESSION_NAMES", None)
    if names is not None:
        monkeypatch.setattr(space_module, "_EXPRESSION_NAMES",
                            frozenset(names) | frozenset(FUSED_MOE.context_names))


def _space(name: str) -> Space:
    return load_space(SPACES / f"{name}.toml")


def _count(space: Space, shape: Shape, M: int) -> int:
    return len(space.enumerate(FUSED_MOE.context(shape, M, H200)))


# -- vllm-1920-block: vLLM's tuner filter for block-quantized weights --------------------

@pytest.mark.parametrize("block,count", [
    ((128, 128), 640),  # 5 x 2 (N 128, 256) x 2 (K 128, 256) x 4 x 2 x 4, as vLLM's tuner
    ((64, 128), 960),   # N 64, 128, 256
    ((128, 64), 960),   # K 64, 128, 256 and N 128, 256
])
def test_vllm_block_space_counts(block: tuple[int, int], count: int) -> None:
    shape = Shape(256, 256, 7168, 8, "fp8_w8a8", block_shape=block)
    space = _space("vllm-1920-block")
    assert _count(space, shape, 1) == _count(space, shape, 4096) == count


def test_vllm_block_space_keeps_multiples_of_the_block_only() -> None:
    space = _space("vllm-1920-block")
    for config in space.enumerate(FUSED_MOE.context(DEEPSEEK_V3_TP8, 64, H200)):
        assert config.BLOCK_SIZE_K % 128 == 0 and config.BLOCK_SIZE_N % 128 == 0


@pytest.mark.parametrize("shape", [MIXTRAL_TP2_FP8, Shape(8, 7168, 4096, 2),
                                   Shape(8, 7168, 4096, 2, "int8_w8a16")])
def test_vllm_block_space_is_empty_without_a_block_shape(shape: Shape) -> None:
    space = _space("vllm-1920-block")
    ctx = FUSED_MOE.context(shape, 64, H200)
    assert space.enumerate(ctx) == []
    assert "weights_are_block_quantized" in space.violations(KernelConfig(64, 128, 128, 1, 4, 3), ctx)


# -- extended: quantized problems -------------------------------------------------------

def test_extended_counts_for_block_fp8_on_h200() -> None:
    # Update deliberately when a constraint of extended-quant.toml changes.
    space = _space("extended-quant")
    assert _count(space, DEEPSEEK_V3_TP8, 1) == 540
    assert _count(space, DEEPSEEK_V3_TP8, 4096) == 7220


def test_extended_counts_for_other_quantized_layers_on_h200() -> None:
    space = _space("extended-quant")
    assert (_count(space, MIXTRAL_TP2_FP8, 1), _count(space, MIXTRAL_TP2_FP8, 4096)) == (2432, 9165)
    jamba = Shape(16, 3072, 8192, 2, "int8_w8a16")
    assert (_count(space, jamba, 1), _count(space, jamba, 4096)) == (930, 6980)


def test_extended_quant_keeps_8_row_tiles_for_fp8_only() -> None:
    """vLLM's tuned H200 DeepSeek-V3 file uses BLOCK_SIZE_M = 8 at M <= 4 (and was faster
    there than any 16-row tile side by side): fp8 keeps it, int8_w8a16 does not."""
    space = _space("extended-quant")
    tile8 = KernelConfig(8, 32, 128, 1, 4, 4)
    assert space.is_valid(tile8, FUSED_MOE.context(DEEPSEEK_V3_TP8, 1, H200))
    jamba = Shape(16, 3072, 8192, 2, "int8_w8a16")
    assert space.violations(tile8, FUSED_MOE.context(jamba, 1, H200)) == ["mma_rows"]


def test_extended_quant_groups_only_past_one_wave() -> None:
    """GROUP_SIZE_M only reorders programs: with every program in one wave it is moot."""
    space = _space("extended-quant")
    grouped = KernelConfig(16, 128, 128, 16, 4, 3)
    # M=96: 48 row blocks x 4 column blocks = 192 programs > 132 SMs: grouping can matter.
    assert space.is_valid(grouped, FUSED_MOE.context(DEEPSEEK_V3_TP8, 96, H200))
    # M=16: 8 x 4 = 32 programs, one wave.
    assert space.violations(grouped, FUSED_MOE.context(DEEPSEEK_V3_TP8, 16, H200)) == [
        "group_needs_waves"]


def test_extended_block_fp8_k_tile_is_at_most_the_scale_block() -> None:
    # vLLM clamps BLOCK_SIZE_K to min(block_shape): a longer K tile is the same config.
    space = _space("extended-quant")
    for M in (1, 4096):
        ks = {c.BLOCK_SIZE_K for c in space.enumerate(FUSED_MOE.context(DEEPSEEK_V3_TP8, M, H200))}
        assert ks == {32, 64, 128}
    narrow = Shape(256, 256, 7168, 8, "fp8_w8a8", block_shape=(64, 128))
    ks = {c.BLOCK_SIZE_K for c in space.enumerate(FUSED_MOE.context(narrow, 4096, H200))}
    assert ks == {32, 64}
    # Without a block shape, K tiles up to 256 stay.
    ks = {c.BLOCK_SIZE_K for c in space.enumerate(FUSED_MOE.context(MIXTRAL_TP2_FP8, 4096, H200))}
    assert ks == {32, 64, 128, 256}


def test_extended_block_fp8_n_tile_need_not_be_a_multiple_of_block_n() -> None:
    space = _space("extended-quant")
    ns = {c.BLOCK_SIZE_N for c in space.enumerate(FUSED_MOE.context(DEEPSEEK_V3_TP8, 1, H200))}
    assert {16, 32, 64} <= ns


def test_extended_shared_memory_counts_each_operand_at_its_size() -> None:
    # 128 x 256 x 128 tiles with wgmma (num_stages buffers) a stage holds 96 KiB at bf16,
    # 48 KiB at fp8 and 64 KiB for int8_w8a16 (a bf16 A of 128 rows, an int8 B of 256
    # columns); smem_per_block is 232,448 B, so 2, 4 and 3 stages fit.
    space = _space("extended-quant")
    stages = {}
    for shape in (Shape(8, 7168, 4096, 2), MIXTRAL_TP2_FP8, Shape(8, 7168, 4096, 2, "int8_w8a16")):
        ctx = FUSED_MOE.context(shape, 4096, H200)
        stages[shape.dtype] = max(
            s for s in range(1, 7)
            if "shared_memory" not in space.violations(KernelConfig(128, 256, 128, 16, 8, s), ctx)
        )
    assert stages == {"bf16": 2, "fp8_w8a8": 4, "int8_w8a16": 3}


def test_extended_counts_swapped_fp8_tiles_as_wgmma_tiles() -> None:
    # fp8 on Hopper: BLOCK_SIZE_M < 64 and BLOCK_SIZE_N >= 64 run as dot(b, a), whose MMA
    # rows are BLOCK_SIZE_N: num_stages buffers, as for a 64-row tile. 16 x 256 x 256 fp8
    # is 69,632 B a stage: 3 buffers fit, 4 do not.
    space = _space("extended-quant")
    ctx = FUSED_MOE.context(MIXTRAL_TP2_FP8, 1, H200)
    assert "shared_memory" not in space.violations(KernelConfig(16, 256, 256, 1, 4, 3), ctx)
    assert "shared_memory" in space.violations(KernelConfig(16, 256, 256, 1, 4, 4), ctx)
    # bf16 is never swapped: 16-row tiles keep num_stages - 1 buffers (139,264 B a stage).
    ctx = FUSED_MOE.context(Shape(8, 7168, 4096, 2), 1, H200)
    assert "shared_memory" not in space.violations(KernelConfig(16, 256, 256, 1, 4, 2), ctx)


# vLLM's block-fp8 default for DeepSeek-V3 TP=8 (E=256, top_k=8) is in the extended-quant
# space except where two of its choices are moot: from M=24 to 256 it groups 32 row blocks
# (GROUP_SIZE_M=32) while all its programs fit in one wave (`group_needs_waves`), and at
# M=96..256 its BLOCK_SIZE_M=64 is more than 4x the 3-8 rows an expert gets
# (`block_m_fits_rows`). vLLM's own tuned H200 file for this shape uses BLOCK_SIZE_M=16 up
# to M=512. The search still times the default beside its finalists.
DEEPSEEK_DEFAULT_OUTSIDE = {
    24: ["group_needs_waves"], 32: ["group_needs_waves"],
    48: ["group_needs_waves"], 64: ["group_needs_waves"],
    96: ["block_m_fits_rows", "group_needs_waves"],
    128: ["block_m_fits_rows", "group_needs_waves"],
    256: ["block_m_fits_rows", "group_needs_waves"],
}


@pytest.mark.parametrize("M", BATCH_SIZES)
def test_extended_and_vllms_block_fp8_default_for_deepseek_v3(M: int) -> None:
    space = _space("extended-quant")
    ctx = FUSED_MOE.context(DEEPSEEK_V3_TP8, M, H200)
    default = FUSED_MOE.default_config(DEEPSEEK_V3_TP8, M)
    assert space.violations(default, ctx) == DEEPSEEK_DEFAULT_OUTSIDE.get(M, [])
    if M in DEEPSEEK_DEFAULT_OUTSIDE:
        # Its twin with one group and a row tile the rows fill is inside.
        rows_limit = {96: 16, 128: 16, 256: 32}.get(M, default.BLOCK_SIZE_M)
        twin = KernelConfig(rows_limit, default.BLOCK_SIZE_N, default.BLOCK_SIZE_K, 1,
                            default.num_warps, default.num_stages)
        assert space.is_valid(twin, ctx)


@pytest.mark.parametrize("M", BATCH_SIZES)
def test_extended_keeps_vllms_per_tensor_fp8_default_for_mixtral_tp2(M: int) -> None:
    ctx = FUSED_MOE.context(MIXTRAL_TP2_FP8, M, H200)
    default = FUSED_MOE.default_config(MIXTRAL_TP2_FP8, M)
    assert _space("extended-quant").violations(default, ctx) == []


@pytest.mark.parametrize("M", BATCH_SIZES)
def test_extended_keeps_vllms_int8_w8a16_default_for_jamba_tp8(M: int) -> None:
    jamba = Shape(16, 3072, 8192, 2, "int8_w8a16")
    ctx = FUSED_MOE.context(jamba, M, H200)
    assert _space("extended-quant").violations(FUSED_MOE.default_config(jamba, M), ctx) == []


def test_context_gives_operand_sizes() -> None:
    def sizes(shape: Shape) -> tuple[int, int]:
        ctx = FUSED_MOE.context(shape, 1, H200)
        return ctx["a_bytes"], ctx["b_bytes"]

    assert sizes(Shape(8, 16, 16, 2)) == (2, 2)
    assert sizes(Shape(8, 16, 16, 2, "fp32")) == (4, 4)
    assert sizes(MIXTRAL_TP2_FP8) == (1, 1)
    assert sizes(DEEPSEEK_V3_TP8) == (1, 1)
    assert sizes(Shape(8, 16, 16, 2, "int8_w8a16")) == (2, 1)
    assert tuple(FUSED_MOE.context(MIXTRAL_TP2_FP8, 1, H200)) == FUSED_MOE.context_names


# -- the studies -----------------------------------------------------------------------

STUDIES_EXPECTED = {
    "h200-deepseek-v3-tp8-fp8": (
        Shape(256, 256, 7168, 8, "fp8_w8a8", block_shape=(128, 128)),
        "E=256,N=256,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"),
    "h200-mixtral-8x7b-tp2-fp8": (
        Shape(8, 7168, 4096, 2, "fp8_w8a8"),
        "E=8,N=7168,device_name=NVIDIA_H200,dtype=fp8_w8a8.json"),
    "h200-qwen3-30b-a3b-fp8-per-channel": (
        Shape(128, 768, 2048, 8, "fp8_w8a8", per_channel=True),
        "E=128,N=768,device_name=NVIDIA_H200,dtype=fp8_w8a8.json"),
    "h200-jamba-1.5-large-tp8-int8": (
        Shape(16, 3072, 8192, 2, "int8_w8a16"),
        "E=16,N=3072,device_name=NVIDIA_H200,dtype=int8_w8a16.json"),
    "h100-deepseek-v3-tp16-fp8": (
        Shape(256, 128, 7168, 8, "fp8_w8a8", block_shape=(128, 128)),
        "E=256,N=128,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128,128].json"),
    "h100-mixtral-8x7b-tp2-fp8": (
        Shape(8, 7168, 4096, 2, "fp8_w8a8"),
        "E=8,N=7168,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8.json"),
    "h100-jamba-1.5-large-tp8-int8": (
        Shape(16, 3072, 8192, 2, "int8_w8a16"),
        "E=16,N=3072,device_name=NVIDIA_H100_80GB_HBM3,dtype=int8_w8a16.json"),
}


@pytest.mark.parametrize("name", sorted(STUDIES_EXPECTED))
def test_quantized_study_shape_and_file_name(name: str) -> None:
    data = tomllib.loads((STUDIES / f"{name}.toml").read_text(encoding="utf-8"))
    shape, file_name = STUDIES_EXPECTED[name]
    assert FUSED_MOE.parse_problem(data["shape"]) == shape
    assert data["gpu"] == file_name.split("device_name=")[1].split(",")[0].removesuffix(".json")
    assert data["kernel"] == "fused_moe"
    assert FUSED_MOE.file_name(shape, data["gpu"]) == file_name
    assert data["search"]["space"] == "extended-quant"
    # At most 15% of the 640 configs vLLM's tuner times per batch size for block fp8.
    assert data["search"]["trials_per_m"] <= 96


def test_quantized_studies_have_their_own_storage() -> None:
    urls = [tomllib.loads((STUDIES / f"{n}.toml").read_text(encoding="utf-8"))["storage"]["url"]
            for n in STUDIES_EXPECTED]
    assert len(set(urls)) == len(urls)
