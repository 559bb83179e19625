import pytest

from searcher.device import KNOWN_GPUS, vllm_device_name


@pytest.mark.parametrize("raw,name", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA_H100_80GB_HBM3"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA_A100-SXM4-80GB"),
    ("NVIDIA H200", "NVIDIA_H200"),
    ("NVIDIA H200 NVL", "NVIDIA_H200"),
    ("NVIDIA H200 141GB HBM3e", "NVIDIA_H200"),
    ("NVIDIA H20", "NVIDIA_H20"),  # not an H200
    ("NVIDIA GeForce RTX 4090", "NVIDIA_GeForce_RTX_4090"),
    ("AMD Instinct MI300X / MI300A", "AMD_Instinct_MI300X_MI300A"),
    ("Tesla  V100-SXM2-16GB", "Tesla_V100-SXM2-16GB"),
])
def test_vllm_device_name(raw, name):
    assert vllm_device_name(raw) == name


def test_known_gpus_are_spelled_as_vllm_spells_them():
    for name in KNOWN_GPUS:
        assert vllm_device_name(name) == name
