import pytest

from searcher.measure.device import KNOWN_GPUS, vllm_device_name


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


def _fake_gpu(monkeypatch, name, vllm_name, capability):
    import searcher.measure.device as device

    info = device.DeviceInfo(name=name, vllm_name=vllm_name, capability=capability, sm_count=108,
                             shared_mem_per_block=166912, torch_version="t", triton_version="t",
                             cuda_version="c", driver_version="d", python_version="p")
    monkeypatch.setattr(device, "cuda_available", lambda: True)
    monkeypatch.setattr(device, "current_device", lambda index=None: info)


def test_fp8_needs_capability_8_9(monkeypatch, tmp_path, capsys):
    """An fp8_w8a8 study on an A100 (8.0) is one line and exit 2 before anything is
    measured or stored; bf16 on the A100 and fp8 on an H200 pass the check."""
    from searcher.cli import main
    from searcher.errors import SpecError
    from searcher.kernels.fused_moe import FUSED_MOE, Shape

    fp8 = Shape(E=8, N=7168, hidden=4096, top_k=2, dtype="fp8_w8a8")
    with pytest.raises(SpecError, match="compute capability 8.9 or newer.*this one is 8.0"):
        FUSED_MOE.check_device(fp8, "8.0")
    FUSED_MOE.check_device(fp8, "8.9")
    FUSED_MOE.check_device(fp8, "9.0")
    FUSED_MOE.check_device(Shape(E=8, N=7168, hidden=4096, top_k=2, dtype="bf16"), "8.0")

    _fake_gpu(monkeypatch, "NVIDIA A100-SXM4-80GB", "NVIDIA_A100-SXM4-80GB", "8.0")
    db = tmp_path / "a100.db"
    code = main(["run", "--model", "tests/data/models/mixtral-8x7b-instruct-v0.1/config.json",
                 "--dtype", "fp8_w8a8", "--tp", "2", "--storage", f"sqlite:///{db}",
                 "--no-live"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "this one is 8.0" in err[0], err
    assert not db.exists()  # refused before the storage is opened
