"""Choosing where a run's measurements come from, and checking it is the right GPU."""

from __future__ import annotations

from searcher.errors import NoGPUError, SpecError
from searcher.spec import StudySpec

__all__ = ["make_benchmarker", "check_gpu"]


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


def make_benchmarker(spec: StudySpec, *, replay: str | None = None, synthetic: bool = False,
                     allow_other_gpu: bool = False, seed: int | None = None):
    """The benchmarker for a run and the device name its studies are stored under.

    Raises:
        NoGPUError: no replay, no synthetic, and no CUDA GPU here (naming the options).
        SpecError: the GPU (or the replayed one) is not the spec's and that is not allowed.
    """
    seed = spec.seed if seed is None else seed
    if replay:
        from searcher.replay import ReplayBenchmarker

        bencher = ReplayBenchmarker(replay, seed=seed)
        device = bencher.device_info().get("vllm_name") or spec.gpu
    elif synthetic:
        from searcher.synthetic import SyntheticBenchmarker

        # SEARCHER_SYNTHETIC_SLEEP makes synthetic trials take real time (kill tests);
        # SEARCHER_SYNTHETIC_NOISE sets its relative noise (0: every process measures alike).
        import os

        sleep = float(os.environ.get("SEARCHER_SYNTHETIC_SLEEP", "0"))
        noise = float(os.environ.get("SEARCHER_SYNTHETIC_NOISE", "0.01"))
        bencher = SyntheticBenchmarker(spec.shape, device=spec.gpu, seed=seed, sleep=sleep,
                                       noise=noise)
        device = spec.gpu
    else:
        from searcher.device import cuda_available

        if not cuda_available():
            raise NoGPUError(
                "no CUDA GPU is visible on this machine; to run the search pipeline without "
                "one, replay recorded measurements with --replay DATASET.csv (for example "
                "benchmarks/data/*.csv) or use --synthetic"
            )
        from searcher.device import current_device

        device = current_device().vllm_name
        check_gpu(spec, device, allow_other_gpu)
        from searcher.harness import GpuBenchmarker

        return GpuBenchmarker(spec.shape, backend=spec.backend, seed=seed, compile_threads=12), device
    check_gpu(spec, device, allow_other_gpu)
    return bencher, device
