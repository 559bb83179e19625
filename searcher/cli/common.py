"""What the commands share: the study and model options and loading a spec and its
storage, measurement sources, worker processes, the limits, the finalists' share, the
file to beat, and the console."""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
from typing import Sequence

from searcher.errors import ConfigError
from searcher.strategies.finalists import SHARE, SHARE_RULE, valid_share

#: The exit code of a user error (a SearcherError, a malformed option).
EXIT_USAGE = 2


def rich_console(stderr: bool = False):
    """A rich console on stdout (or stderr) that prints text as given (no markup) and,
    written to a file or pipe, does not wrap tables."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Tables written to a file or pipe keep their columns and whole headers instead of
    # wrapping at 80 (or squeezing headers at any fixed width): tables do not expand, so a
    # wide console costs nothing.
    width = None if stream.isatty() else 1000
    # No markup: messages carry user text (paths, keys like [shape]) that must print as is.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width, markup=False)


def study_args(p: argparse.ArgumentParser, model: bool = True) -> None:
    """The options that pick a study (``--study``, or ``--model`` with its options where
    ``model``), its storage and a subset of its batch sizes."""
    if model:
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--study",
                           help="a study name (see `searcher list`) or a path to a study "
                           "TOML file")
        which.add_argument("--model", metavar="PATH",
                           help="a model's config.json, its folder, or a model id in the "
                           "local Hugging Face cache: the study `searcher init` would write")
        model_args(p)
    else:
        p.add_argument("--study", required=True,
                       help="a study name (see `searcher list`) or a path to a study TOML file")
    p.add_argument("--storage", default=None,
                   help="SQLAlchemy URL of the storage (default: the spec's, "
                   "sqlite:///searcher.db in the current directory)")
    p.add_argument("--batch-sizes", default=None, type=_int_list,
                   help="comma-separated subset of the spec's batch sizes")


def model_args(p: argparse.ArgumentParser) -> None:
    """How a study made from --model is sharded, quantized and for which GPU."""
    p.add_argument("--tp", type=int, default=1,
                   help="with --model: tensor-parallel size (N = intermediate / tp)")
    p.add_argument("--ep", type=int, default=1,
                   help="with --model: expert-parallel size (E / ep local experts, N not "
                   "divided; a multiple of --tp)")
    p.add_argument("--dtype", default="auto",
                   help="with --model: auto (the checkpoint's quantization or dtype), bf16, "
                   "fp16, fp8_w8a8 or int8_w8a16")
    p.add_argument("--gpu", default=None,
                   help="with --model: the GPU to plan for, spelled as vLLM does "
                   "(default: this machine's GPU)")


def model_options(args: argparse.Namespace) -> dict:
    """The ``--model`` options as keyword arguments of
    :func:`searcher.study.model_study.model_spec`."""
    return {"tp": args.tp, "ep": args.ep, "dtype": args.dtype, "gpu": args.gpu,
            "storage": getattr(args, "storage", None)}


def _model_flags_without_model(args: argparse.Namespace) -> None:
    given = [f for f, v, d in (("--tp", args.tp, 1), ("--ep", args.ep, 1),
                               ("--dtype", args.dtype, "auto"), ("--gpu", args.gpu, None))
             if v != d]
    if given:
        raise ConfigError(f"{', '.join(given)}: only with --model, not with --study "
                          "(a study file fixes its shape and GPU)")


def source_args(p: argparse.ArgumentParser) -> None:
    """Where measurements come from: this GPU (default), a replay, or a synthetic one."""
    p.add_argument("--allow-other-gpu", action="store_true",
                   help="run a study made for another GPU on this one (results are stored "
                   "and exported under this GPU's name)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--replay", metavar="DATASET.csv",
                        help="replay recorded measurements instead of using a GPU")
    source.add_argument("--synthetic", action="store_true",
                        help="use a synthetic benchmarker (a made-up landscape; for demos)")
    p.add_argument("--isolation", choices=["process", "none"], default="process",
                   help="process (default): measure in a child process, so a config that "
                   "crashes it or hangs is stored as a failed trial and the run goes on; "
                   "none: measure in this process, faster to start but a crashing config "
                   "ends the run")
    p.add_argument("--trial-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="with process isolation, a measurement (its compile included) that "
                   "takes longer is killed and stored as a timeout (default 300)")


def source_kwargs(args: argparse.Namespace) -> dict:
    """The options of :func:`source_args` as :func:`searcher.tune.run.make_benchmarker`
    takes them."""
    return {"replay": args.replay, "synthetic": args.synthetic,
            "allow_other_gpu": args.allow_other_gpu, "isolation": args.isolation,
            "trial_timeout_s": args.trial_timeout,
            # decide's and compare's parsers have no workers
            "workers": worker_index(args)[1] if hasattr(args, "worker") else 1}


def worker_args(p: argparse.ArgumentParser) -> None:
    """``--workers`` (and the hidden ``--worker I/N`` a worker process is started with)."""
    p.add_argument("--workers", default="1", metavar="N|auto",
                   help="worker processes sharing the storage: one per GPU (each sees one "
                   "GPU); auto = one per visible GPU (default 1)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # I/N, set for workers


def spawn_workers(args: argparse.Namespace, storage: str, drop: Sequence[str] = (),
                   extra: Sequence[str] = ()) -> int | None:
    """Start ``--workers`` worker processes and wait for them; None when this process is
    to do the work itself (one worker, or it is a worker)."""
    from searcher.tune.workers import child_argv, resolve_workers, run_workers

    if args.worker is not None:
        return None
    n, gpus = resolve_workers(args.workers, uses_gpu=not (args.replay or args.synthetic))
    if n == 1:
        return None
    from searcher.store.storage import open_storage

    open_storage(storage)  # create its tables once, before workers race to
    argvs = [child_argv(args.argv, drop, i, n, extra) for i in range(n)]
    where = f"GPUs {','.join(gpus)}" if gpus else "CPU"
    rich_console(stderr=True).print(f"{n} workers on {where}, storage {storage}")
    return run_workers(argvs, gpus)


def worker_index(args: argparse.Namespace) -> tuple[int, int]:
    """This process's worker index and the number of workers ((0, 1) for one)."""
    from searcher.tune.workers import parse_worker

    return parse_worker(args.worker) if args.worker else (0, 1)


def _int_list(text: str) -> list[int]:
    from searcher.study.spec import MAX_BATCH_SIZE

    items = [v.strip() for v in text.split(",")]
    if "" in items:
        raise argparse.ArgumentTypeError(
            f"{text!r} has an empty item; write comma-separated integers, e.g. 1,2,4")
    try:
        values = [int(v) for v in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers")
    if any(v < 1 or v > MAX_BATCH_SIZE for v in values):
        raise argparse.ArgumentTypeError(
            f"{text!r}: batch sizes must be integers from 1 to {MAX_BATCH_SIZE:,} (2**20)")
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise argparse.ArgumentTypeError(
            f"{text!r} gives {', '.join(map(str, twice))} more than once; name each batch "
            "size once")
    return values


def load(args: argparse.Namespace, notes: bool = False):
    """The study spec the options name and its storage URL.

    Raises:
        SearcherError: an unknown study or model, model options without ``--model``, or
            batch sizes the study does not have.
    """
    from searcher.study.spec import find_spec, load_spec

    if getattr(args, "model", None):
        from searcher.kernels import DEFAULT_KERNEL, get_kernel
        from searcher.study.model_study import model_spec

        spec, made = model_spec(get_kernel(DEFAULT_KERNEL), args.model,
                                **model_options(args))
        flags = [f"--model {shlex.quote(str(args.model))}"]
        flags += [f"{flag} {shlex.quote(str(value))}" for flag, value, default in (
            ("--tp", args.tp, 1), ("--ep", args.ep, 1), ("--dtype", args.dtype, "auto"),
            ("--gpu", args.gpu, None)) if value != default]
        spec = dataclasses.replace(spec, selector=" ".join(flags))
        if notes and args.worker is None:
            for note in made.notes:
                rich_console(stderr=True).print(f"note: {note}", style="yellow")
    else:
        if hasattr(args, "tp"):
            _model_flags_without_model(args)
        spec = load_spec(find_spec(args.study))
    if args.batch_sizes:
        unknown = [m for m in args.batch_sizes if m not in spec.batch_sizes]
        if unknown:
            raise ConfigError(
                f"--batch-sizes {','.join(map(str, unknown))}: not batch sizes of study "
                f"{spec.name} ({', '.join(map(str, spec.batch_sizes))})")
    return spec, args.storage or spec.storage


class _Given(float):
    """A float that remembers how it was written, for errors that name the value as given
    (``0``, not ``0.0``)."""

    given: str


def fraction(text: str) -> _Given:
    """``text`` as a float that remembers it; ValueError (argparse: "invalid fraction
    value: 'abc'", one line) where it is no number."""
    value = _Given(text)
    value.given = text
    return value


def finalists_share_arg(p: argparse.ArgumentParser) -> None:
    """``--finalists-share`` (:mod:`searcher.strategies.finalists`)."""
    p.add_argument("--finalists-share", type=fraction, default=SHARE, metavar="FRACTION",
                   help="the most of a batch size's GPU time (its trials' measuring plus the "
                   "finalists) the finalists' re-measurement is planned to take, as a "
                   "fraction: its rounds time fewer layer calls a graph to fit (default "
                   f"{SHARE}, i.e. {SHARE * 100:g}%%; 1: unbounded)")


def check_finalists_share(args: argparse.Namespace) -> None:
    """Raises ConfigError where ``--finalists-share`` breaks its rule (one line)."""
    if not valid_share(args.finalists_share):
        given = getattr(args.finalists_share, "given", repr(args.finalists_share))
        raise ConfigError(f"--finalists-share {given}: {SHARE_RULE}")


#: ``--against vllm``: the file the installed vLLM would load for the study's layer and GPU.
AGAINST_INSTALLED = "vllm"
AGAINST_HELP = ("; or `vllm`: the file vLLM would load here for the study's layer and GPU "
                "(first $VLLM_TUNED_CONFIG_FOLDER, then the installed vLLM's configs/)")


def resolve_against(args: argparse.Namespace, spec, device: str | None = None) -> None:
    """Replace ``--against vllm`` by the path of the file vLLM would load for the study's
    layer on ``device`` (default: the study's GPU), said once on stderr by the process that
    is no worker; a path is left as given.

    Raises:
        ConfigError: vLLM is not installed or has no such file (the kernel's message).
    """
    if getattr(args, "against", None) != AGAINST_INSTALLED:
        return
    args.against = str(spec.kernel.installed_file(spec.shape, device or spec.gpu))
    if getattr(args, "worker", None) is None:
        rich_console(stderr=True).print(f"--against vllm: {args.against}")


def read_against(spec, path: str) -> dict:
    """The configs by M of an ``--against`` file (run and compare), refused when its name
    says another layer than the study's."""
    spec.kernel.check_file_name(spec.shape, path)
    return spec.kernel.read_file(path)[1]


def against_configs(spec, path: str | None) -> dict | None:
    """M -> the config ``path`` gives each of the spec's batch sizes (vLLM's nearest key)."""
    if path is None:
        return None
    from searcher.results.export import nearest_config

    configs = read_against(spec, path)
    return {M: nearest_config(configs, M) for M in spec.batch_sizes}


def stored_device(args: argparse.Namespace, spec) -> str:
    """The device name workers stored their studies under (without opening a GPU)."""
    if args.replay:
        from searcher.measure.replay import read_dataset

        return read_dataset(args.replay)[0].get("vllm_name") or spec.gpu
    if args.synthetic:
        return spec.gpu
    from searcher.measure.device import current_device

    return current_device().vllm_name


def check_limits(args: argparse.Namespace) -> None:
    """--time-limit a positive number of seconds; --limit-per-m a positive count."""
    limit = getattr(args, "time_limit", None)
    if limit is not None and not (math.isfinite(limit) and limit > 0):
        raise ConfigError(f"--time-limit {limit:g}: must be a positive number of seconds")
    count = getattr(args, "limit_per_m", None)
    if count is not None and count < 1:
        raise ConfigError(f"--limit-per-m {count}: must be at least 1")
    timeout = getattr(args, "trial_timeout", None)
    if timeout is not None and not timeout > 0:  # NaN too
        raise ConfigError(f"--trial-timeout {timeout:g}: must be a positive number of seconds")
