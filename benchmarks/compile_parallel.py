"""Fused-MoE configs compiled on threads of one process against separate processes: how
much of Triton's compile holds the GIL (issue #13).

searcher compiles ahead on threads of the measuring process (``GpuBenchmarker(workload,
compile_threads=K)``, K from ``searcher.measure.harness.compile_threads_for``: 12 on the
lent 16-core host; each runs ``layer.compile()``, a Triton ``warmup`` of every kernel
of the layer). Here the same ``--configs`` valid configs of the study's space at ``--M``
(drawn with ``--seed``, vLLM's default left out) compile in each mode: ``threads K`` is one
worker process with K compile threads, ``processes K`` is K workers of one thread. Each
mode has freshly spawned workers and a fresh, empty ``TRITON_CACHE_DIR``, so it finds no
kernel of another mode on disk or in memory. A worker builds the workload itself (one CUDA
context and one copy of the weights per worker: fine for a benchmark) and the configs'
layers, compiles vLLM's default config untimed (Triton's driver, the helper kernels every
config shares), then waits for the others. Timed from the common start to the last
worker's end: each thread compiles the next config (a counter shared by all workers).
Helpers that a BLOCK_SIZE_M specializes anew compile in the timed part, as in a search; a
process compiles them itself or loads them from the shared cache ("disk hits"). Compiles
only: in a search the measuring thread runs beside them. Reported: configs/s, speedup over
1 thread, the workers' CPU seconds (all their threads) against the wall (at most about 1
while the GIL serializes them), and ptxas' CPU seconds (child processes).

The GIL share. A probe thread in each worker sleeps 1 ms at a time; it needs the GIL to
wake, so a wake more than ``LATE_S`` late waited for it (or for a core: see the baseline).
A thread in Python code hands the GIL over after the 5 ms switch interval, C++ code that
keeps it only when it returns. The time from a wake to the next wake, when that one is
late, counts as GIL held: ``GIL busy`` is that share of the wall; ``late`` is the summed
lateness over the wall; ``baseline`` both over 1 s before the start, nothing compiling.
With one compile thread, GIL busy is the share f of a compile that holds the GIL (threads
speed compiles up at most 1/f); with K threads, how busy the GIL is (near 1: they take
turns). Per compile stage (``triton.knobs.compilation.listener``) the share of its time
with the GIL held is read in the single-threaded workers; its ms per kernel in each mode
show which stages wait for the GIL under threads.

On the GPU machine (the repository on PYTHONPATH, nothing installed)::

    python benchmarks/compile_parallel.py --study h200-e64-n1408 --M 64

Without a GPU, ``--cpu-target`` compiles for sm_90 from empty CPU tensors, through a
stand-in for Triton's driver that launches nothing (unquantized studies only).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROBE_SLEEP_S = 0.001
#: A probe wake later than this past its sleep waited (Linux timer slack is ~0.06 ms).
LATE_S = 0.0005
BASELINE_S = 1.0
#: Seconds a mode's workers may take to start, and then to compile, before it is abandoned.
WAIT_S = 900.0
STAGES = {"make_ir": "AST to TTIR (Python)", "ttir": "MLIR passes", "ttgir": "MLIR passes",
          "llir": "to LLVM IR, LLVM O3", "ptx": "LLVM NVPTX codegen",
          "cubin": "ptxas (subprocess)", "store": "metadata to the cache"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def draw_configs(spec: Any, M: int, n: int, seed: int) -> list[dict[str, int]]:
    """``n`` distinct valid configs (as dicts) of the study's space at batch size ``M``,
    vLLM's default left out (the warm-up compiles it), drawn with ``random.Random(seed)``."""
    default = spec.kernel.default_config(spec.shape, M)
    context = spec.kernel.context(spec.shape, M, spec.gpu_facts)
    pool = [c for c in spec.space.enumerate(context) if c != default]
    if not 1 <= n <= len(pool):
        raise SystemExit(f"--configs {n}: must be 1 to {len(pool)} (the valid configs at M={M})")
    return [c.to_dict() for c in random.Random(seed).sample(pool, n)]


class Probe(threading.Thread):
    """Sleeps ``PROBE_SLEEP_S`` at a time; records each wake (``time.time()``, s) and how
    late it came (s past the sleep)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.wakes: list[float] = []
        self.lates: list[float] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            start = time.time()
            time.sleep(PROBE_SLEEP_S)
            self.wakes.append(time.time())
            self.lates.append(self.wakes[-1] - start - PROBE_SLEEP_S)

    def finish(self) -> tuple[list[tuple[float, float]], float]:
        """Stops; returns the intervals counted as GIL held (in time order) and the summed
        lateness (s)."""
        self._done.set()
        self.join()
        held = [(self.wakes[i - 1], self.wakes[i]) for i in range(1, len(self.wakes))
                if self.lates[i] > LATE_S]
        return held, sum(max(0.0, late) for late in self.lates)


def covered_s(held: list[tuple[float, float]], a: float, b: float) -> float:
    """Seconds of [a, b) inside ``held`` (disjoint intervals in time order)."""
    i, total = max(0, bisect.bisect_right(held, (a, a)) - 1), 0.0
    while i < len(held) and held[i][0] < b:
        total += max(0.0, min(b, held[i][1]) - max(a, held[i][0]))
        i += 1
    return total


def _layers(study: str, M: int, configs: list[dict[str, int]],
            cpu_target: bool) -> tuple[list, dict[str, Any]]:
    """The layers of vLLM's default config and of ``configs``, and the device as recorded."""
    import torch
    import triton

    from searcher.study.spec import find_spec, load_spec

    spec = load_spec(find_spec(study))
    s = spec.shape
    wanted = [spec.kernel.default_config(s, M), *map(spec.kernel.config_from_dict, configs)]
    if not cpu_target:
        from searcher.measure.device import current_device

        workload = spec.kernel.workload(s, spec.backend, spec.seed)
        return [workload.layer(M, c) for c in wanted], current_device().to_dict()
    from triton.backends.compiler import GPUTarget

    from searcher.kernels.fused_moe.backends import get_backend
    from searcher.kernels.fused_moe.layer import TORCH_DTYPES, WEIGHT_DTYPES, MoEInputs

    if s.dtype not in ("bf16", "fp16", "fp32"):
        raise SystemExit(f"--cpu-target: study {study} is {s.dtype}; only bf16, fp16, fp32 are")
    triton.runtime.driver.set_active(SimpleNamespace(
        get_current_device=lambda: 0, get_current_stream=lambda device=None: 0,
        get_current_target=lambda: GPUTarget("cuda", 90, 32)))
    w = WEIGHT_DTYPES[s.dtype]
    inputs = MoEInputs(shape=s, M=M, x=torch.empty(M, s.hidden, dtype=TORCH_DTYPES[s.dtype]),
                       logits=torch.empty(M, s.routed_experts),
                       w1=torch.empty(s.E, 2 * s.N, s.hidden, dtype=w),
                       w2=torch.empty(s.E, s.hidden, s.N, dtype=w))
    layers = [get_backend("builtin").layer(inputs, c) for c in wanted]
    return layers, {"name": "none (--cpu-target: sm_90)", "vllm_name": "cpu-target"}


def worker(study: str, M: int, configs: list[dict[str, int]], threads: int, cache_dir: str,
           cpu_target: bool, next_index: Any, go: Any, results: Any) -> None:
    """One worker process of a mode: sets up, reports ready, compiles the configs it takes
    from ``next_index`` on ``threads`` threads once ``go`` is set, reports what it saw."""
    os.environ["TRITON_CACHE_DIR"] = cache_dir  # before triton is imported
    os.environ.pop("TRITON_INTERPRET", None)  # the tests' conftest sets it: compile for real
    import torch
    import triton

    (default_layer, *layers), device = _layers(study, M, configs, cpu_target)
    stages: list[tuple[str, float, float]] = []  # (stage, start, end), time.time() s
    counts = {"compiled": 0, "disk_hits": 0}

    def listener(*, times: Any, cache_hit: bool, **_: Any) -> None:
        counts["disk_hits" if cache_hit else "compiled"] += 1
        if cache_hit:
            return
        end = time.time()  # the stages ran back to back up to now
        for name, us in reversed([("make_ir", times.ir_initialization), *times.lowering_stages,
                                  ("store", times.store_results)]):
            stages.append((name, end - us * 1e-6, end))
            end -= us * 1e-6

    fields = getattr(getattr(triton.knobs, "CompileTimes", None), "__dataclass_fields__", {})
    if {"ir_initialization", "lowering_stages", "store_results"} <= fields.keys():
        triton.knobs.compilation.listener = listener  # else no stage table (older Triton)
    default_layer.compile()
    probe = Probe()
    probe.start()
    time.sleep(BASELINE_S)
    held, late_s = probe.finish()
    baseline = (sum(b - a for a, b in held) / BASELINE_S, late_s / BASELINE_S)
    stages.clear()
    counts.update(compiled=0, disk_hits=0)
    failures: list[str] = []

    def compile_next() -> None:
        while True:
            with next_index.get_lock():
                i = next_index.value
                next_index.value += 1
            if i >= len(layers):
                return
            try:
                layers[i].compile()
            except Exception as exc:  # a config that does not compile is a result here
                failures.append(f"{configs[i]}: {type(exc).__name__}: {str(exc)[:200]}")

    results.put("ready")
    go.wait()
    probe, pool = Probe(), [threading.Thread(target=compile_next) for _ in range(threads)]
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    before = [resource.getrusage(w) for w in who]
    probe.start()
    start = time.time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    end = time.time()
    cpu_s = [b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime
             for a, b in zip(before, [resource.getrusage(w) for w in who])]
    held, late_s = probe.finish()
    stage_s: dict[str, list[float]] = {}  # stage: [seconds, of which the GIL was held]
    for name, a, b in stages:
        row = stage_s.setdefault(name, [0.0, 0.0])
        row[0] += b - a
        row[1] += covered_s(held, a, b)
    results.put({"end": end, "device": device, "torch": torch.__version__,
                 "triton": triton.__version__, "cpu_s": cpu_s[0], "children_cpu_s": cpu_s[1],
                 "gil_busy": covered_s(held, start, end) / (end - start),
                 "late": late_s / (end - start), "baseline": baseline, "stage_s": stage_s,
                 "failures": failures, **counts})


def _collect(results: Any, procs: list, what: str) -> list:
    """One message from each worker; exits if a worker dies or ``WAIT_S`` passes."""
    got: list = []
    deadline = time.monotonic() + WAIT_S
    while len(got) < len(procs):
        try:
            got.append(results.get(timeout=1.0))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                how = f"exited with {dead[0]}" if dead else f"took over {WAIT_S:.0f} s"
                raise SystemExit(f"a worker {how} while {what} (its traceback, if any, is above)")
    return got


def run_mode(args: argparse.Namespace, configs: list[dict[str, int]], threads: int,
             processes: int) -> dict[str, Any]:
    """Compiles ``configs`` in ``processes`` fresh workers of ``threads`` threads each."""
    ctx = mp.get_context("spawn")
    cache_dir = tempfile.mkdtemp(prefix="triton-cache-")
    next_index, go, results = ctx.Value("i", 0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(args.study, args.M, configs, threads, cache_dir,
                                              args.cpu_target, next_index, go, results))
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        _collect(results, procs, "starting")
        go_t = time.time()
        go.set()
        parts = _collect(results, procs, "compiling")
    finally:
        for p in procs:
            p.join()
        shutil.rmtree(cache_dir, ignore_errors=True)
    wall = max(p["end"] for p in parts) - go_t
    stage_s: dict[str, list[float]] = {}
    for p in parts:
        for name, (spent, held) in p["stage_s"].items():
            row = stage_s.setdefault(name, [0.0, 0.0])
            row[0], row[1] = row[0] + spent, row[1] + held

    def mean(key: str, i: int | None = None) -> float:  # each process has a GIL of its own
        return sum(p[key] if i is None else p[key][i] for p in parts) / len(parts)

    return {"mode": f"{processes} processes" if processes > 1 else
            f"{threads} thread{'s' * (threads > 1)}", "threads": threads, "processes": processes,
            "wall_s": wall, "configs_per_s": len(configs) / wall,
            "cpu_s": sum(p["cpu_s"] for p in parts),
            "children_cpu_s": sum(p["children_cpu_s"] for p in parts),
            "gil_busy": mean("gil_busy"), "late": mean("late"),
            "baseline_gil_busy": mean("baseline", 0), "baseline_late": mean("baseline", 1),
            "kernels_compiled": sum(p["compiled"] for p in parts),
            "disk_hits": sum(p["disk_hits"] for p in parts), "stage_s": stage_s,
            "failures": [f for p in parts for f in p["failures"]],
            **{k: parts[0][k] for k in ("device", "torch", "triton")}}


def render(modes: list[dict[str, Any]]) -> str:
    """The Markdown tables of a run (speedups against the ``1 thread`` mode, if run)."""
    base = next((m["wall_s"] for m in modes if (m["threads"], m["processes"]) == (1, 1)), None)
    lines = ["| mode | configs/s | wall s | speedup vs 1 thread | worker CPU s | ptxas CPU s "
             "| worker CPU / wall | GIL busy | late / wall | baseline: busy, late "
             "| kernels compiled, disk hits |", "|---" * 11 + "|"]
    for m in modes:
        speedup = f"{base / m['wall_s']:.2f}x" if base else "n/a"
        lines.append(
            f"| {m['mode']} | {m['configs_per_s']:.2f} | {m['wall_s']:.1f} | {speedup} "
            f"| {m['cpu_s']:.1f} | {m['children_cpu_s']:.1f} | {m['cpu_s'] / m['wall_s']:.2f} "
            f"| {m['gil_busy']:.0%} | {m['late']:.0%} "
            f"| {m['baseline_gil_busy']:.0%}, {m['baseline_late']:.0%} "
            f"| {m['kernels_compiled']}, {m['disk_hits']} |")
    # The GIL-held share of a stage is read where one thread compiles alone: in a mode of
    # several processes a late probe may have waited for a core instead (their workers
    # and ptxas children share the machine's cores).
    singles = [m for m in modes if (m["threads"], m["processes"]) == (1, 1)]
    if not singles or not singles[0]["stage_s"]:
        return "\n".join(lines)
    lines += ["", "| stage | what | GIL held (1 thread) | "
              + " | ".join(f"ms per kernel, {m['mode']}" for m in modes) + " |",
              "|---" * (3 + len(modes)) + "|"]
    for name in sorted(singles[0]["stage_s"], key=[*STAGES, *singles[0]["stage_s"]].index):
        spent, held = (sum(m["stage_s"].get(name, [0.0, 0.0])[i] for m in singles) for i in (0, 1))
        per_kernel = (1e3 * m["stage_s"].get(name, [0.0])[0] / max(1, m["kernels_compiled"])
                      for m in modes)
        lines.append(f"| {name} | {STAGES.get(name, '')} | {held / spent if spent else 0:.0%} | "
                     + " | ".join(f"{ms:.1f}" for ms in per_kernel) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--study", default="h200-e64-n1408",
                    help="study whose space the configs come from (default h200-e64-n1408)")
    ap.add_argument("--M", type=int, default=64, help="batch size (default 64)")
    ap.add_argument("--configs", type=int, default=24,
                    help="distinct configs each mode compiles (default 24)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the configs' draw (default 0)")
    ap.add_argument("--threads", default="1,4,12",
                    help="thread counts of one process, comma-separated (default 1,4,12)")
    ap.add_argument("--processes", default="4,12",
                    help="process counts of one thread, comma-separated (default 4,12)")
    ap.add_argument("--cpu-target", action="store_true", help="no GPU: compile for sm_90")
    ap.add_argument("--out", help="JSON path (default: benchmarks/results/"
                    "compile-parallel-<GPU name>.json)")
    args = ap.parse_args(argv)
    from searcher.study.spec import find_spec, load_spec

    configs = draw_configs(load_spec(find_spec(args.study)), args.M, args.configs, args.seed)
    plan = ([(int(t), 1) for t in args.threads.split(",") if t]
            + [(1, int(p)) for p in args.processes.split(",") if p])
    modes = []
    for threads, processes in plan:
        modes.append(run_mode(args, configs, threads, processes))
        m = modes[-1]
        log(f"{m['mode']}: {len(configs)} configs in {m['wall_s']:.1f} s, worker CPU "
            f"{m['cpu_s']:.1f} s, GIL busy {m['gil_busy']:.0%}, {len(m['failures'])} failed")
    table = render(modes)
    print(table)
    device = modes[0]["device"]
    out = Path(args.out or ROOT / "benchmarks" / "results"
               / f"compile-parallel-{device['vllm_name']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "what": "Triton compile on threads vs processes, GIL share (issue #13)",
        "gpu": device["name"], "device": device, "torch": modes[0]["torch"],
        "triton": modes[0]["triton"],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]),
        "study": args.study, "M": args.M, "seed": args.seed, "configs": configs,
        "probe_sleep_s": PROBE_SLEEP_S, "late_s": LATE_S, "baseline_s": BASELINE_S,
        "switch_interval_s": sys.getswitchinterval(), "cpu_count": os.cpu_count(),
        "modes": [{k: v for k, v in m.items() if k not in ("device", "torch", "triton")}
                  for m in modes],
        "table": table}, indent=1) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
