"""The problem a fused-MoE config is tuned for: the layer's shape and its quantization."""

from __future__ import annotations

from dataclasses import dataclass

from searcher.errors import SpecError

__all__ = ["Shape", "DTYPES", "QUANTIZED_DTYPES", "ACTIVATION_DTYPE"]

#: dtypes the built-in layer runs, with the size in bytes of one weight element (what the
#: weight traffic, the roofline and the shared-memory constraints count). fp32 exists for
#: tests. ``fp8_w8a8``: e4m3 weights and activations (per-tensor, per-channel or
#: block-wise scales); ``int8_w8a16``: int8 weights with per-channel scales and bf16
#: activations. Names are vLLM 0.33.0's (``_get_config_dtype_str``).
DTYPES: dict[str, int] = {"bf16": 2, "fp16": 2, "fp32": 4, "fp8_w8a8": 1, "int8_w8a16": 1}

#: The quantized dtypes; their layer's hidden states (input and output) are bf16, as in
#: vLLM's tuner (benchmark_moe.py makes bf16 hidden states for every quantized dtype).
QUANTIZED_DTYPES: tuple[str, ...] = ("fp8_w8a8", "int8_w8a16")
ACTIVATION_DTYPE = "bf16"


@dataclass(frozen=True)
class Shape:
    """A fused MoE layer: E experts, intermediate size N per partition, hidden size H.

    ``w1`` is [E, 2N, H] (gate and up stacked), ``w2`` is [E, H, N].

    Quantization (vLLM 0.33.0's ``fused_experts`` arguments):
        * ``dtype = "fp8_w8a8"`` alone: per-tensor, one weight scale per expert and one
          activation scale per GEMM, applied after the K loop.
        * ``fp8_w8a8`` with ``per_channel``: one weight scale per output row of each
          expert, activations quantized per token (``per_act_token_quant``).
        * ``fp8_w8a8`` with ``block_shape = (block_n, block_k)``: one weight scale per
          [block_n, block_k] tile, activations quantized per token per block_k columns,
          scales applied inside the K loop.
        * ``int8_w8a16``: int8 weights, one scale per output row, bf16 activations.

    Expert parallelism (``ep`` > 1, vLLM's expert parallelism over ep = tp x dp ranks):
    ``E`` is the rank's local expert count (the file's E), the model has ``E * ep``
    experts, and the router picks top_k distinct experts of all ``E * ep``, as vLLM's
    does; routed rows of other ranks' experts are aligned and then skipped (their blocks'
    expert id is -1, as vLLM's ``expert_map`` makes them). So top_k may exceed E (Kimi K2
    at ep = 64: 6 local experts, top_k 8), but never ``E * ep``. With ``ep = 1`` (every
    study written before) ``top_k > E`` stays an error, which catches typos. The file name
    does not carry ep (vLLM's does not); the study label does, since the workload differs.

    Raises:
        SpecError: a size is not a positive integer, top_k > E * ep, an unknown dtype, or
            a quantization option with a dtype that does not take it.
    """

    E: int
    N: int
    hidden: int
    top_k: int
    dtype: str = "bf16"
    block_shape: tuple[int, int] | None = None
    per_channel: bool = False
    ep: int = 1

    def __post_init__(self) -> None:
        for name in ("E", "N", "hidden", "top_k", "ep"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name} = {value!r} must be a positive integer")
        if self.top_k > self.routed_experts:
            if self.ep == 1:
                raise SpecError(
                    f"top_k = {self.top_k} must not exceed E = {self.E} (for E local experts "
                    "of an expert-parallel layer, set ep, the number of ranks the experts "
                    "are sharded over)")
            raise SpecError(f"top_k = {self.top_k} must not exceed the E * ep = "
                            f"{self.E} * {self.ep} = {self.routed_experts} experts routed over")
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype = {self.dtype!r} must be one of: {', '.join(DTYPES)}")
        if self.block_shape is not None:
            block = self.block_shape
            if (not isinstance(block, tuple) or len(block) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                           for v in block)):
                raise SpecError(
                    f"block_shape = {list(block) if isinstance(block, tuple) else block!r} "
                    "must be two positive integers [block_n, block_k], like [128, 128]"
                )
            if self.dtype != "fp8_w8a8":
                raise SpecError(
                    f"block_shape = [{block[0]}, {block[1]}] applies to dtype = 'fp8_w8a8' "
                    f"only, not {self.dtype!r} (int8_w8a16 with groups runs vLLM's wna16 "
                    "kernel, which searcher does not tune)"
                )
            if any(v & (v - 1) for v in block) or min(block) < 16:
                raise SpecError(
                    f"block_shape = [{block[0]}, {block[1]}] must be powers of two of at "
                    "least 16 (BLOCK_SIZE_K is clamped to min(block_shape) and Triton "
                    "tiles are powers of two)"
                )
        if not isinstance(self.per_channel, bool):
            raise SpecError(f"per_channel = {self.per_channel!r} must be true or false")
        if self.per_channel:
            if self.dtype != "fp8_w8a8":
                raise SpecError(
                    f"per_channel = true applies to dtype = 'fp8_w8a8' only, not "
                    f"{self.dtype!r} (int8_w8a16 is always per-channel)"
                )
            if self.block_shape is not None:
                raise SpecError(
                    "per_channel = true and block_shape are two different fp8 schemes; "
                    "give one of them"
                )

    @property
    def routed_experts(self) -> int:
        """The experts the router picks from: all ranks' (E * ep)."""
        return self.E * self.ep

    @property
    def element_size(self) -> int:
        """Bytes of one weight element (and of one GEMM operand element in shared memory
        for fp8; int8_w8a16 stages bf16 activations beside int8 weights)."""
        return DTYPES[self.dtype]

    @property
    def quantized(self) -> bool:
        return self.dtype in QUANTIZED_DTYPES

    @property
    def activation_dtype(self) -> str:
        """dtype of the layer's hidden states (input and output)."""
        return ACTIVATION_DTYPE if self.quantized else self.dtype

    @property
    def activation_size(self) -> int:
        return DTYPES[self.activation_dtype]

    @property
    def scheme(self) -> str:
        """The quantization scheme: ``none``, ``per_tensor``, ``per_channel`` or
        ``block`` for fp8_w8a8, ``per_channel`` for int8_w8a16."""
        if self.dtype == "int8_w8a16":
            return "per_channel"
        if self.dtype != "fp8_w8a8":
            return "none"
        if self.block_shape is not None:
            return "block"
        return "per_channel" if self.per_channel else "per_tensor"

    def label(self) -> str:
        """The identity in study names, e.g. ``E=64,N=1408,H=2048,top_k=6,bf16`` or
        ``E=256,N=256,H=7168,top_k=8,fp8_w8a8,block_shape=[128,128]``. Unquantized labels
        are those of earlier searcher versions, so their stored studies still resume."""
        text = f"E={self.E},N={self.N},H={self.hidden},top_k={self.top_k},{self.dtype}"
        if self.block_shape is not None:
            text += f",block_shape=[{self.block_shape[0]},{self.block_shape[1]}]"
        if self.per_channel:
            text += ",per_channel"
        if self.ep > 1:
            text += f",ep={self.ep}"
        return text

    def flops(self, M: int) -> float:
        """Multiply-add FLOPs of both GEMMs for M tokens (the SiLU and sums are negligible)."""
        return 6.0 * M * self.local_top_k * self.hidden * self.N

    @property
    def local_top_k(self) -> float:
        """Expected routed rows per token on this rank (top_k / ep under uniform routing)."""
        return self.top_k / self.ep

    def experts_touched(self, M: int) -> float:
        """Expected number of distinct experts hit by M tokens under uniform routing."""
        return self.E * (1.0 - (1.0 - self.top_k / self.routed_experts) ** M)

    def weight_bytes(self, M: int) -> float:
        """Expected bytes of expert weights read for M tokens under uniform routing
        (scales excluded: at most 1/(block_n*block_k) of the weights' elements, 4 bytes)."""
        return self.experts_touched(M) * 3 * self.N * self.hidden * self.element_size
