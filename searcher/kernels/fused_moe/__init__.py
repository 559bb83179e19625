"""vLLM's fused Mixture-of-Experts layer as a tunable kernel (see ../shared/FUSED_MOE.md).

The folder holds everything specific to this kernel: the problem (:mod:`.problem`: E, N,
hidden, top_k, dtype, quantization), the config (:mod:`.config`: vLLM's six keys), vLLM's
default config (:mod:`.default`), vLLM's file name and layout (:mod:`.vllm_file`), the
Triton layer and its fp32 reference (:mod:`.layer`, :mod:`.triton_kernels`,
:mod:`.reference`), the backends that time it (:mod:`.backends`), the GPU workload
(:mod:`.workload`) and the made-up landscape ``--synthetic`` measures (:mod:`.synthetic`).
Importing this package imports neither torch nor triton.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from searcher.errors import SpecError, did_you_mean
from searcher.kernels.base import GpuPeak, Kernel, ModelStudy
from searcher.kernels.fused_moe.config import CONFIG_KEYS, KernelConfig
from searcher.kernels.fused_moe.default import vllm_default_config
from searcher.kernels.fused_moe.problem import DTYPES, Shape

if TYPE_CHECKING:  # pragma: no cover
    from searcher.measure.device import GpuFacts
    from searcher.kernels.fused_moe.synthetic import MoELandscape

__all__ = ["FusedMoE", "FUSED_MOE", "KernelConfig", "CONFIG_KEYS", "Shape",
           "vllm_default_config"]

_PROBLEM_KEYS = ("E", "N", "hidden", "top_k", "dtype", "block_shape", "per_channel", "ep")
#: dtypes whose tensor-core rate the GPU peaks are: bf16/fp16 at the dense bf16 rate, fp8
#: at twice it (Hopper's fp8 tensor cores); fp32 and int8_w8a16 (a bf16 MMA after a
#: dequantizing cast) have another or the bf16 rate, so fp32 gets no floor.
_TENSOR_RATE = {"bf16": 1.0, "fp16": 1.0, "fp8_w8a8": 2.0, "int8_w8a16": 1.0}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class FusedMoE(Kernel):
    """vLLM's fused MoE layer: top-k routing, alignment, two grouped GEMMs (one config)."""

    name = "fused_moe"
    config_keys = CONFIG_KEYS
    #: The layer's shape (E, N, hidden, top_k), bytes of a weight element, the batch size
    #: and the GPU's facts; ``block_n``/``block_k`` are the block-quantization tile (0 when
    #: the weights are not block-quantized); ``fp8`` is 1 for fp8_w8a8 (whose GEMMs run on
    #: fp8 tensor cores), else 0. ``a_bytes`` and ``b_bytes`` are the bytes of one element
    #: of the GEMMs' A (activation) and B (weight) tiles as they are staged in shared
    #: memory: 2 and 2 for bf16/fp16, 4 and 4 for fp32, 1 and 1 for fp8_w8a8 (vLLM
    #: quantizes the activations to e4m3 before each GEMM), 2 and 1 for int8_w8a16 (bf16
    #: activations, int8 weights converted after the load). ``dtype_bytes`` is the weight
    #: element's size, ``b_bytes`` under another name, kept for existing spaces.
    context_names = ("E", "N", "hidden", "top_k", "dtype_bytes", "M", "smem_per_block",
                     "sm_count", "block_n", "block_k", "fp8", "a_bytes", "b_bytes")
    problem_keys = _PROBLEM_KEYS
    #: Triton's tl.arange needs power-of-two lengths, and warps come in powers of two.
    power_of_two_keys = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "num_warps")

    def parse_problem(self, table: Mapping[str, Any]) -> Shape:
        for key in table:
            if key not in _PROBLEM_KEYS:
                raise SpecError(f"unknown key 'shape.{key}'{did_you_mean(key, _PROBLEM_KEYS)}; "
                                f"[shape] takes: {', '.join(_PROBLEM_KEYS)}")
        dims: dict[str, int] = {}
        for key in ("E", "N", "hidden", "top_k"):
            if key not in table:
                raise SpecError(f"missing required key 'shape.{key}' in [shape]")
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"shape.{key} = {_show(value)} must be an integer")
            if value < 1:
                raise SpecError(f"shape.{key} = {_show(value)} must be a positive integer")
            dims[key] = value
        dtype = table.get("dtype", "bf16")
        if not isinstance(dtype, str):
            raise SpecError(f"shape.dtype = {_show(dtype)} must be a string")
        if dtype not in DTYPES:
            raise SpecError(f"shape.dtype = {dtype!r} must be one of: "
                            f"{', '.join(DTYPES)}{did_you_mean(dtype, DTYPES)}")
        block = table.get("block_shape")
        if block is not None:
            if (not isinstance(block, list) or len(block) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int) for v in block)):
                raise SpecError(f"shape.block_shape = {_show(block)} must be two integers "
                                "[block_n, block_k], like [128, 128]")
            block = (block[0], block[1])
        per_channel = table.get("per_channel", False)
        if not isinstance(per_channel, bool):
            raise SpecError(f"shape.per_channel = {_show(per_channel)} must be true or false")
        ep = table.get("ep", 1)
        if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
            raise SpecError(f"shape.ep = {_show(ep)} must be a positive integer (the ranks "
                            "the experts are sharded over; E is the local count)")
        try:
            return Shape(dtype=dtype, block_shape=block, per_channel=per_channel, ep=ep,
                         **dims)
        except SpecError as exc:
            raise SpecError(f"[shape] {exc}") from None

    def problem_table(self, problem: Shape) -> dict[str, Any]:
        table: dict[str, Any] = {"E": problem.E, "N": problem.N, "hidden": problem.hidden,
                                 "top_k": problem.top_k, "dtype": problem.dtype}
        if problem.block_shape is not None:
            table["block_shape"] = list(problem.block_shape)
        if problem.per_channel:
            table["per_channel"] = True
        if problem.ep > 1:
            table["ep"] = problem.ep
        return table

    def study_from_model(self, config: Mapping[str, Any], tp: int = 1, ep: int = 1,
                         dtype: str = "auto") -> ModelStudy:
        """The routed experts' layer on one rank (:mod:`.model`), on the ``extended``
        space for bf16/fp16 and ``extended-quant`` for quantized dtypes."""
        from searcher.kernels.fused_moe.model import layer_from_config

        layer = layer_from_config(config, tp=tp, ep=ep, dtype=dtype)
        shape = layer.shape
        space = "extended-quant" if shape.quantized else "extended"
        summary = (f"MoE layer E={shape.E}, N={shape.N}, hidden {shape.hidden}, top_k "
                   f"{shape.top_k} ({layer.parallel}), {layer.tag}")
        return ModelStudy(problem=shape, name=f"{layer.parallel}-{layer.tag}", space=space,
                          summary=summary, facts=layer.facts, notes=layer.notes)

    def make_config(self, values: Sequence[int]) -> KernelConfig:
        return KernelConfig(*values)

    def config_from_dict(self, data: Mapping[str, Any], where: str = "config") -> KernelConfig:
        return KernelConfig.from_dict(data, where)

    def context(self, problem: Shape, M: int, gpu: GpuFacts) -> dict[str, int]:
        if isinstance(M, bool) or not isinstance(M, int) or M < 1:
            raise SpecError(f"M = {M!r} must be a positive integer")
        block_n, block_k = problem.block_shape or (0, 0)
        return {
            "E": problem.E,
            "N": problem.N,
            "hidden": problem.hidden,
            "top_k": problem.top_k,
            "dtype_bytes": problem.element_size,
            "M": M,
            "smem_per_block": gpu.shared_mem_per_block,
            "sm_count": gpu.sm_count,
            "block_n": block_n,
            "block_k": block_k,
            "fp8": int(problem.dtype == "fp8_w8a8"),
            "a_bytes": 1 if problem.dtype == "fp8_w8a8" else problem.activation_size,
            "b_bytes": problem.element_size,
        }

    def default_config(self, problem: Shape, M: int) -> KernelConfig:
        """vLLM 0.33.0's ``get_default_config`` for this problem's dtype and block shape
        (per-channel fp8 gets the per-tensor default: vLLM passes it the same arguments)."""
        return vllm_default_config(M, problem.E, problem.dtype, problem.block_shape)

    def file_name(self, problem: Shape, device: str) -> str:
        from searcher.kernels.fused_moe.vllm_file import config_file_name

        return config_file_name(problem.E, problem.N, device, problem.dtype,
                                problem.block_shape)

    def render_file(self, triton_version: str, configs: Mapping[int, KernelConfig]) -> str:
        from searcher.kernels.fused_moe.vllm_file import render_config_file

        return render_config_file(triton_version, configs)

    def read_file(self, path: Any) -> tuple[str | None, dict[int, KernelConfig]]:
        from searcher.kernels.fused_moe.vllm_file import read_config_file

        return read_config_file(path)

    def installed_file(self, problem: Shape, device: str) -> Any:
        from searcher.kernels.fused_moe.vllm_file import installed_config_file

        return installed_config_file(self.file_name(problem, device))

    def check_file_name(self, problem: Shape, path: Any) -> None:
        from searcher.kernels.fused_moe.vllm_file import check_file_name

        check_file_name(path, self.file_name(problem, "DEVICE"))

    def check_device(self, problem: Shape, capability: str) -> None:
        """fp8_w8a8 needs e4m3 tensor-core dots: compute capability 8.9 (Ada) or newer, as
        Triton's fp8 ``tl.dot`` does. vLLM 0.33.0 runs fp8 MoE checkpoints on older GPUs
        (A100: 8.0) with its Marlin kernel (fp8 weights, 16-bit activations), not with
        this Triton kernel, so there is nothing for this kernel to tune there."""
        from searcher.errors import SpecError

        major, _, minor = capability.partition(".")
        if problem.dtype == "fp8_w8a8" and (int(major), int(minor or 0)) < (8, 9):
            raise SpecError(
                f"dtype = 'fp8_w8a8' needs a GPU of compute capability 8.9 or newer (fp8 "
                f"tensor-core dots); this one is {capability}, where vLLM runs fp8 MoE "
                "weights with its Marlin kernel instead of this Triton kernel")

    def floor_us(self, problem: Shape, M: int, peak: GpuPeak) -> float | None:
        rate = _TENSOR_RATE.get(problem.dtype)
        if rate is None:
            return None
        moved = problem.weight_bytes(M) + 2 * M * problem.hidden * problem.activation_size
        return 1e6 * max(moved / peak.bandwidth, problem.flops(M) / (peak.tensor_flops * rate))

    def synthetic_landscape(self, problem: Shape, gpu: GpuFacts) -> MoELandscape:
        from searcher.kernels.fused_moe.synthetic import MoELandscape

        return MoELandscape(problem, gpu)

    def workload(self, problem: Shape, backend: str, seed: int) -> Any:
        from searcher.kernels.fused_moe.workload import FusedMoEWorkload

        return FusedMoEWorkload(problem, backend, seed)

    def backends(self) -> tuple[str, ...]:
        return ("builtin", "vllm")


#: The registered instance.
FUSED_MOE = FusedMoE()
