"""What one timing of one config produced, failures included, as a value."""

from __future__ import annotations

import enum
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

__all__ = ["Status", "Fidelity", "Measurement", "FIDELITIES", "calls_scale",
           "summarize_samples"]


class Status(str, enum.Enum):
    """Outcome of measuring one config. Only ``OK`` carries a time."""

    OK = "ok"
    INVALID = "invalid"  # breaks a space constraint; never benchmarked
    COMPILE_ERROR = "compile_error"
    OUT_OF_RESOURCES = "out_of_resources"  # shared memory or registers exceeded
    RUNTIME_ERROR = "runtime_error"  # launch failed, illegal address, wrong result...
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Fidelity:
    """How hard to look at one config.

    A CUDA graph holds ``calls_per_graph`` layer calls; it is replayed ``warmup`` times,
    then ``replays`` times with events around each replay, fresh router logits copied in
    before every replay. vLLM's tuner uses 10 calls, 5 warm-ups and 20 replays.
    """

    name: str
    calls_per_graph: int
    warmup: int
    replays: int


#: The fidelities searcher knows. ``short`` decides pruning; ``full`` is vLLM's tuning
#: measurement; ``long`` (vLLM's benchmarking count) re-measures finalists.
FIDELITIES: dict[str, Fidelity] = {
    "short": Fidelity("short", calls_per_graph=10, warmup=1, replays=5),
    "full": Fidelity("full", calls_per_graph=10, warmup=5, replays=20),
    "long": Fidelity("long", calls_per_graph=10, warmup=5, replays=100),
}


def calls_scale(fidelity: Fidelity) -> float:
    """``fidelity``'s layer calls a graph over those of the named fidelity it derives from:
    1.0 for the named ones, below 1 where the finalists' rounds time fewer calls a graph to
    fit their budget (searcher/strategies/finalists.py). Benchmarkers that cost a
    measurement by its fidelity's name (replay, synthetic) scale that cost by it."""
    named = FIDELITIES.get(fidelity.name)
    return fidelity.calls_per_graph / named.calls_per_graph if named else 1.0


@dataclass(frozen=True)
class Measurement:
    """The result of timing one config at one fidelity.

    Times are microseconds per layer call. ``spread_us`` is the interquartile range of the
    per-replay times; ``mean_us`` is what vLLM's tuner ranks by.
    """

    status: Status
    fidelity: str
    median_us: float = math.inf
    mean_us: float = math.inf
    spread_us: float = math.inf
    samples: int = 0
    reason: str = ""
    device: Mapping[str, Any] = field(default_factory=dict)
    cost_s: float = 0.0  # wall seconds spent on this measurement, compile included
    compile_s: float = 0.0  # of which waiting for (or doing) the compile
    gpu_s: float = 0.0  # of which the GPU spent replaying graphs (warm-up replays included)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def rel_spread(self) -> float:
        """Spread relative to the median (0.01 is 1%)."""
        if not self.ok or self.median_us <= 0:
            return math.inf
        return self.spread_us / self.median_us

    @classmethod
    def failed(
        cls, status: Status, reason: str, fidelity: str = "", cost_s: float = 0.0,
        device: Mapping[str, Any] | None = None,
    ) -> Measurement:
        return cls(status=status, fidelity=fidelity, reason=reason, cost_s=cost_s,
                   device=dict(device or {}))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["device"] = dict(self.device)
        for key in ("median_us", "mean_us", "spread_us"):
            if math.isinf(data[key]):
                data[key] = None
        return data

    def brief(self) -> dict[str, Any]:
        """The fields stored on a trial (no device; infinities as None; ``gpu_s`` only
        where the benchmarker timed a GPU's replays, so a replayed record reads "unknown")."""
        data = {"status": self.status.value, "median_us": self.median_us,
                "spread_us": self.spread_us, "samples": self.samples, "cost_s": self.cost_s,
                "compile_s": self.compile_s}
        if self.gpu_s > 0:
            data["gpu_s"] = self.gpu_s
        return {k: (None if isinstance(v, float) and math.isinf(v) else v)
                for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        kwargs = dict(data)
        kwargs["status"] = Status(kwargs["status"])
        for key in ("median_us", "mean_us", "spread_us"):
            if kwargs.get(key) is None:
                kwargs[key] = math.inf
        return cls(**kwargs)


def summarize_samples(per_call_us: Sequence[float]) -> tuple[float, float, float]:
    """Median, mean and interquartile range of per-call times."""
    values = sorted(per_call_us)
    if len(values) == 1:
        return values[0], values[0], 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), statistics.fmean(values), q[2] - q[0]
