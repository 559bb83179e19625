"""Choosing where a run's measurements come from, and checking it is the right GPU."""

from __future__ import annotations

import functools
import math
import os
from typing import TYPE_CHECKING, Any, Callable

from searcher.errors import ConfigError, NoGPUError, SpecError
from searcher.measure.isolation import DEFAULT_TIMEOUT_S
from searcher.study.spec import StudySpec

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Problem

__all__ = ["make_benchmarker", "check_gpu", "ISOLATIONS"]

#: Where measurements run: ``process`` in a child process that a crashing or hanging config
#: cannot take the run down with (see :mod:`searcher.measure.isolation`), ``none`` in this one.
ISOLATIONS = ("process", "none")


def check_gpu(spec: StudySpec, device: str, allow_other_gpu: bool) -> None:
    """Refuse to run a study made for another GPU unless explicitly allowed.

    Raises:
        SpecError: naming both GPUs and the flag that overrides.
    """
    if device != spec.gpu and not allow_other_gpu:
        raise SpecError(
            f"study {spec.name} is for {spec.gpu}, but this GPU is {device}; pass "
            "--allow-other-gpu to tune it here anyway (results are stored and exported "
            f"under {device})"
        )


# Module-level factories: picklable, so a measuring child process can build the
# benchmarker itself (a CUDA context cannot be handed over, nor forked).
def _gpu_benchmarker(kernel: str, problem: Problem, backend: str, seed: int,
                     compile_threads: int) -> Any:
    from searcher.measure.harness import GpuBenchmarker
    from searcher.kernels import get_kernel

    workload = get_kernel(kernel).workload(problem, backend, seed)
    return GpuBenchmarker(workload, compile_threads=compile_threads,
                          switch_interval_s=switch_interval_from_env())


def switch_interval_from_env() -> float | None:
    """``SEARCHER_SWITCH_INTERVAL_S`` (seconds), read where the measuring process starts:
    an experiment of issue #13 (README, "Still missed"); unset, Python's own 0.005 s.
    On one H100, 0.0005 s changed nothing a run can tell
    (examples/h100-e64-n1408-switch-interval/); kept so that ``benchmarks/lent_gpu.sh
    switch-ab`` reproduces that run.

    Raises:
        SpecError: a value that is no number above 0, named with the rule.
    """
    text = os.environ.get("SEARCHER_SWITCH_INTERVAL_S")
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise SpecError(f"SEARCHER_SWITCH_INTERVAL_S={text}: must be a number of seconds "
                        "above 0 (Python's default is 0.005)")
    return value


def _replay_benchmarker(path: str, seed: int) -> Any:
    from searcher.measure.replay import ReplayBenchmarker

    return ReplayBenchmarker(path, seed=seed)


def _synthetic_benchmarker(kernel: str, problem: Problem, device: str, seed: int) -> Any:
    # The SEARCHER_SYNTHETIC_* test hooks are read where this runs (in the child).
    from searcher.measure.synthetic import synthetic_from_env

    return synthetic_from_env(kernel, problem, device, seed)


def make_benchmarker(spec: StudySpec, *, replay: str | None = None, synthetic: bool = False,
                     allow_other_gpu: bool = False, seed: int | None = None,
                     isolation: str = "process", trial_timeout_s: float = DEFAULT_TIMEOUT_S,
                     workers: int = 1):
    """The benchmarker for a run and the device name its studies are stored under.

    Args:
        isolation: ``process`` (the default) measures in a child process, so that a config
            that crashes it (or hangs past ``trial_timeout_s``) is stored as a failed trial
            and the run goes on; ``none`` measures in this process. Every source (GPU,
            replay, synthetic) is wrapped alike, so CPU runs exercise the same path.
        trial_timeout_s: seconds one measurement, its compile included, may take with
            process isolation (``inf``: no limit).
        workers: measuring processes of this run on this host (``--workers``); a GPU
            benchmarker compiles ahead on its share of the cores
            (:func:`searcher.measure.harness.compile_threads_for`).

    Raises:
        ConfigError: an unknown isolation, or a trial timeout that is not positive.
        NoGPUError: no replay, no synthetic, and no CUDA GPU here (naming the options).
        SpecError: the GPU (or the replayed one) is not the spec's and that is not allowed.
        SearcherError: the replayed dataset is of another kernel, shape or space.
        BenchmarkerError: the measuring process could not start.
    """
    if isolation not in ISOLATIONS:
        raise ConfigError(f"--isolation {isolation}: must be one of: {', '.join(ISOLATIONS)}")
    if not trial_timeout_s > 0:  # NaN too
        raise ConfigError(f"--trial-timeout {trial_timeout_s}: must be a positive number of "
                          "seconds")
    seed = spec.seed if seed is None else seed
    factory: Callable[[], Any]
    device: str | None = None
    if replay:
        from searcher.measure.replay import check_dataset_fits

        check_dataset_fits(replay, spec.kernel, spec.shape.label(), spec.space.name, spec.name)
        factory = functools.partial(_replay_benchmarker, replay, seed)
    elif synthetic:
        factory = functools.partial(_synthetic_benchmarker, spec.kernel.name, spec.shape,
                                    spec.gpu, seed)
        device = spec.gpu
    else:
        from searcher.measure.device import cuda_available

        switch_interval_from_env()  # refused here, in one line, not in the child
        if not cuda_available():
            raise NoGPUError(
                "no CUDA GPU is visible on this machine; to run the search pipeline without "
                "one, replay recorded measurements with --replay DATASET.csv (for example "
                "benchmarks/data/*.csv) or use --synthetic"
            )
        from searcher.measure.device import current_device

        here = current_device()
        device = here.vllm_name
        check_gpu(spec, device, allow_other_gpu)
        spec.kernel.check_device(spec.shape, here.capability)
        from searcher.measure.harness import compile_threads_for, usable_cores

        factory = functools.partial(_gpu_benchmarker, spec.kernel.name, spec.shape, spec.backend,
                                    seed, compile_threads_for(usable_cores(), workers))
    if isolation == "none":
        bencher = factory()
    else:
        from searcher.measure.isolation import IsolatedBenchmarker

        bencher = IsolatedBenchmarker(
            factory, timeout_s=None if math.isinf(trial_timeout_s) else trial_timeout_s)
    if device is None:  # a replay: the recorded GPU (this starts the measuring process)
        device = bencher.device_info().get("vllm_name") or spec.gpu
    try:
        check_gpu(spec, device, allow_other_gpu)
    except SpecError:
        close = getattr(bencher, "close", None)
        if close is not None:
            close()
        raise
    return bencher, device
