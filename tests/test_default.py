import pytest

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.default import vllm_default_config

# (M, E) -> expected keys, straight from the heuristic's table in FUSED_MOE.md.
CASES = [
    (1, 64, KernelConfig(16, 64, 128, 1, 4, 4)),
    (32, 64, KernelConfig(16, 64, 128, 1, 4, 4)),
    (33, 64, KernelConfig(32, 64, 128, 1, 4, 3)),
    (64, 64, KernelConfig(32, 64, 128, 1, 4, 3)),
    (65, 64, KernelConfig(32, 128, 64, 1, 4, 3)),
    (96, 64, KernelConfig(32, 128, 64, 1, 4, 3)),
    (97, 64, KernelConfig(64, 128, 64, 1, 4, 3)),
    (128, 64, KernelConfig(64, 128, 64, 1, 4, 3)),
    (129, 64, KernelConfig(64, 128, 64, 1, 8, 3)),
    (512, 64, KernelConfig(64, 128, 64, 1, 8, 3)),
    (513, 64, KernelConfig(128, 128, 64, 1, 8, 3)),
    (4096, 64, KernelConfig(128, 128, 64, 1, 8, 3)),  # 4096 // 64 = 64: no grouping
    (4096, 8, KernelConfig(128, 128, 64, 16, 8, 3)),  # 512 > 128: grouping
]


@pytest.mark.parametrize("M,E,expected", CASES)
def test_default_heuristic(M, E, expected):
    assert vllm_default_config(M, E) == expected


def test_group_size_switches_when_rows_per_expert_exceed_128():
    assert vllm_default_config(128 * 64 + 63, 64).GROUP_SIZE_M == 1  # M // E == 128
    assert vllm_default_config(129 * 64, 64).GROUP_SIZE_M == 16  # M // E == 129


def test_rocm_uses_two_stages_at_every_batch_size():
    # vLLM 0.33.0 get_default_config: on ROCm num_stages = 2 is chosen before the M <= 32
    # test, so small batches get 2 stages too (not 4 as on CUDA).
    assert vllm_default_config(16, 64, rocm=True).num_stages == 2
    assert vllm_default_config(64, 64, rocm=True).num_stages == 2
    assert vllm_default_config(16, 64).num_stages == 4
