"""The ``searcher`` command: thin shells over library functions.

Results go to stdout (a table, or JSON with ``--json``); progress and errors to stderr.
Any :class:`~searcher.errors.SearcherError` ends the command with a one-line red message
and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from searcher.errors import ConfigError, NoGPUError, SearcherError
from searcher.measure.measurement import FIDELITIES
from searcher.strategies.finalists import SHARE, SHARE_RULE, valid_share

__all__ = ["main"]

EXIT_USAGE = 2


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Tables written to a file or pipe keep their columns and whole headers instead of
    # wrapping at 80 (or squeezing headers at any fixed width): tables do not expand, so a
    # wide console costs nothing.
    width = None if stream.isatty() else 1000
    # No markup: messages carry user text (paths, keys like [shape]) that must print as is.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width, markup=False)


# -- bench ---------------------------------------------------------------------------
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time one config of the fused MoE layer on the GPU",
        description="Time one config of the fused MoE layer on this machine's GPU, the "
        "way vLLM's tuner does, and print the median time per layer call.",
    )
    p.add_argument("--E", type=int, default=64, help="number of experts (default 64)")
    p.add_argument("--N", type=int, default=1408, help="intermediate size per partition")
    p.add_argument("--hidden", type=int, default=2048, help="hidden size")
    p.add_argument("--top-k", type=int, default=6, help="experts per token")
    p.add_argument("--dtype", default="bf16",
                   choices=["bf16", "fp16", "fp32", "fp8_w8a8", "int8_w8a16"])
    p.add_argument("--block-shape", type=int, nargs=2, default=None, metavar=("BN", "BK"),
                   help="block-wise fp8_w8a8 weights, e.g. 128 128")
    p.add_argument("--per-channel", action="store_true",
                   help="per-channel fp8_w8a8 weights and per-token activations")
    p.add_argument("-M", "--M", type=int, action="append", required=True,
                   help="batch size (tokens); repeat for several")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", type=int, nargs=6,
                       metavar=("BM", "BN", "BK", "GM", "WARPS", "STAGES"),
                       help="BLOCK_SIZE_M BLOCK_SIZE_N BLOCK_SIZE_K GROUP_SIZE_M num_warps "
                       "num_stages")
    group.add_argument("--default", action="store_true",
                       help="vLLM's default config for each M")
    p.add_argument("--fidelity", default="full", choices=["short", "full", "long"])
    p.add_argument("--backend", default="builtin", help="builtin (default) or vllm")
    p.add_argument("--repeat", type=int, default=1, help="measure each config this often")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from searcher.measure.bench import bench
    # The command's options are the fused MoE's shape: it is that layer's own command.
    from searcher.kernels.fused_moe import FUSED_MOE, KernelConfig, Shape

    shape = Shape(E=args.E, N=args.N, hidden=args.hidden, top_k=args.top_k, dtype=args.dtype,
                  block_shape=tuple(args.block_shape) if args.block_shape else None,
                  per_channel=args.per_channel)
    from searcher.study.spec import MAX_BATCH_SIZE

    if any(m < 1 for m in args.M):
        raise ConfigError(f"-M {min(args.M)}: a batch size must be a positive integer")
    if any(m > MAX_BATCH_SIZE for m in args.M):
        raise ConfigError(f"-M {max(args.M)}: above the largest batch size searcher tunes, "
                          f"M <= {MAX_BATCH_SIZE:,} (2**20)")
    config = None if args.default else KernelConfig(*args.config)
    rows = bench(FUSED_MOE, shape, args.M, config, args.fidelity, backend=args.backend,
                 repeat=args.repeat)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    from rich.table import Table

    device = rows[0].measurement.device if rows else {}
    table = Table(title=f"fused MoE {shape.label()} on {device.get('name', '?')} "
                  f"(torch {device.get('torch_version', '?')}, "
                  f"triton {device.get('triton_version', '?')}, backend {args.backend})")
    for col in ("M", "config", "status", "median us", "spread us", "samples", "fidelity"):
        table.add_column(col, justify="right" if col not in ("config", "status") else "left")
    for r in rows:
        m = r.measurement
        table.add_row(
            str(r.M), r.config.short(), m.status.value if m.ok else f"{m.status.value}: {m.reason}",
            f"{m.median_us:.1f}" if m.ok else "-", f"{m.spread_us:.1f}" if m.ok else "-",
            str(m.samples), m.fidelity,
        )
    _console().print(table)
    return 0 if all(r.measurement.ok for r in rows) else 1


# -- shared options ------------------------------------------------------------------
def _study_args(p: argparse.ArgumentParser, model: bool = True) -> None:
    if model:
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--study",
                           help="a study name (see `searcher list`) or a path to a study "
                           "TOML file")
        which.add_argument("--model", metavar="PATH",
                           help="a model's config.json, its folder, or a model id in the "
                           "local Hugging Face cache: the study `searcher init` would write")
        _model_args(p)
    else:
        p.add_argument("--study", required=True,
                       help="a study name (see `searcher list`) or a path to a study TOML file")
    p.add_argument("--storage", default=None,
                   help="SQLAlchemy URL of the storage (default: the spec's, "
                   "sqlite:///searcher.db in the current directory)")
    p.add_argument("--batch-sizes", default=None, type=_int_list,
                   help="comma-separated subset of the spec's batch sizes")


def _model_args(p: argparse.ArgumentParser) -> None:
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


def _model_options(args: argparse.Namespace) -> dict:
    return {"tp": args.tp, "ep": args.ep, "dtype": args.dtype, "gpu": args.gpu,
            "storage": getattr(args, "storage", None)}


def _model_flags_without_model(args: argparse.Namespace) -> None:
    given = [f for f, v, d in (("--tp", args.tp, 1), ("--ep", args.ep, 1),
                               ("--dtype", args.dtype, "auto"), ("--gpu", args.gpu, None))
             if v != d]
    if given:
        raise ConfigError(f"{', '.join(given)}: only with --model, not with --study "
                          "(a study file fixes its shape and GPU)")


def _source_args(p: argparse.ArgumentParser) -> None:
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


def _source_kwargs(args: argparse.Namespace) -> dict:
    """The options of :func:`_source_args` as :func:`searcher.tune.run.make_benchmarker`
    takes them."""
    return {"replay": args.replay, "synthetic": args.synthetic,
            "allow_other_gpu": args.allow_other_gpu, "isolation": args.isolation,
            "trial_timeout_s": args.trial_timeout}


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", default="1", metavar="N|auto",
                   help="worker processes sharing the storage: one per GPU (each sees one "
                   "GPU); auto = one per visible GPU (default 1)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # I/N, set for workers


def _spawn_workers(args: argparse.Namespace, storage: str, drop: Sequence[str] = (),
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
    _console(stderr=True).print(f"{n} workers on {where}, storage {storage}")
    return run_workers(argvs, gpus)


def _worker_index(args: argparse.Namespace) -> tuple[int, int]:
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
    return values


def _load(args: argparse.Namespace, notes: bool = False):
    from searcher.study.spec import find_spec, load_spec

    if getattr(args, "model", None):
        from searcher.kernels import DEFAULT_KERNEL, get_kernel
        from searcher.study.model_study import model_spec

        spec, made = model_spec(get_kernel(DEFAULT_KERNEL), args.model,
                                **_model_options(args))
        flags = [f"--model {shlex.quote(str(args.model))}"]
        flags += [f"{flag} {shlex.quote(str(value))}" for flag, value, default in (
            ("--tp", args.tp, 1), ("--ep", args.ep, 1), ("--dtype", args.dtype, "auto"),
            ("--gpu", args.gpu, None)) if value != default]
        spec = dataclasses.replace(spec, selector=" ".join(flags))
        if notes and args.worker is None:
            for note in made.notes:
                _console(stderr=True).print(f"note: {note}", style="yellow")
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


# -- run -----------------------------------------------------------------------------
def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="search the best config of every batch size of a study",
                       description="Run or resume a study: one Optuna study per batch size, "
                       "stored so that a killed run continues where it stopped.")
    _study_args(p)
    p.add_argument("--trials-per-m", type=int, default=None,
                   help="override the spec's trial budget per batch size")
    p.add_argument("--time-limit", type=float, default=None,
                   help="override the spec's time budget for this run (seconds)")
    p.add_argument("--against", default=None, metavar="FILE.json",
                   help="an existing vLLM config file to beat (e.g. the one vLLM ships for "
                   "this shape and GPU): the config it gives each batch size is measured "
                   "first and re-measured among the finalists, so the winner is never "
                   "slower than it side by side")
    _finalists_share_arg(p)
    _source_args(p)
    _worker_args(p)
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="live table on stderr (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run_run)


def _finalists_share_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--finalists-share", type=float, default=SHARE, metavar="FRACTION",
                   help="the most of a batch size's GPU time (its trials' measuring plus the "
                   "finalists) the finalists' re-measurement is planned to take, as a "
                   "fraction: its rounds time fewer layer calls a graph to fit (default "
                   f"{SHARE}, i.e. {SHARE * 100:g}%%; 1: unbounded)")


def _check_finalists_share(args: argparse.Namespace) -> None:
    if not valid_share(args.finalists_share):
        raise ConfigError(f"--finalists-share {args.finalists_share!r}: {SHARE_RULE}")


def _read_against(spec, path: str) -> dict:
    """The configs by M of an ``--against`` file (run and compare), refused when its name
    says another layer than the study's."""
    spec.kernel.check_file_name(spec.shape, path)
    return spec.kernel.read_file(path)[1]


def _against_configs(spec, path: str | None) -> dict | None:
    """M -> the config ``path`` gives each of the spec's batch sizes (vLLM's nearest key)."""
    if path is None:
        return None
    from searcher.results.export import nearest_config

    configs = _read_against(spec, path)
    return {M: nearest_config(configs, M) for M in spec.batch_sizes}


def _run_run(args: argparse.Namespace) -> int:
    from searcher.tune.run import make_benchmarker
    from searcher.tune.search import SearchOptions, run_search
    from searcher.tune.view import make_view

    spec, storage = _load(args, notes=True)
    if args.trials_per_m is not None and args.trials_per_m < 1:
        raise ConfigError(f"--trials-per-m {args.trials_per_m}: must be at least 1")
    _check_finalists_share(args)
    _check_limits(args)
    against = _against_configs(spec, args.against)  # a bad file fails before any worker
    code = _spawn_workers(args, storage, extra=["--no-live"])
    if code is not None:  # the workers are done: show what the storage holds now
        from searcher.results.winners import stored_summaries

        device = _stored_device(args, spec)
        summaries = stored_summaries(spec, storage, device, batch_sizes=args.batch_sizes)
        _print_summaries(spec, device, storage, summaries, args.json)
        if code == 130:
            raise KeyboardInterrupt  # stopped on request: say how to resume
        return code
    worker, workers = _worker_index(args)
    bencher, device = make_benchmarker(spec, **_source_kwargs(args))
    opts = SearchOptions(device=device, storage_url=storage, batch_sizes=args.batch_sizes,
                         trials_per_m=args.trials_per_m, time_limit_s=args.time_limit,
                         worker=worker, workers=workers, against=against,
                         finalists_share=args.finalists_share)
    summaries = run_search(spec, bencher, opts, view=make_view(args.live))
    if args.worker is None:
        _print_summaries(spec, device, storage, summaries, args.json)
    return 0


def _stored_device(args: argparse.Namespace, spec) -> str:
    """The device name workers stored their studies under (without opening a GPU)."""
    if args.replay:
        from searcher.measure.replay import read_dataset

        return read_dataset(args.replay)[0].get("vllm_name") or spec.gpu
    if args.synthetic:
        return spec.gpu
    from searcher.measure.device import current_device

    return current_device().vllm_name


def _print_summaries(spec, device: str, storage: str, summaries, as_json: bool) -> None:
    from searcher.store.record import DEVICE_INFO, unmeasured_source
    from searcher.tune.view import format_us

    # What measured the times: each distinct device_info once, and the source it names
    # (None: a GPU).
    infos = [json.loads(i) for i in sorted({json.dumps(s.extra[DEVICE_INFO], sort_keys=True)
                                           for s in summaries
                                           if s is not None and s.extra.get(DEVICE_INFO)})]
    sources = [unmeasured_source({DEVICE_INFO: info}) for info in infos]
    synthetic = "synthetic" in sources
    replayed = any(src and src.startswith("replay of") for src in sources)
    # Costs that do not split the wall time: the synthetic ones are made up, and a replay
    # charges the recorded GPU's costs without spending them (they once read as 280% of
    # its wall time).
    unsplit = synthetic or replayed

    def time_json(split) -> dict:
        # Costs that do not split the wall time (above): only its wall time is real
        # (the table leaves the other columns out; here they are null).
        d = split.to_dict()
        if not unsplit:
            return d
        return {k: (v if k == "wall_s" else None) for k, v in d.items()}

    if as_json:
        rows = []
        for s in summaries:
            if s is None:
                continue
            rows.append({
                "M": s.M, "trials": s.trials, "full": s.complete, "pruned": s.pruned,
                "failed": s.failed, "invalid": s.invalid, "duplicate": s.duplicate,
                "best_us": s.best_us if s.best_config else None,
                "winner": s.winner.to_dict() if s.winner else None, "winner_us": s.winner_us,
                "default_us": s.default_us, "against_us": s.against_us,
                "speedup": s.speedup, "noise": s.noise,
                "within_noise": s.within_noise, "decision": s.decision, "cost_s": s.cost_s,
                "wall_s": s.wall_s, "time_s": time_json(s.time), "finalized": s.finalized,
                "running": s.running, "unfinished": s.unfinished,
                "finalists_plan": s.extra.get("final_plan"),
                "device_info": s.extra.get(DEVICE_INFO),
            })
        print(json.dumps({"study": spec.name, "device": device, "storage": storage,
                          "source": ", ".join(sorted({src or "GPU" for src in sources})) or None,
                          "batch_sizes": rows, "total_time_s": time_json(_total_time(summaries))},
                         indent=2))
        return
    from rich.table import Table

    # Costs that do not split the wall time (above): only the wall time is shown.
    time_columns = ("wall s",) if unsplit else TIME_COLUMNS

    def time_cells(split) -> list[str]:
        return [_seconds(split.wall_s)] if unsplit else _time_cells(split)

    table = Table(title=f"{spec.name} on {device} ({storage})")
    against = any(s is not None and s.against_us is not None for s in summaries)
    for col in ("M", "trials", "full", "pruned", "failed", "best us", "winner", "winner us",
                "default us", *(("file us",) if against else ()), "speedup", *time_columns):
        table.add_column(col, justify="left" if col == "winner" else "right")
    for s in summaries:
        if s is None:
            continue
        winner = "-"
        if s.winner:
            is_default = s.winner == spec.kernel.default_config(spec.shape, s.M)
            winner = s.winner.short() + (" (default)" if is_default else "")
        table.add_row(
            str(s.M), str(s.trials), str(s.complete), str(s.pruned), str(s.failed),
            format_us(s.best_us), winner, format_us(s.winner_us),
            format_us(s.default_us), *((format_us(s.against_us),) if against else ()),
            _speedup_text(s), *time_cells(s.time),
        )
    total_split = _total_time(summaries)
    total = total_split.wall_s
    table.add_row("total", *[""] * (len(table.columns) - 1 - len(time_columns)),
                  *time_cells(total_split), end_section=True)
    console = _console()
    console.print(table)
    for info, source in zip(infos, sources):
        if source is not None:  # no GPU measured these times: say what did
            console.print(f"not measured on a GPU: {source} times for {info.get('name', '?')}")
            continue
        console.print(f"measured on {info.get('name', '?')} (torch {info.get('torch_version', '?')}, "
                      f"triton {info.get('triton_version', '?')}, driver "
                      f"{info.get('driver_version', '?')}, backend {info.get('backend', '?')})")
    open_trials = [(s.M, s.running, s.unfinished) for s in summaries
                   if s is not None and (s.running or s.unfinished)]
    if open_trials:
        console.print(
            "trials still RUNNING: " + ", ".join(
                f"M={M}: {n} being measured, {u} other" for M, n, u in open_trials)
            + " (a run in progress measures and asks ahead; one that was killed leaves them: "
              "the next run on this storage fails them as interrupted and queues their "
              "configs again)")
    held = ("the search loop's time, no GPU held" if sources and None not in sources
            else "on a GPU, the GPU minutes the search held the device")
    finals = {s.extra.get("final_fidelity") for s in summaries
              if s is not None and s.winner is not None}
    if finals:
        replays = sorted(f"{FIDELITIES[f].replays} replays" if f in FIDELITIES else "?"
                         for f in finals)
        plans = {s.M: s.extra["final_plan"] for s in summaries if s is not None
                 and s.winner is not None and s.extra.get("final_plan")}
        calls = sorted({p["calls_per_graph"] for p in plans.values()})
        over = [M for M, p in plans.items() if p.get("within_budget") is False]
        cut = [M for M, p in plans.items() if p.get("finalists", 0) < p.get("of", 0)]
        of = "" if not calls or calls == [10] else (
            f" of graphs of {calls[0]}" + (f"-{calls[-1]}" if len(calls) > 1 else "")
            + (" layer call" if calls == [1] else " layer calls")
            + ", as many as fit the finalists' budget"
            + (f"; fewer finalists raced at M={','.join(map(str, cut))}" if cut else "")
            + (f"; over the budget at M={','.join(map(str, over))}, even at one call a "
               "graph and at most one finalist" if over else "")
            + ": README, \"Finalists at a bounded cost\"")
        note = ("best us: the search's fastest measurement (20 replays of graphs of 10 layer "
                "calls, configs one after another); winner us and default us: the "
                f"finalists' side-by-side re-measurement ({', '.join(replays)}{of}), which "
                "picks the winner. At large M best us can read several % below: README, "
                "\"The phase bias\"")
        console.print(note)
    console.print(f"wall time stored for these batch sizes: {total / 60:.1f} min ({held})")
    if replayed:
        console.print("where the wall time went: not shown, a replay charges the recorded "
                      "GPU's costs without spending them")
    elif synthetic:
        console.print("where the wall time went: not shown, the synthetic costs are made up")
    else:
        console.print(_time_note(total_split))


#: The status table's columns of where the wall time went (see searcher.store.record.TimeSplit).
TIME_COLUMNS = ("measuring s", "compile s", "finalists s", "host s", "wall s")


def _total_time(summaries):
    from searcher.store.record import TimeSplit

    total = TimeSplit()
    for s in summaries:
        if s is not None:
            total = total + s.time
    return total


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _time_cells(split) -> list[str]:
    return [_seconds(split.measuring_s), _seconds(split.compile_s),
            _seconds(split.finalists_s), _seconds(split.host_s), _seconds(split.wall_s)]


def _time_note(split) -> str:
    """One line: the total's parts as shares of the wall time."""
    def part(name: str, value: float | None) -> str:
        if value is None:
            return f"{name} unrecorded"
        share = f" ({100 * value / split.wall_s:.0f}%)" if split.wall_s > 0 else ""
        return f"{name} {value / 60:.1f} min{share}"

    gpu = "" if split.gpu_s is None else f"; of measuring, GPU replays {split.gpu_s / 60:.1f} min"
    return ("where the wall time went: " + ", ".join(
        [part("measuring", split.measuring_s), part("compile waits", split.compile_s),
         part("finalists", split.finalists_s), part("host overhead", split.host_s)])
        + gpu + " (host overhead = wall - measuring - compile waits - finalists; "
        '"-": an older record lacks the finalists\' cost)')


# -- grid ----------------------------------------------------------------------------
def _add_grid(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="measure the exhaustive grid of a study's space",
                       description="Time every valid config of the study's space at every "
                       "batch size (short, then full), stored under the grid's own study "
                       "names; rerun to resume. --dataset writes what is stored as a CSV "
                       "that --replay can serve.")
    _study_args(p)
    p.add_argument("--limit-per-m", type=int, default=None,
                   help="measure at most this many configs per batch size (a random sample)")
    p.add_argument("--time-limit", type=float, default=None, help="stop after this long (s)")
    p.add_argument("--dataset", default=None, metavar="FILE.csv",
                   help="afterwards, write the stored grid as a replay dataset")
    p.add_argument("--no-run", action="store_true", help="measure nothing (with --dataset)")
    _source_args(p)
    _worker_args(p)
    p.set_defaults(func=_run_grid)


def _run_grid(args: argparse.Namespace) -> int:
    from searcher.tune.grid import run_grid, write_grid_dataset

    spec, storage = _load(args, notes=True)
    _check_limits(args)
    device = None
    code = None if args.no_run else _spawn_workers(args, storage, drop=["--dataset"])
    if code is not None:  # the workers are done: show what the storage holds now
        from searcher.tune.grid import stored_grid_summaries

        device = _stored_device(args, spec)
        for g in stored_grid_summaries(spec, storage, device, args.batch_sizes):
            _print_grid_line(g)
        if code == 130:
            raise KeyboardInterrupt  # stopped on request: say how to resume
        if code:
            return code
    elif not args.no_run:
        from searcher.tune.run import make_benchmarker

        worker, workers = _worker_index(args)

        bencher, device = make_benchmarker(spec, **_source_kwargs(args))
        err = _console(stderr=True)

        def progress(g) -> None:
            if g["measured"] % 50 == 0 or g["measured"] == g["size"]:
                err.print(f"grid M={g['M']}: {g['measured']}/{g['size']} measured, best "
                          f"{g['best_us'] or float('nan'):.1f} us")

        for g in run_grid(spec, bencher, device, storage, batch_sizes=args.batch_sizes,
                          limit_per_m=args.limit_per_m, time_limit_s=args.time_limit,
                          progress=progress, worker=worker, workers=workers):
            _print_grid_line(g)
    if args.dataset:
        path = write_grid_dataset(spec, storage, device or spec.gpu, args.dataset,
                                  batch_sizes=args.batch_sizes)
        print(path)
    return 0


def _check_limits(args: argparse.Namespace) -> None:
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


def _print_grid_line(g) -> None:
    print(f"M={g['M']}: {g['measured']}/{g['size']} measured ({g['failed']} failed), "
          f"best {g['best_us'] or float('nan'):.1f} us"
          f"{' ' + g['best_config'].short() if g['best_config'] else ''}, "
          f"{g['wall_s']:.0f} s")


# -- compare -------------------------------------------------------------------------
def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="the search against the grid, the default and a file",
                       description="Per batch size: grid best, search winner, gap, trials and "
                       "GPU time of each, trials to 1% and 3% of the grid's best, vLLM's "
                       "default and (--against) an existing vLLM config file. On a GPU the "
                       "finalists are re-measured side by side, interleaved.")
    _study_args(p)
    p.add_argument("--device", default=None, help="whose results (default: the spec's GPU)")
    p.add_argument("--against", default=None, metavar="FILE.json",
                   help="an existing vLLM config file to compare with")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the CSV and the PNGs, made if missing (default: "
                   "./compare-STUDY)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved re-measurement rounds")
    p.add_argument("--no-remeasure", action="store_true",
                   help="use stored times only (the default without a GPU)")
    p.add_argument("--replay", metavar="DATASET.csv",
                   help="re-measure by replaying a dataset instead of a GPU")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from searcher.results.compare import compare, plot_best_so_far, write_csv
    from searcher.tune.view import format_us

    spec, storage = _load(args)
    device = args.device or spec.gpu
    against = _read_against(spec, args.against) if args.against else None
    bencher = None
    if args.replay and not args.no_remeasure:
        from searcher.measure.replay import ReplayBenchmarker, check_dataset_fits

        check_dataset_fits(args.replay, spec.kernel, spec.shape.label(), spec.space.name,
                           spec.name)
        bencher = ReplayBenchmarker(args.replay, seed=spec.seed)
    elif not args.no_remeasure:
        from searcher.measure.device import cuda_available

        if cuda_available():
            from searcher.tune.run import make_benchmarker

            bencher, here = make_benchmarker(spec, allow_other_gpu=True)
            if here != device:
                raise ConfigError(f"re-measuring {device}'s results needs that GPU; this one "
                                  f"is {here} (pass --no-remeasure to compare stored times)")
        else:
            _console(stderr=True).print("no CUDA GPU: comparing stored times (no side-by-side "
                                        "re-measurement)")
    from searcher.results.export import output_folder

    from searcher.store.storage import iter_studies, open_storage

    held = open_storage(storage, read_only=True)
    if not any(study is not None for kind in ("search", "grid") for _, study in iter_studies(
            held, kind, spec, device, args.batch_sizes or spec.batch_sizes)):
        raise ConfigError(f"{storage} holds no search or grid of {spec.name} on {device} to "
                          "compare (run it first, or pass --device)")
    out = output_folder(args.out or f"compare-{spec.name}")
    rows = compare(spec, storage, device, against=against, bencher=bencher, rounds=args.rounds,
                   batch_sizes=args.batch_sizes,
                   against_file=Path(args.against).name if args.against else None)
    csv_path = write_csv(rows, out / f"compare-{spec.name}-{device}.csv")
    # Times that no GPU measured say so in every title (issue #12: provenance).
    sources = ", ".join(sorted({r.source for r in rows if r.source}))
    not_gpu = f" [{sources}: not GPU measurements]" if sources else ""
    pngs = [plot_best_so_far(r, out / f"compare-{spec.name}-{device}-M{r.M}.png",
                             f"{spec.name} on {device}, M={r.M}"
                             + (f"\n[{r.source}: not GPU measurements]" if r.source else ""))
            for r in rows]
    if args.json:
        print(json.dumps({"study": spec.name, "device": device, "csv": str(csv_path),
                          "png": [str(p) for p in pngs if p], "rows": [r.to_dict() for r in rows]},
                         indent=2))
        return 0
    from rich.table import Table

    # Without a recorded grid its columns would be "-" and "0/0": leave them out, say why.
    grid = any(r.grid_trials for r in rows)
    table = Table(title=f"{spec.name} on {device}: search against "
                  f"{'the grid' if grid else 'the default'} ({storage}){not_gpu}")
    cols = ["M", "grid best us", "grid trials", "grid GPU s", "search us", "gap %",
            "search trials", "search GPU s", "to 1%", "to 3%", "default us"]
    grid_cols = {"grid best us", "grid trials", "grid GPU s", "gap %", "to 1%", "to 3%"}
    if against:
        cols.append("file us")
    labels = sorted({k for r in rows for k in r.remeasured})
    cols += [f"re-measured {k}" for k in labels]
    keep = [grid or c not in grid_cols for c in cols]
    for c, shown in zip(cols, keep):
        if shown:
            table.add_column(c, justify="right")
    for r in rows:
        cells = [str(r.M), format_us(r.grid_best_us), f"{r.grid_trials}/{r.grid_size}",
                 f"{r.grid_gpu_s:.0f}", format_us(r.search_best_us),
                 "-" if r.gap_pct is None else f"{r.gap_pct:+.2f}", str(r.search_trials),
                 f"{r.search_gpu_s:.0f}", str(r.trials_to_1pct or "-"),
                 str(r.trials_to_3pct or "-"), format_us(r.default_us)]
        if against:
            cells.append(format_us(r.against_us))
        cells += [format_us(r.remeasured.get(k)) for k in labels]
        table.add_row(*(cell for cell, shown in zip(cells, keep) if shown))
    console = _console()
    if not grid:
        _console(stderr=True).print(
            f"no grid recorded for this study (`{spec.command('grid', storage)}` records one): "
            "the grid columns are left out", style="yellow")
    console.print(table)
    console.print(f"CSV: {csv_path}; plots: {', '.join(str(p) for p in pngs if p) or 'none'}")
    return 0


# -- status --------------------------------------------------------------------------
def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what the storage holds for a study, per batch size")
    _study_args(p)
    p.add_argument("--device", default=None,
                   help="the GPU whose studies to show (default: the spec's GPU)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--markdown", action="store_true",
                     help="a Markdown table (for a README or a pull request)")
    p.set_defaults(func=_run_status)


def _run_status(args: argparse.Namespace) -> int:
    from searcher.results.winners import no_stored_study, stored_summaries
    from searcher.store.storage import open_storage

    spec, storage = _load(args)
    device = args.device or spec.gpu
    summaries = stored_summaries(spec, storage, device, batch_sizes=args.batch_sizes)
    if all(s is None for s in summaries):
        raise no_stored_study(open_storage(storage, read_only=True), storage, spec, device)
    if args.markdown:
        print(_markdown(spec, device, summaries))
        return 0
    _print_summaries(spec, device, storage, summaries, args.json)
    return 0


def _speedup_text(s) -> str:
    if s.speedup is None:
        return "-"
    return f"{s.speedup:.3f}" + (" (= within noise)" if s.within_noise else "")


def _markdown(spec, device: str, summaries) -> str:
    from searcher.store.record import DEVICE_INFO
    from searcher.tune.view import format_us

    lines = [
        f"| M | trials | full | pruned | failed | winner ({'/'.join(spec.kernel.config_keys)}) "
        "| winner us | default us | speedup | noise % | GPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    info = None
    for s in summaries:
        if s is None:
            continue
        total += s.wall_s
        info = info or s.extra.get(DEVICE_INFO)
        w = s.winner
        label = "/".join(str(v) for v in w.astuple()) if w else "-"
        lines.append(
            f"| {s.M} | {s.trials} | {s.complete} | {s.pruned} | {s.failed} | {label} | "
            f"{format_us(s.winner_us)} | {format_us(s.default_us)} | {_speedup_text(s)} | "
            f"{f'{100 * s.noise:.1f}' if s.noise is not None else '-'} | {s.wall_s:.0f} |")
    if info:
        lines.append("")
        lines.append(f"{spec.name} on {info.get('name')} (torch {info.get('torch_version')}, triton "
                     f"{info.get('triton_version')}, backend {info.get('backend')}); GPU time "
                     f"{total / 60:.1f} min.")
    return "\n".join(lines)


# -- decide --------------------------------------------------------------------------
def _add_decide(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decide", help="decide again what each batch size exports, under "
                       "the current decision rule",
                       description="For every batch size whose search finished, re-measure "
                       "its finalists, vLLM's default and (if any) the file it competed "
                       "against, interleaved, and let the decision rule "
                       "(searcher/strategies/decide.py) pick again; --stored judges the rounds "
                       "stored with each batch size instead, without a GPU. The previous winner "
                       "is kept in the record.")
    _study_args(p)
    p.add_argument("--stored", action="store_true",
                   help="judge the finalists' stored rounds; measure nothing (for a study "
                   "whose GPU is not at hand; a pair the rule cannot decide from them keeps "
                   "vLLM's default)")
    p.add_argument("--device", default=None,
                   help="with --stored: the GPU whose studies to decide (default: the spec's)")
    p.add_argument("--against", default=None, metavar="FILE.json",
                   help="a vLLM config file whose configs compete too (default: the one the "
                   "stored record competed against, if any)")
    _source_args(p)
    _finalists_share_arg(p)
    p.add_argument("--json", action="store_true", help="print the decisions as JSON")
    p.set_defaults(func=_run_decide)


def _run_decide(args: argparse.Namespace) -> int:
    from searcher.store.record import DEVICE_INFO, FINAL, unmeasured_source
    from searcher.store.storage import iter_studies, open_storage
    from searcher.tune.decide import redecide, redecide_stored
    from searcher.tune.search import SearchOptions

    spec, storage = _load(args)
    batch_sizes = args.batch_sizes or spec.batch_sizes
    _check_finalists_share(args)
    if args.stored:
        if args.against or args.replay or args.synthetic or args.finalists_share != SHARE:
            raise ConfigError("--stored measures nothing: it takes no --against, --replay, "
                              "--synthetic or --finalists-share")
        device = args.device or spec.gpu
    else:
        if args.device:
            raise ConfigError("--device goes with --stored; a measuring decide uses this "
                              "machine's GPU")
        from searcher.tune.run import make_benchmarker

        try:
            bencher, device = make_benchmarker(spec, **_source_kwargs(args))
        except NoGPUError as exc:  # the CPU route decide has of its own
            raise NoGPUError(f"{exc}; or judge the rounds already stored, measuring "
                             "nothing, with --stored") from exc
    # What there is to decide, read without writing: a refused decide leaves the storage
    # as it was (a missing storage file is an error naming it, not a new file).
    finished = {M: study for M, study in iter_studies(
        open_storage(storage, read_only=True), "search", spec, device, batch_sizes)
        if study is not None and study.user_attrs.get(FINAL)}
    if not finished:
        raise ConfigError(f"{storage} holds no finished search of {spec.name} on {device} "
                          "to decide (run it first)")
    before = {M: study.user_attrs[FINAL].get("winner") for M, study in finished.items()}
    sources = {src for study in finished.values() if (src := unmeasured_source(study.user_attrs))}
    if args.stored:
        after = {}
        for M, study in iter_studies(open_storage(storage), "search", spec, device, finished):
            after[M] = redecide_stored(spec.kernel, study, M)
    else:
        here = unmeasured_source({DEVICE_INFO: bencher.device_info()})
        sources |= {here} if here else set()
        opts = SearchOptions(device=device, storage_url=storage,
                             against=_against_configs(spec, args.against),
                             finalists_share=args.finalists_share)
        after = redecide(spec, bencher, opts, list(finished))
    source = ", ".join(sorted(sources)) or None
    rows = []
    for M in batch_sizes:
        s = after.get(M)
        if s is None:
            rows.append({"M": M, "decided": False})
            continue
        old = spec.kernel.config_from_dict(before[M]) if before.get(M) else None
        is_default = s.winner == spec.kernel.default_config(spec.shape, M)
        reason = s.decision or ("vLLM's default was the only finalist that ran" if is_default
                                else "vLLM's default failed as a trial: nothing to judge against")
        rows.append({"M": M, "decided": True, "before": old, "winner": s.winner,
                     "default": is_default, "winner_us": s.winner_us,
                     "default_us": s.default_us, "reason": reason})
    how = "stored rounds" if args.stored else "measured"
    if args.json:
        print(json.dumps({"study": spec.name, "device": device, "storage": storage,
                          "from": how, "source": source or "GPU",
                          "batch_sizes": [{**r, **{k: r[k].to_dict() for k in ("before", "winner")
                                                   if r.get(k) is not None}} for r in rows]},
                         indent=2))
        return 0
    out = _console()
    if source:
        out.print(f"not measured on a GPU: {source} times; a file of them needs "
                  "`searcher export --allow-unmeasured`", style="yellow")
    missing = [str(r["M"]) for r in rows if not r["decided"]]
    if missing:
        out.print(f"no finished search stored (nothing to decide) at M={', '.join(missing)}")
    for r in rows:
        if not r["decided"]:
            continue
        was = r["before"].short() if r["before"] else "-"
        now = r["winner"].short() + (" (vLLM's default)" if r["default"] else "")
        change = "kept" if r["before"] == r["winner"] else f"was {was}"
        out.print(f"M={r['M']}: {now}, {change}: {r['reason']}")
    changed = sum(r["decided"] and r["before"] != r["winner"] for r in rows)
    export = f"searcher export --study {spec.name} --storage {storage}"
    decided = [r["M"] for r in rows if r["decided"]]
    if args.batch_sizes or missing:  # export refuses batch sizes with nothing stored
        export += f" --batch-sizes {','.join(map(str, decided))}"
    if source:
        export += " --allow-unmeasured"
    out.print(f"{changed} of {sum(r['decided'] for r in rows)} batch sizes changed; "
              f"`{export} --out DIR` writes the file (add --overwrite to replace one there)")
    return 0


# -- export --------------------------------------------------------------------------
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the winners as vLLM's config file",
                       description="Write the best config of every batch size in vLLM's "
                       "file format (E=..,N=..,device_name=...json).")
    _study_args(p)
    p.add_argument("--device", default=None,
                   help="the GPU whose results to export (default: the spec's GPU)")
    p.add_argument("--out", default=".", help="directory to write into (default: .)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing file")
    mode.add_argument("--merge", action="store_true",
                      help="update an existing file's batch sizes, keeping its others")
    p.add_argument("--grid", action="store_true",
                   help="export the exhaustive grid's fastest configs (searcher grid) instead "
                   "of the search's winners")
    p.add_argument("--allow-unmeasured", action="store_true",
                   help="write the file even though its results are synthetic (--synthetic) "
                   "or replayed (--replay), not measured on a GPU")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from searcher.results.winners import export_study

    spec, storage = _load(args)
    done = export_study(spec, storage, args.device or spec.gpu, args.out,
                        overwrite=args.overwrite, merge=args.merge, batch_sizes=args.batch_sizes,
                        kind="grid" if args.grid else "search",
                        allow_unmeasured=args.allow_unmeasured)
    if done.filled:
        print(f"batch sizes not tuned, written with vLLM's default config: "
              f"{', '.join(map(str, done.filled))}", file=sys.stderr)
    if done.all_default:
        print("every batch size of this file is vLLM's default config: vLLM runs the same "
              "with it as without it (no config was shown faster than the default)",
              file=sys.stderr)
    print(done.path)
    return 0


# -- copy ----------------------------------------------------------------------------
def _add_copy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("copy", help="copy a storage into the record this version writes",
                       description="Copy every study of a storage into a new one as this "
                       "version writes them (config keys as trial attributes, unmeasured "
                       "proposals PRUNED not FAIL, the objective named, claims in one "
                       "study), e.g. to browse an older storage with optuna-dashboard. The "
                       "copy resumes as the original would; the original is not changed.")
    p.add_argument("--storage", required=True, help="the storage to copy (a URL)")
    p.add_argument("--to", required=True, help="a new storage to write (a URL)")
    p.set_defaults(func=_run_copy)


def _run_copy(args: argparse.Namespace) -> int:
    from searcher.store.migrate import copy_storage

    for name in copy_storage(args.storage, args.to):
        print(name)
    return 0


# -- report --------------------------------------------------------------------------
def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="a Markdown report with plots: the evidence for a tuned file",
                       description="Write, from the storage (no GPU), a Markdown report with "
                       "PNG plots: per batch size vLLM's default, the best of each recorded "
                       "grid, searcher's winner, its speedup (within noise or not), % of the "
                       "physical floor, trials and GPU time.")
    _study_args(p, model=False)
    p.add_argument("--device", default=None, help="whose results (default: the spec's GPU)")
    p.add_argument("--grid", action="append", default=[], metavar="FILE.csv",
                   help="a grid recorded by `searcher grid --dataset` (repeat for several)")
    p.add_argument("--out", default=".",
                   help="directory for report-<study>-<device>.md and its PNGs (default: .)")
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from searcher.results.report import build_report, report_command, write_report

    spec, storage = _load(args)
    device = args.device or spec.gpu
    from searcher.results.export import output_folder

    report = build_report(spec, storage, device, args.grid, batch_sizes=args.batch_sizes)
    output_folder(args.out)  # made if missing, as compare's and export's
    command = report_command(args.study, storage, device, args.grid, args.out,
                             args.batch_sizes)
    print(write_report(report, args.out, command))
    return 0


# -- init ----------------------------------------------------------------------------
def _add_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write the study a model would run, to edit and share",
                       description="Read a model's config.json and write the study that "
                       "`searcher run --model` with the same options runs (the same study: "
                       "edit and share it, then run it with --study).")
    p.add_argument("--model", required=True, metavar="PATH",
                   help="a config.json, a model folder holding one, or a model id in the "
                   "local Hugging Face cache (never downloaded)")
    _model_args(p)
    p.add_argument("--storage", default=None,
                   help="a storage URL to write into the study (default: none, i.e. "
                   "sqlite:///searcher.db in the directory searcher runs in)")
    p.add_argument("--out", default=None, metavar="FILE.toml",
                   help="where to write it (default: studies/NAME.toml)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_run_init)


def _run_init(args: argparse.Namespace) -> int:
    from searcher.kernels import DEFAULT_KERNEL, get_kernel
    from searcher.study.model_study import model_spec

    _spec, made = model_spec(get_kernel(DEFAULT_KERNEL), args.model, **_model_options(args))
    out = Path(args.out) if args.out else Path("studies") / f"{made.name}.toml"
    if out.suffix != ".toml":
        raise ConfigError(f"--out {out}: a study file must end in .toml")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"--out {out}: exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(made.text, encoding="utf-8")
    tmp.replace(out)
    err = _console(stderr=True)
    for note in made.notes:
        err.print(f"note: {note}", style="yellow")
    err.print(f"study {out.stem}: run it with `searcher run --study {out}`")
    print(out)
    return 0


# -- list ----------------------------------------------------------------------------
def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="the studies and search spaces available")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_list)


def _run_list(args: argparse.Namespace) -> int:
    from searcher.study.space import load_space
    from searcher.study.spec import list_specs, load_spec, spaces_dirs

    studies, problems = [], []
    for name, path in list_specs().items():
        try:
            spec = load_spec(path)
        except SearcherError as exc:
            problems.append(str(exc))
            continue
        studies.append({"name": name, "gpu": spec.gpu, "shape": spec.shape.label(),
                        "space": spec.space.name, "batch_sizes": len(spec.batch_sizes),
                        "trials_per_m": spec.trials_per_m, "path": str(path)})
    spaces = []
    seen: set[str] = set()
    for folder in spaces_dirs():
        for path in sorted(folder.glob("*.toml")):
            if path.stem in seen:
                continue
            seen.add(path.stem)
            try:
                space = load_space(path)
            except SearcherError as exc:
                problems.append(str(exc))
                continue
            spaces.append({"name": space.name, "raw_size": space.raw_size(),
                           "constraints": len(space.constraints), "path": str(path)})
    if args.json:
        print(json.dumps({"studies": studies, "spaces": spaces, "problems": problems}, indent=2))
        return 0
    from rich.table import Table

    console = _console()
    t = Table(title="studies")
    for col in ("name", "gpu", "shape", "space", "batch sizes", "trials/M"):
        # Fold rather than cut: a shape's end names its quantization (dtype, block_shape).
        t.add_column(col, overflow="fold")
    for s in studies:
        t.add_row(s["name"], s["gpu"], s["shape"], s["space"], str(s["batch_sizes"]),
                  str(s["trials_per_m"] or "-"))
    console.print(t)
    t = Table(title="search spaces")
    for col in ("name", "configs before constraints", "constraints", "path"):
        t.add_column(col)
    for s in spaces:
        t.add_row(s["name"], str(s["raw_size"]), str(s["constraints"]), s["path"])
    console.print(t)
    for problem in problems:
        _console(stderr=True).print(f"skipped: {problem}", style="yellow")
    return 0


# -- entry point ---------------------------------------------------------------------
def versions() -> dict[str, str]:
    """searcher's version and those of the packages that decide its results, read from
    the installed packages' metadata (torch and triton are not imported: that takes
    seconds and is not needed to name them)."""
    from importlib import metadata

    from searcher import __version__

    found = {"searcher": __version__}
    for name in ("torch", "triton", "optuna"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(" ".join(f"{name} {version}" for name, version in versions().items()))
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse with searcher's error form: one line and exit 2, the usage left to
    ``--help`` (a bad value of an option is a bad input like any other)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="searcher",
        description="Find fast launch configs for Triton kernels (vLLM's fused MoE) by search.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the versions of searcher, torch, triton and optuna")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run, _add_grid, _add_compare, _add_status, _add_decide, _add_export, _add_report,
    _add_copy, _add_init,
    _add_list, _add_bench,
]


def _raise_interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 some configs failed, 2 user error)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # workers are started with the same arguments
    if args.command in ("run", "grid"):
        # Ctrl-C or SIGTERM: stop after the measurement in progress; Ctrl-C again: now.
        from searcher.tune.stop import graceful_signals

        err = _console(stderr=True)
        restore = graceful_signals(lambda text: err.print(text, style="yellow"))
    elif threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        restore = lambda: signal.signal(signal.SIGTERM, previous)  # noqa: E731
    else:
        restore = lambda: None  # noqa: E731
    try:
        import optuna

        # searcher shows its own progress; Optuna's per-trial log lines would drown it.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover - optuna is a dependency
        pass
    try:
        return int(args.func(args) or 0)
    except SearcherError as exc:
        if args.debug:
            raise
        _console(stderr=True).print(f"searcher {args.command}: {exc}", style="red")
        return EXIT_USAGE
    except KeyboardInterrupt:
        resume = ("; what was measured is stored, rerun the same command to resume"
                  if args.command in ("run", "grid") else "")
        _console(stderr=True).print(f"searcher {args.command}: interrupted{resume}", style="yellow")
        return 130
    except BrokenPipeError:
        # The reader went away (`searcher status | head`): no traceback, and no second
        # error when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        restore()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
