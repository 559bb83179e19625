"""Kernel backends by name: what one layer call runs under a given config.

``builtin`` is searcher's own Triton implementation (the default). ``vllm`` runs vLLM's
own fused-experts call with the config forced through vLLM's ``override_config``; it is
available only where ``vllm`` is importable, and choosing it elsewhere fails with a
message. Both expose the same small interface, so the harness times either one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.errors import BackendError, did_you_mean
from searcher.kernels.base import LayerCall

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from searcher.kernels.fused_moe.layer import MoEInputs
    from searcher.kernels.fused_moe.problem import Shape

__all__ = ["Backend", "BACKENDS", "get_backend", "BuiltinBackend", "VllmBackend"]


class Backend(Protocol):
    name: str

    def check(self, shape: Shape) -> None:
        """Raise BackendError if this backend cannot run ``shape``."""

    def layer(self, inputs: MoEInputs, config: KernelConfig) -> LayerCall:
        """Prepare a layer call of ``inputs`` under ``config`` (buffers, not compiled)."""


class _BuiltinLayer:
    def __init__(self, inputs: MoEInputs, config: KernelConfig, workspace) -> None:
        self.inputs = inputs
        self.config = config
        self.workspace = workspace

    def compile(self) -> None:
        from searcher.kernels.fused_moe.layer import compile_config

        compile_config(self.inputs, self.config, self.workspace)

    def __call__(self) -> torch.Tensor:
        from searcher.kernels.fused_moe.layer import fused_moe

        return fused_moe(self.inputs, self.config, self.workspace)


class BuiltinBackend:
    """searcher's own Triton kernels (see ``searcher/kernels``)."""

    name = "builtin"

    #: Workspaces kept alive at once; each holds the layer's intermediate buffers for one
    #: (batch size, BLOCK_SIZE_M), shared by every config with that BLOCK_SIZE_M.
    MAX_WORKSPACES = 6

    def __init__(self, naive: bool | None = None) -> None:
        self.naive = naive  # None: vLLM 0.33's rule decides the tiny-batch path
        self._workspaces: dict[tuple[int, int], object] = {}

    def check(self, shape: Shape) -> None:
        return None  # every problem type searcher knows

    def layer(self, inputs: MoEInputs, config: KernelConfig) -> LayerCall:
        from searcher.kernels.fused_moe.layer import MoEWorkspace

        key = (id(inputs), config.BLOCK_SIZE_M)
        ws = self._workspaces.pop(key, None)
        if ws is None:
            ws = MoEWorkspace(inputs, config.BLOCK_SIZE_M, naive=self.naive)
            while len(self._workspaces) >= self.MAX_WORKSPACES:
                self._workspaces.pop(next(iter(self._workspaces)))
        self._workspaces[key] = ws  # most recently used last
        return _BuiltinLayer(inputs, config, ws)


class _VllmLayer:
    def __init__(self, api: dict[str, Callable], inputs: MoEInputs, config: KernelConfig) -> None:
        self.api = api
        self.inputs = inputs
        self.config = config

    def compile(self) -> None:
        # vLLM compiles inside its own call; the first eager call does it.
        return None

    def __call__(self) -> torch.Tensor:
        inputs = self.inputs
        with self.api["override_config"](self.config.to_dict()):
            weights, ids, *_ = self.api["fused_topk"](
                inputs.x, inputs.logits, inputs.shape.top_k, renormalize=True
            )
            return self.api["fused_experts"](inputs.x, inputs.w1, inputs.w2, weights, ids)


class VllmBackend:
    """vLLM's own ``fused_experts`` with the config forced by ``override_config``, timed
    the way vLLM's ``benchmark_moe.py`` does. Needs ``vllm`` importable."""

    name = "vllm"

    def __init__(self) -> None:
        self.api = _import_vllm()

    def check(self, shape: Shape) -> None:
        if shape.ep > 1:
            raise BackendError(
                f"backend 'vllm' is not wired for expert parallelism ({shape.label()}: "
                "searcher does not pass vLLM an expert_map); use the default backend "
                "'builtin', which routes over all E * ep experts and skips other ranks'"
            )
        if shape.quantized:
            raise BackendError(
                f"backend 'vllm' times bf16/fp16 layers only; {shape.label()} is quantized "
                "(vLLM's quantized call takes scales searcher does not pass to it): use the "
                "default backend 'builtin', which computes vLLM 0.33.0's quantized layer"
            )

    def layer(self, inputs: MoEInputs, config: KernelConfig) -> LayerCall:
        return _VllmLayer(self.api, inputs, config)


def _import_vllm() -> dict[str, Callable]:
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            "backend 'vllm' needs the vllm package, which is not importable here "
            f"({exc}); install vllm or use the default backend 'builtin'"
        ) from None
    import importlib

    found: dict[str, Callable] = {}
    # Where vLLM has kept these over its releases; the first hit wins.
    places = {
        "override_config": ["vllm.model_executor.layers.fused_moe",
                            "vllm.model_executor.layers.fused_moe.fused_moe"],
        "fused_experts": ["vllm.model_executor.layers.fused_moe.fused_moe",
                          "vllm.model_executor.layers.fused_moe"],
        "fused_topk": ["vllm.model_executor.layers.fused_moe.fused_moe",
                       "vllm.model_executor.layers.fused_moe.router.fused_topk_router",
                       "vllm.model_executor.layers.fused_moe"],
    }
    for name, modules in places.items():
        for module in modules:
            try:
                obj = getattr(importlib.import_module(module), name, None)
            except ImportError:
                obj = None
            if obj is not None:
                found[name] = obj
                break
        else:
            raise BackendError(
                f"backend 'vllm': this vllm has no {name} in {', '.join(modules)}; "
                "its fused-MoE API is not one searcher knows"
            )
    return found


BACKENDS: dict[str, Callable[[], Backend]] = {
    "builtin": BuiltinBackend,
    "vllm": VllmBackend,
}


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``.

    Raises:
        BackendError: unknown name (with the known ones), or the backend cannot run here.
    """
    if name not in BACKENDS:
        hint = did_you_mean(name, BACKENDS)
        raise BackendError(
            f"unknown backend {name!r}; must be one of: {', '.join(sorted(BACKENDS))}{hint}"
        )
    return BACKENDS[name]()
