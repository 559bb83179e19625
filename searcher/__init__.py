"""searcher: search-based tuning of Triton kernel launch configurations.

The first kernel is vLLM's fused Mixture-of-Experts layer. Heavy imports (torch, triton,
optuna) happen lazily inside the modules that need them, so validating specs, listing
studies and exporting work on a machine without a GPU.
"""

from __future__ import annotations

from searcher.kernels.fused_moe.config import CONFIG_KEYS, KernelConfig
from searcher.kernels.fused_moe.default import vllm_default_config
from searcher.device import DeviceInfo, vllm_device_name
from searcher.errors import (
    BackendError,
    ConfigError,
    ExportError,
    NoGPUError,
    SearcherError,
    SpaceError,
    SpecError,
    StorageError,
)
from searcher.measurement import FIDELITIES, Fidelity, Measurement, Status
from searcher.kernels.fused_moe.problem import Shape

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CONFIG_KEYS",
    "ConfigError",
    "DeviceInfo",
    "ExportError",
    "FIDELITIES",
    "Fidelity",
    "KernelConfig",
    "Measurement",
    "NoGPUError",
    "SearcherError",
    "Shape",
    "SpaceError",
    "SpecError",
    "Status",
    "StorageError",
    "vllm_default_config",
    "vllm_device_name",
]
