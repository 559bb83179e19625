"""Helpers of the tests: for those that start real searcher processes, a small study
file and waiting for what such a process does; for the finalists' tests, a benchmarker
whose rounds keep the decision rule undecided."""

from __future__ import annotations

import dataclasses
import textwrap
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VLLM_432 = ROOT / "spaces" / "vllm-432.toml"


def gunzipped(gz: Path, folder: Path) -> Path:
    """A copy of the repository's gzipped example storage ``gz`` (``*.db.gz``), unzipped
    into ``folder``: the tests read the storage as committed and write nothing beside it."""
    import gzip
    import shutil

    db = folder / gz.name.removesuffix(".gz")
    with gzip.open(gz, "rb") as src, db.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return db


def write_study(path: Path, url: str, trials: int, *, space: Path = VLLM_432,
                batch_sizes=(16, 64), pruner: str = "none", gpu: str | None = None) -> Path:
    """Write an E=64, N=1408 bf16 study to ``path`` and return it.

    Args:
        gpu: a GPU searcher knows (e.g. ``NVIDIA_H100_80GB_HBM3``); None makes a GPU name
            unique to this call, with H100 facts, so that tests sharing one storage
            server never share a study.
    """
    facts = ""
    if gpu is None:
        gpu = f"TEST_GPU_{uuid.uuid4().hex[:8]}"
        facts = "[gpu_facts]\nshared_mem_per_block = 232448\nsm_count = 132\n"
    path.write_text(textwrap.dedent(f"""\
        schema = 1
        kernel = "fused_moe"
        gpu = "{gpu}"
        [shape]
        E = 64
        N = 1408
        hidden = 2048
        top_k = 6
        [search]
        space = "{space}"
        batch_sizes = {list(batch_sizes)}
        trials_per_m = {trials}
        pruner = "{pruner}"
        [storage]
        url = "{url}"
    """) + facts)
    return path


def wait_for(predicate, timeout: float = 120.0, poll_s: float = 0.05):
    """The first truthy value of ``predicate()``, polled every ``poll_s`` seconds; fails
    the test after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(poll_s)
    pytest.fail("timed out waiting")


def close_call_benchmarker(kernel, problem, **kwargs):
    """A synthetic benchmarker (``kwargs`` as :class:`SyntheticBenchmarker` takes them)
    whose finalists' rounds time every config but vLLM's default 0.1% or 5% faster than
    the default (100 us), round by round: faster in every round but never beyond the
    noise, so the decision rule stays undecided until its cap and the default stays."""
    from searcher.measure.synthetic import SyntheticBenchmarker

    class CloseCall(SyntheticBenchmarker):
        rounds = 0

        def measure_round(self, M, configs, fidelity):
            measured = super().measure_round(M, configs, fidelity)
            if len(configs) < 2:
                return measured
            self.rounds += 1
            default = kernel.default_config(problem, M)
            ratio = 1.001 if self.rounds % 2 else 1.05
            return [dataclasses.replace(m, median_us=100.0 if c == default else 100.0 / ratio)
                    for c, m in zip(configs, measured)]

    return CloseCall(kernel, problem, **kwargs)
