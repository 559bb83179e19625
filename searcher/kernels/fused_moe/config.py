"""The launch configuration of the fused MoE kernel: vLLM's six keys, as a value object."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from searcher.errors import ConfigError

__all__ = ["KernelConfig", "CONFIG_KEYS"]

#: vLLM's config keys, in the order vLLM writes them.
CONFIG_KEYS: tuple[str, ...] = (
    "BLOCK_SIZE_M",
    "BLOCK_SIZE_N",
    "BLOCK_SIZE_K",
    "GROUP_SIZE_M",
    "num_warps",
    "num_stages",
)

# Keys vLLM tolerates in a config file and that carry no meaning for CUDA Triton.
_TOLERATED_KEYS = {"SPLIT_K": 1}


@dataclass(frozen=True, order=True)
class KernelConfig:
    """One launch configuration, used for both GEMMs of the layer.

    BLOCK_SIZE_M also drives the alignment of routed rows into per-expert blocks.
    """

    BLOCK_SIZE_M: int
    BLOCK_SIZE_N: int
    BLOCK_SIZE_K: int
    GROUP_SIZE_M: int
    num_warps: int
    num_stages: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{f.name} = {value!r} must be an integer")
            if value < 1:
                raise ConfigError(f"{f.name} = {value} must be at least 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> KernelConfig:
        """Build a config from vLLM's dict form (also Optuna params), checking keys.

        Args:
            data: a mapping holding the six keys; vLLM's tolerated ``SPLIT_K=1`` is accepted.
            where: how to name the source in error messages (a file and key, say).

        Raises:
            ConfigError: a key is missing, unknown, or a value is not a positive integer.
        """
        missing = [k for k in CONFIG_KEYS if k not in data]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
        for key, value in data.items():
            if key in CONFIG_KEYS:
                continue
            if key in _TOLERATED_KEYS and value == _TOLERATED_KEYS[key]:
                continue
            raise ConfigError(
                f"{where}: unknown key {key!r} = {value!r}; a config holds {', '.join(CONFIG_KEYS)}"
            )
        try:
            return cls(**{k: data[k] for k in CONFIG_KEYS})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, int]:
        """vLLM's dict form, keys in vLLM's order."""
        return {k: getattr(self, k) for k in CONFIG_KEYS}

    def astuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, k) for k in CONFIG_KEYS)

    def short(self) -> str:
        """A compact label, e.g. ``M64 N128 K64 G1 w4 s3``."""
        return (
            f"M{self.BLOCK_SIZE_M} N{self.BLOCK_SIZE_N} K{self.BLOCK_SIZE_K} "
            f"G{self.GROUP_SIZE_M} w{self.num_warps} s{self.num_stages}"
        )
