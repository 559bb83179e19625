"""Which GPU a measurement came from, named the way vLLM names its config files."""

from __future__ import annotations

import platform
import re
from dataclasses import asdict, dataclass
from typing import Any

from searcher.errors import NoGPUError

__all__ = [
    "DeviceInfo",
    "GpuFacts",
    "KNOWN_GPUS",
    "vllm_device_name",
    "current_device",
    "cuda_available",
]


@dataclass(frozen=True)
class GpuFacts:
    """What space constraints may ask of a GPU without having it: for CPU validation,
    grid enumeration and replay of studies made for that GPU."""

    shared_mem_per_block: int  # bytes a block may opt in to
    sm_count: int


#: Facts of the GPUs the shipped studies target, keyed by vLLM's device name.
KNOWN_GPUS: dict[str, GpuFacts] = {
    "NVIDIA_A100-SXM4-80GB": GpuFacts(shared_mem_per_block=166912, sm_count=108),
    "NVIDIA_A100-SXM4-40GB": GpuFacts(shared_mem_per_block=166912, sm_count=108),
    "NVIDIA_H100_80GB_HBM3": GpuFacts(shared_mem_per_block=232448, sm_count=132),
    "NVIDIA_H200": GpuFacts(shared_mem_per_block=232448, sm_count=132),
}


def vllm_device_name(raw: str) -> str:
    """Normalise a ``torch.cuda.get_device_name()`` string as vLLM's file names do.

    Every run of whitespace or '/' becomes '_'; a name with an ``H200`` token becomes
    ``NVIDIA_H200``.

    >>> vllm_device_name("NVIDIA H100 80GB HBM3")
    'NVIDIA_H100_80GB_HBM3'
    >>> vllm_device_name("NVIDIA H200 NVL")
    'NVIDIA_H200'
    """
    name = re.sub(r"[\s/]+", "_", raw.strip())
    if "H200" in name.split("_"):
        return "NVIDIA_H200"
    return name


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU and software stack a measurement was taken on."""

    name: str  # as torch reports it
    vllm_name: str  # as vLLM's config file names spell it
    capability: str  # "9.0"
    sm_count: int
    shared_mem_per_block: int  # bytes a block may opt in to
    torch_version: str
    triton_version: str
    cuda_version: str
    driver_version: str
    python_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def facts(self) -> GpuFacts:
        return GpuFacts(shared_mem_per_block=self.shared_mem_per_block, sm_count=self.sm_count)


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU. Imports torch."""
    import torch

    return torch.cuda.is_available()


def _driver_version() -> str:
    try:
        import torch

        if hasattr(torch.cuda, "driver_version"):  # not in every release
            return str(torch.cuda.driver_version())
    except Exception:
        pass
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from pathlib import Path

        text = Path("/proc/driver/nvidia/version").read_text()
        match = re.search(r"Kernel Module\s+([\d.]+)", text)
        if match:
            return match.group(1)
    except OSError:
        pass
    return "unknown"


def current_device(index: int | None = None) -> DeviceInfo:
    """Describe the current (or given) CUDA device.

    Raises:
        NoGPUError: torch sees no CUDA GPU.
    """
    import torch
    import triton

    if not torch.cuda.is_available():
        raise NoGPUError("no CUDA GPU is visible to torch on this machine")
    if index is None:
        index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    smem = getattr(props, "shared_memory_per_block_optin", 0)
    if not smem:
        from triton.runtime import driver

        smem = driver.active.utils.get_device_properties(index)["max_shared_mem"]
    return DeviceInfo(
        name=props.name,
        vllm_name=vllm_device_name(props.name),
        capability=f"{props.major}.{props.minor}",
        sm_count=props.multi_processor_count,
        shared_mem_per_block=int(smem),
        torch_version=torch.__version__,
        triton_version=triton.__version__,
        cuda_version=str(torch.version.cuda),
        driver_version=_driver_version(),
        python_version=platform.python_version(),
    )
