"""vLLM 0.33.0's facts for quantized fused-MoE layers: default configs and file names.

Every expected value below is a literal written by hand from vLLM 0.33.0's
``get_default_config`` (fused_moe.py), ``get_config_file_name`` and
``_get_config_dtype_str`` (config.py), and the names of the JSON files its wheel ships in
``model_executor/layers/fused_moe/configs/``. None is computed by searcher's own code.
"""

from __future__ import annotations

import pytest

from searcher.errors import ConfigError
from searcher.kernels.fused_moe import FUSED_MOE, KernelConfig, Shape, vllm_default_config

#: The batch sizes of vLLM's tuner (benchmarks/kernels/benchmark_moe.py).
BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)

# Each table: M -> (BLOCK_SIZE_M, BLOCK_SIZE_N, BLOCK_SIZE_K, GROUP_SIZE_M, num_warps,
# num_stages), on CUDA.

# General branch, bf16/fp16 and int8_w8a16, E = 8: GROUP_SIZE_M = 16 once M // 8 > 128.
BF16_E8 = {
    1: (16, 64, 128, 1, 4, 4), 2: (16, 64, 128, 1, 4, 4), 4: (16, 64, 128, 1, 4, 4),
    8: (16, 64, 128, 1, 4, 4), 16: (16, 64, 128, 1, 4, 4), 24: (16, 64, 128, 1, 4, 4),
    32: (16, 64, 128, 1, 4, 4), 48: (32, 64, 128, 1, 4, 3), 64: (32, 64, 128, 1, 4, 3),
    96: (32, 128, 64, 1, 4, 3), 128: (64, 128, 64, 1, 4, 3), 256: (64, 128, 64, 1, 8, 3),
    512: (64, 128, 64, 1, 8, 3), 1024: (128, 128, 64, 1, 8, 3),
    1536: (128, 128, 64, 16, 8, 3), 2048: (128, 128, 64, 16, 8, 3),
    3072: (128, 128, 64, 16, 8, 3), 4096: (128, 128, 64, 16, 8, 3),
}
# E = 256: M // 256 <= 16, never grouped.
BF16_E256 = {
    1: (16, 64, 128, 1, 4, 4), 2: (16, 64, 128, 1, 4, 4), 4: (16, 64, 128, 1, 4, 4),
    8: (16, 64, 128, 1, 4, 4), 16: (16, 64, 128, 1, 4, 4), 24: (16, 64, 128, 1, 4, 4),
    32: (16, 64, 128, 1, 4, 4), 48: (32, 64, 128, 1, 4, 3), 64: (32, 64, 128, 1, 4, 3),
    96: (32, 128, 64, 1, 4, 3), 128: (64, 128, 64, 1, 4, 3), 256: (64, 128, 64, 1, 8, 3),
    512: (64, 128, 64, 1, 8, 3), 1024: (128, 128, 64, 1, 8, 3),
    1536: (128, 128, 64, 1, 8, 3), 2048: (128, 128, 64, 1, 8, 3),
    3072: (128, 128, 64, 1, 8, 3), 4096: (128, 128, 64, 1, 8, 3),
}
# General branch for fp8_w8a8 without block_shape (per-tensor and per-channel): as bf16,
# but BLOCK_SIZE_K = 128 at every M.
FP8_E8 = {
    1: (16, 64, 128, 1, 4, 4), 2: (16, 64, 128, 1, 4, 4), 4: (16, 64, 128, 1, 4, 4),
    8: (16, 64, 128, 1, 4, 4), 16: (16, 64, 128, 1, 4, 4), 24: (16, 64, 128, 1, 4, 4),
    32: (16, 64, 128, 1, 4, 4), 48: (32, 64, 128, 1, 4, 3), 64: (32, 64, 128, 1, 4, 3),
    96: (32, 128, 128, 1, 4, 3), 128: (64, 128, 128, 1, 4, 3), 256: (64, 128, 128, 1, 8, 3),
    512: (64, 128, 128, 1, 8, 3), 1024: (128, 128, 128, 1, 8, 3),
    1536: (128, 128, 128, 16, 8, 3), 2048: (128, 128, 128, 16, 8, 3),
    3072: (128, 128, 128, 16, 8, 3), 4096: (128, 128, 128, 16, 8, 3),
}
FP8_E256 = {
    1: (16, 64, 128, 1, 4, 4), 2: (16, 64, 128, 1, 4, 4), 4: (16, 64, 128, 1, 4, 4),
    8: (16, 64, 128, 1, 4, 4), 16: (16, 64, 128, 1, 4, 4), 24: (16, 64, 128, 1, 4, 4),
    32: (16, 64, 128, 1, 4, 4), 48: (32, 64, 128, 1, 4, 3), 64: (32, 64, 128, 1, 4, 3),
    96: (32, 128, 128, 1, 4, 3), 128: (64, 128, 128, 1, 4, 3), 256: (64, 128, 128, 1, 8, 3),
    512: (64, 128, 128, 1, 8, 3), 1024: (128, 128, 128, 1, 8, 3),
    1536: (128, 128, 128, 1, 8, 3), 2048: (128, 128, 128, 1, 8, 3),
    3072: (128, 128, 128, 1, 8, 3), 4096: (128, 128, 128, 1, 8, 3),
}
# Block-wise branch, block_shape [128, 128]: independent of E. BLOCK_SIZE_N 64 up to
# M = 8 (128 % 64 == 0), 4 stages up to M = 4.
BLOCK_128_128 = {
    1: (16, 64, 128, 1, 4, 4), 2: (16, 64, 128, 1, 4, 4), 4: (16, 64, 128, 1, 4, 4),
    8: (16, 64, 128, 1, 4, 3), 16: (16, 128, 128, 1, 4, 3), 24: (16, 128, 128, 32, 4, 3),
    32: (16, 128, 128, 32, 4, 3), 48: (16, 128, 128, 32, 4, 3), 64: (16, 128, 128, 32, 4, 3),
    96: (64, 128, 128, 32, 4, 3), 128: (64, 128, 128, 32, 4, 3), 256: (64, 128, 128, 32, 4, 3),
    512: (64, 128, 128, 32, 4, 3), 1024: (64, 128, 128, 32, 4, 3),
    1536: (64, 128, 128, 32, 4, 3), 2048: (64, 128, 128, 32, 4, 3),
    3072: (64, 128, 128, 32, 4, 3), 4096: (64, 128, 128, 32, 4, 3),
}
# block_shape [64, 128]: 64 % 64 == 0, so the small-M branch too (BLOCK_SIZE_N 64 either
# way) with its 4 stages up to M = 4.
BLOCK_64_128 = {
    1: (16, 64, 128, 1, 4, 4), 2: (16, 64, 128, 1, 4, 4), 4: (16, 64, 128, 1, 4, 4),
    8: (16, 64, 128, 1, 4, 3), 16: (16, 64, 128, 1, 4, 3), 24: (16, 64, 128, 32, 4, 3),
    32: (16, 64, 128, 32, 4, 3), 48: (16, 64, 128, 32, 4, 3), 64: (16, 64, 128, 32, 4, 3),
    96: (64, 64, 128, 32, 4, 3), 128: (64, 64, 128, 32, 4, 3), 256: (64, 64, 128, 32, 4, 3),
    512: (64, 64, 128, 32, 4, 3), 1024: (64, 64, 128, 32, 4, 3),
    1536: (64, 64, 128, 32, 4, 3), 2048: (64, 64, 128, 32, 4, 3),
    3072: (64, 64, 128, 32, 4, 3), 4096: (64, 64, 128, 32, 4, 3),
}
# block_shape [32, 128]: 32 % 64 != 0, so never the small-M branch: BLOCK_SIZE_N = 32 and
# 3 stages even at M = 1.
BLOCK_32_128 = {
    1: (16, 32, 128, 1, 4, 3), 2: (16, 32, 128, 1, 4, 3), 4: (16, 32, 128, 1, 4, 3),
    8: (16, 32, 128, 1, 4, 3), 16: (16, 32, 128, 1, 4, 3), 24: (16, 32, 128, 32, 4, 3),
    32: (16, 32, 128, 32, 4, 3), 48: (16, 32, 128, 32, 4, 3), 64: (16, 32, 128, 32, 4, 3),
    96: (64, 32, 128, 32, 4, 3), 128: (64, 32, 128, 32, 4, 3), 256: (64, 32, 128, 32, 4, 3),
    512: (64, 32, 128, 32, 4, 3), 1024: (64, 32, 128, 32, 4, 3),
    1536: (64, 32, 128, 32, 4, 3), 2048: (64, 32, 128, 32, 4, 3),
    3072: (64, 32, 128, 32, 4, 3), 4096: (64, 32, 128, 32, 4, 3),
}

# (label, shape fields, E -> table)
CASES = [
    ("bf16", {"dtype": "bf16"}, {8: BF16_E8, 256: BF16_E256}),
    ("fp16", {"dtype": "fp16"}, {8: BF16_E8, 256: BF16_E256}),
    ("fp8 per-tensor", {"dtype": "fp8_w8a8"}, {8: FP8_E8, 256: FP8_E256}),
    ("fp8 per-channel", {"dtype": "fp8_w8a8", "per_channel": True},
     {8: FP8_E8, 256: FP8_E256}),
    ("fp8 block [128,128]", {"dtype": "fp8_w8a8", "block_shape": [128, 128]},
     {8: BLOCK_128_128, 256: BLOCK_128_128}),
    ("fp8 block [64,128]", {"dtype": "fp8_w8a8", "block_shape": [64, 128]},
     {8: BLOCK_64_128, 256: BLOCK_64_128}),
    ("fp8 block [32,128]", {"dtype": "fp8_w8a8", "block_shape": [32, 128]},
     {8: BLOCK_32_128, 256: BLOCK_32_128}),
    ("int8_w8a16", {"dtype": "int8_w8a16"}, {8: BF16_E8, 256: BF16_E256}),
]


def test_tables_cover_the_tuner_batch_sizes() -> None:
    for _, _, tables in CASES:
        for table in tables.values():
            assert tuple(table) == BATCH_SIZES


@pytest.mark.parametrize("label,fields,tables", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("E", [8, 256])
def test_kernel_default_config_follows_vllm(label: str, fields: dict, tables: dict,
                                            E: int) -> None:
    problem = FUSED_MOE.parse_problem({"E": E, "N": 256, "hidden": 1024, "top_k": 2,
                                       **fields})
    got = {M: FUSED_MOE.default_config(problem, M) for M in BATCH_SIZES}
    assert got == {M: KernelConfig(*values) for M, values in tables[E].items()}


@pytest.mark.parametrize("label,fields,tables", CASES, ids=[c[0] for c in CASES])
def test_function_default_config_follows_vllm(label: str, fields: dict, tables: dict) -> None:
    block = fields.get("block_shape")
    dtype = fields["dtype"]
    for E, table in tables.items():
        for M, values in table.items():
            config = vllm_default_config(M, E, dtype, tuple(block) if block else None)
            assert config == KernelConfig(*values), (label, E, M)


def test_two_argument_call_is_bf16() -> None:
    assert vllm_default_config(4096, 8) == KernelConfig(*BF16_E8[4096])


def test_rocm_block_fp8_keeps_block_n_and_two_stages() -> None:
    # vLLM 0.33.0: the ROCm test comes first, so no N=64 tile at small M.
    assert vllm_default_config(1, 256, "fp8_w8a8", (128, 128), rocm=True) == \
        KernelConfig(16, 128, 128, 1, 4, 2)
    assert vllm_default_config(4096, 256, "fp8_w8a8", (128, 128), rocm=True) == \
        KernelConfig(64, 128, 128, 32, 4, 2)


def test_rocm_general_fp8_has_two_stages_and_k128() -> None:
    assert vllm_default_config(1, 8, "fp8_w8a8", rocm=True) == KernelConfig(16, 64, 128, 1, 4, 2)
    assert vllm_default_config(4096, 8, "fp8_w8a8", rocm=True) == \
        KernelConfig(128, 128, 128, 16, 8, 2)


@pytest.mark.parametrize("args", [
    (0, 8), (1, 0), (True, 8), (1, 8, "fp4"),
    (1, 8, "int8_w8a16", (0, 128)),  # vLLM's wna16 branch: a partial config, not modelled
    (1, 8, "bf16", (128, 128)),
])
def test_default_config_rejects(args: tuple) -> None:
    with pytest.raises(ConfigError):
        vllm_default_config(*args)


# -- file names: vLLM 0.33.0 get_config_file_name + _get_config_dtype_str ---------------
# Each expected name is a file that vLLM 0.33.0's wheel ships in fused_moe/configs/.
FILE_NAMES = [
    ({"E": 8, "N": 7168, "hidden": 4096, "top_k": 2},
     "E=8,N=7168,device_name=NVIDIA_H200.json"),
    ({"E": 8, "N": 7168, "hidden": 4096, "top_k": 2, "dtype": "fp16"},
     "E=8,N=7168,device_name=NVIDIA_H200.json"),
    ({"E": 8, "N": 7168, "hidden": 4096, "top_k": 2, "dtype": "fp8_w8a8"},
     "E=8,N=7168,device_name=NVIDIA_H200,dtype=fp8_w8a8.json"),
    # per_channel_quant reaches neither the dtype string nor block_shape: same file.
    ({"E": 8, "N": 7168, "hidden": 4096, "top_k": 2, "dtype": "fp8_w8a8", "per_channel": True},
     "E=8,N=7168,device_name=NVIDIA_H200,dtype=fp8_w8a8.json"),
    ({"E": 256, "N": 256, "hidden": 7168, "top_k": 8, "dtype": "fp8_w8a8",
      "block_shape": [128, 128]},
     "E=256,N=256,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"),
    ({"E": 128, "N": 768, "hidden": 2048, "top_k": 8, "dtype": "fp8_w8a8",
      "block_shape": [128, 128]},
     "E=128,N=768,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"),
    ({"E": 16, "N": 3072, "hidden": 8192, "top_k": 2, "dtype": "int8_w8a16"},
     "E=16,N=3072,device_name=NVIDIA_H200,dtype=int8_w8a16.json"),
]


@pytest.mark.parametrize("table,expected", FILE_NAMES, ids=[n for _, n in FILE_NAMES])
def test_file_name_is_vllms(table: dict, expected: str) -> None:
    assert FUSED_MOE.file_name(FUSED_MOE.parse_problem(table), "NVIDIA_H200") == expected


def test_file_name_from_raw_device_name() -> None:
    problem = Shape(256, 256, 7168, 8, "fp8_w8a8", block_shape=(128, 128))
    assert FUSED_MOE.file_name(problem, "NVIDIA H200 NVL") == \
        "E=256,N=256,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
    assert FUSED_MOE.file_name(problem, "NVIDIA H100 80GB HBM3") == \
        "E=256,N=256,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128,128].json"
