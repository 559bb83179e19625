"""The problem a kernel config is tuned for: the MoE layer's shape and dtype."""

from __future__ import annotations

from dataclasses import dataclass

from searcher.errors import SpecError

__all__ = ["Shape", "DTYPES"]

#: dtypes the built-in kernel runs, with their size in bytes. fp32 exists for tests.
DTYPES: dict[str, int] = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class Shape:
    """A fused MoE layer: E experts, intermediate size N per partition, hidden size H.

    ``w1`` is [E, 2N, H] (gate and up stacked), ``w2`` is [E, H, N].
    """

    E: int
    N: int
    hidden: int
    top_k: int
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        for name in ("E", "N", "hidden", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name} = {value!r} must be a positive integer")
        if self.top_k > self.E:
            raise SpecError(f"top_k = {self.top_k} must not exceed E = {self.E}")
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype = {self.dtype!r} must be one of: {', '.join(DTYPES)}")

    @property
    def element_size(self) -> int:
        return DTYPES[self.dtype]

    def label(self) -> str:
        return f"E={self.E},N={self.N},H={self.hidden},top_k={self.top_k},{self.dtype}"

    def flops(self, M: int) -> float:
        """Multiply-add FLOPs of both GEMMs for M tokens (the SiLU and sums are negligible)."""
        return 6.0 * M * self.top_k * self.hidden * self.N

    def experts_touched(self, M: int) -> float:
        """Expected number of distinct experts hit by M tokens under uniform routing."""
        return self.E * (1.0 - (1.0 - self.top_k / self.E) ** M)

    def weight_bytes(self, M: int) -> float:
        """Expected bytes of expert weights read for M tokens under uniform routing."""
        return self.experts_touched(M) * 3 * self.N * self.hidden * self.element_size
