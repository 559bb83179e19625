"""Shared test setup: run Triton kernels in the interpreter when there is no GPU."""

from __future__ import annotations

import os
import random
import zlib

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
    """A seed for a test's random inputs: fixed per test (a hash of its id), so that the
    test command's time and cases are the same every run; ``SEARCHER_TEST_SEED=N`` shifts
    every seed by N to explore other inputs (``random`` draws a new N). The seed is in
    every failure message."""
    shift = os.environ.get("SEARCHER_TEST_SEED", "0")
    offset = random.SystemRandom().randrange(2**31) if shift == "random" else int(shift)
    seed = (zlib.crc32(request.node.nodeid.encode()) + offset) % 2**31
    request.node.user_properties.append(("seed", seed))
    return seed
