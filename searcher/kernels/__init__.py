"""The kernels searcher can tune, by name. Importing this package imports neither torch
nor triton; a kernel's GPU side is imported when a measurement needs it."""

from __future__ import annotations

from searcher.errors import SpecError, did_you_mean
from searcher.kernels.base import Kernel
from searcher.kernels.fused_moe import FUSED_MOE

__all__ = ["Kernel", "KERNELS", "DEFAULT_KERNEL", "get_kernel"]

#: Registered kernels by the name a study's ``kernel`` key gives.
KERNELS: dict[str, Kernel] = {FUSED_MOE.name: FUSED_MOE}

#: The kernel of a space file or dataset that names none (every file written before
#: searcher had a second kernel is the fused MoE's).
DEFAULT_KERNEL = FUSED_MOE.name


def get_kernel(name: str) -> Kernel:
    """The kernel registered under ``name``.

    Raises:
        SpecError: no kernel of that name (the message lists the registered ones).
    """
    try:
        return KERNELS[name]
    except KeyError:
        raise SpecError(f"unknown kernel {name!r}{did_you_mean(name, KERNELS)}; "
                        f"must be one of: {', '.join(KERNELS)}") from None
