import pytest

from searcher.kernels.fused_moe.config import CONFIG_KEYS, KernelConfig
from searcher.errors import ConfigError


def test_keys_in_vllm_order_and_round_trip():
    c = KernelConfig(64, 128, 64, 16, 8, 3)
    d = c.to_dict()
    assert list(d) == list(CONFIG_KEYS)
    assert KernelConfig.from_dict(d) == c
    assert hash(c) == hash(KernelConfig.from_dict(d))


def test_split_k_one_is_tolerated_other_keys_are_not():
    base = KernelConfig(16, 32, 64, 1, 4, 2).to_dict()
    assert KernelConfig.from_dict({**base, "SPLIT_K": 1}).BLOCK_SIZE_M == 16
    with pytest.raises(ConfigError, match="unknown key 'SPLIT_K' = 2"):
        KernelConfig.from_dict({**base, "SPLIT_K": 2})
    with pytest.raises(ConfigError, match="f.json: unknown key 'kpack'"):
        KernelConfig.from_dict({**base, "kpack": 2}, where="f.json")


def test_bad_values_are_named():
    base = KernelConfig(16, 32, 64, 1, 4, 2).to_dict()
    with pytest.raises(ConfigError, match="missing key.*num_stages"):
        KernelConfig.from_dict({k: v for k, v in base.items() if k != "num_stages"})
    with pytest.raises(ConfigError, match="num_warps = '4' must be an integer"):
        KernelConfig.from_dict({**base, "num_warps": "4"})
    with pytest.raises(ConfigError, match="BLOCK_SIZE_M = 0 must be at least 1"):
        KernelConfig.from_dict({**base, "BLOCK_SIZE_M": 0})
    with pytest.raises(ConfigError, match="must be an integer"):
        KernelConfig.from_dict({**base, "num_stages": True})
