"""searcher: search-based tuning of Triton kernel launch configurations.

The kernels are registered in :mod:`searcher.kernels` (the first is vLLM's fused
Mixture-of-Experts layer, whose value objects are re-exported here). Heavy imports
(torch, triton, optuna) happen lazily inside the modules that need them, so validating
specs, listing studies and exporting work on a machine without a GPU.

The subpackages follow the architecture: :mod:`searcher.study` (what is searched: specs,
spaces, constraints), :mod:`searcher.strategies` (how the search chooses: samplers,
pruners, the decision rule), :mod:`searcher.measure` (where measurements come from),
:mod:`searcher.store` (the stored record), :mod:`searcher.tune` (running a study: search,
grid, workers) and :mod:`searcher.results` (reading results back: winners, reports,
comparisons, vLLM files); :mod:`searcher.cli` is the command line.
"""

from __future__ import annotations

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
from searcher.kernels import KERNELS, Kernel, get_kernel
from searcher.kernels.fused_moe import CONFIG_KEYS, KernelConfig, Shape, vllm_default_config
from searcher.measure.device import DeviceInfo, vllm_device_name
from searcher.measure.measurement import FIDELITIES, Fidelity, Measurement, Status

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CONFIG_KEYS",
    "ConfigError",
    "DeviceInfo",
    "ExportError",
    "FIDELITIES",
    "Fidelity",
    "KERNELS",
    "Kernel",
    "KernelConfig",
    "Measurement",
    "NoGPUError",
    "SearcherError",
    "Shape",
    "SpaceError",
    "SpecError",
    "Status",
    "StorageError",
    "get_kernel",
    "vllm_default_config",
    "vllm_device_name",
]
