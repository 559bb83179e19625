"""Shared test setup: run Triton kernels in the interpreter when there is no GPU."""

from __future__ import annotations

import os
import random

import pytest

# Must happen before any module defines a @triton.jit kernel.
try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _HAS_CUDA = False
if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if _HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fresh_seed(request) -> int:
    """A new random seed every run (printed on failure), so tests see fresh inputs."""
    seed = random.SystemRandom().randrange(2**31)
    request.node.user_properties.append(("seed", seed))
    return seed
