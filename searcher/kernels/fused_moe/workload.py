"""What the GPU harness times for a fused-MoE problem: the layer's tensors per batch size,
fresh router logits before every replay, and layer calls under a config.

Inputs follow vLLM's tuner (``benchmark_moe.py``): ``randn`` hidden states and weights
(quantized weights are ``randn`` values quantized per the problem's scheme, see
:func:`~searcher.kernels.fused_moe.layer.quantize_weights`), fp32 router logits copied in
before each replay from :data:`LOGIT_SETS` prepared sets (which set: the harness's
:func:`~searcher.measure.harness.replay_inputs`). Expert weights are made once
and shared by every batch size. Importing this module imports torch.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from searcher.kernels.base import LayerCall
from searcher.kernels.fused_moe.backends import Backend, get_backend
from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.layer import TORCH_DTYPES, MoEInputs, quantize_weights
from searcher.kernels.fused_moe.problem import Shape

__all__ = ["FusedMoEWorkload", "LOGIT_SETS"]

#: Router-logit sets kept per batch size: at least the harness's ``INPUT_SETS`` (25), and
#: 32 so that the ``legacy`` replay order (``i % 32``) can still be benchmarked. The first
#: 32 sets of a seed are the same as before the replay order changed.
LOGIT_SETS = 32


class FusedMoEWorkload:
    """The fused-MoE layer of one problem on the current CUDA device.

    Args:
        shape: the layer.
        backend: ``builtin`` (searcher's Triton layer) or ``vllm``, or a backend object.
        seed: seeds weights, hidden states and router logits, so runs are comparable.

    Raises:
        BackendError: an unknown backend, or one that cannot run here or this problem.
    """

    def __init__(self, shape: Shape, backend: str | Backend = "builtin", seed: int = 0) -> None:
        self.shape = shape
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        self.backend.check(shape)
        self.seed = seed
        self._inputs: dict[int, MoEInputs] = {}
        self._logit_sets: dict[int, torch.Tensor] = {}
        self._weights: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _make_weights(self) -> dict[str, Any]:
        s = self.shape
        gen = torch.Generator(device="cuda").manual_seed(self.seed)
        weights: dict[str, Any] = {}
        # One expert at a time for the quantized dtypes: the fp32 staging copy of all
        # experts' weights would be 4x the layer (3.8 GB for DeepSeek-V3's w1 at TP=8).
        for name, (n_out, k) in (("w1", (2 * s.N, s.hidden)), ("w2", (s.hidden, s.N))):
            parts, scales = [], []
            for _ in range(s.E):
                w = torch.randn(1, n_out, k, generator=gen, device="cuda", dtype=torch.float32)
                q, scale = quantize_weights(w, s)
                parts.append(q)
                scales.append(scale)
            weights[name] = torch.cat(parts)
            weights[f"{name}_scale"] = None if scales[0] is None else torch.cat(scales)
        return weights

    def inputs(self, M: int) -> MoEInputs:
        """The problem tensors for batch size M (expert weights shared by every M)."""
        with self._lock:
            if M in self._inputs:
                return self._inputs[M]
            s = self.shape
            if self._weights is None:
                self._weights = self._make_weights()
            gen = torch.Generator(device="cuda").manual_seed(self.seed * 1_000_003 + M)
            x = torch.randn(M, s.hidden, generator=gen, device="cuda",
                            dtype=TORCH_DTYPES[s.dtype])
            self._logit_sets[M] = torch.randn(LOGIT_SETS, M, s.routed_experts, generator=gen, device="cuda",
                                              dtype=torch.float32)
            logits = self._logit_sets[M][0].clone()
            inputs = MoEInputs(shape=s, M=M, x=x, logits=logits, **self._weights)
            if s.scheme == "per_tensor":
                from searcher.kernels.fused_moe.reference import static_activation_scales

                inputs.a1_scale, inputs.a2_scale = static_activation_scales(inputs)
            self._inputs[M] = inputs
            return inputs

    def layer(self, M: int, config: KernelConfig) -> LayerCall:
        """A layer call of batch size M under ``config`` (buffers made, not compiled)."""
        return self.backend.layer(self.inputs(M), config)

    def refresh(self, M: int, inputs: int) -> None:
        """Copy router-logit set ``inputs`` (0 .. LOGIT_SETS - 1, the harness's pick for
        this replay) into the layer's input (outside timing)."""
        self._inputs[M].logits.copy_(self._logit_sets[M][inputs % LOGIT_SETS])

    def info(self) -> dict[str, Any]:
        """What a measurement records of the workload besides the device."""
        return {"backend": self.backend.name}
