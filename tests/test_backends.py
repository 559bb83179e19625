import sys
import types

import pytest

from searcher.kernels.fused_moe.backends import BuiltinBackend, get_backend
from searcher.kernels.fused_moe.config import KernelConfig
from searcher.errors import BackendError


def test_builtin_is_the_default_name():
    assert isinstance(get_backend("builtin"), BuiltinBackend)


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(BackendError, match=r"unknown backend 'vlm'.*builtin, vllm.*did you mean 'vllm'"):
        get_backend("vlm")


def test_vllm_backend_without_vllm_fails_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(BackendError, match="needs the vllm package.*use the default backend 'builtin'"):
        get_backend("vllm")


def test_vllm_backend_forces_the_config_through_override_config(monkeypatch):
    """With a stand-in vllm module: the config reaches override_config as vLLM's dict, and
    fused_topk/fused_experts are called inside it."""
    calls = []

    class Override:
        def __init__(self, config):
            calls.append(("override", config))

        def __enter__(self):
            calls.append(("enter",))

        def __exit__(self, *exc):
            calls.append(("exit",))

    def fused_topk(x, logits, top_k, renormalize):
        calls.append(("topk", top_k, renormalize))
        return "w", "ids", "idx"

    def fused_experts(x, w1, w2, w, ids):
        calls.append(("experts", w, ids))
        return "out"

    pkg = types.ModuleType("vllm")
    fm = types.ModuleType("vllm.model_executor.layers.fused_moe")
    fm.override_config = Override
    fmm = types.ModuleType("vllm.model_executor.layers.fused_moe.fused_moe")
    fmm.fused_experts = fused_experts
    fmm.fused_topk = fused_topk
    for name, mod in [("vllm", pkg), ("vllm.model_executor", types.ModuleType("x")),
                      ("vllm.model_executor.layers", types.ModuleType("y")),
                      ("vllm.model_executor.layers.fused_moe", fm),
                      ("vllm.model_executor.layers.fused_moe.fused_moe", fmm)]:
        monkeypatch.setitem(sys.modules, name, mod)
    backend = get_backend("vllm")
    shape = types.SimpleNamespace(top_k=6)
    inputs = types.SimpleNamespace(shape=shape, x="x", logits="logits", w1="w1", w2="w2")
    config = KernelConfig(64, 128, 64, 1, 8, 3)
    layer = backend.layer(inputs, config)
    assert layer() == "out"
    assert calls == [("override", config.to_dict()), ("enter",), ("topk", 6, True),
                     ("experts", "w", "ids"), ("exit",)]


def test_vllm_backend_refuses_quantized_layers(monkeypatch):
    """searcher passes vLLM's call no scales, so a quantized layer would be timed wrong."""
    from searcher.kernels.fused_moe.backends import VllmBackend
    from searcher.kernels.fused_moe.problem import Shape

    monkeypatch.setattr("searcher.kernels.fused_moe.backends._import_vllm", lambda: {})
    backend = VllmBackend()
    backend.check(Shape(8, 64, 64, 2, "bf16"))
    with pytest.raises(BackendError, match="backend 'vllm' times bf16/fp16 layers only.*fp8_w8a8"):
        backend.check(Shape(8, 64, 64, 2, "fp8_w8a8"))
