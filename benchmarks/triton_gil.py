"""How long one Triton compile holds the GIL at a stretch (CPU, no GPU needed).

Issue #13: the process that times kernels on the GPU also compiles the next configs on
compile threads (``GpuBenchmarker._compile`` in ``searcher/measure/harness.py``). The
finalists' and the trials' measurements at small M are mostly host work (graph capture,
launches, waits that release the GIL), and on the GPU they got 2-3x slower while a wave
of compiles ran; ``sys.setswitchinterval(0.0005)`` did not help. That would fit if
Triton's C++ passes (MLIR and LLVM behind pybind11) keep the GIL while they run, since
the switch interval can only interrupt Python bytecode, not a call into C.

This script measures it directly. The main thread is a "ticker": it loops
``time.sleep(tick)`` (which releases the GIL) and records each iteration's wall time.
Back from the sleep it needs the GIL again, so an iteration much longer than ``tick``
means another thread held the GIL that long. While it ticks, ONE other thread compiles
``--kernels`` distinct kernels for an sm_90 target (H100) with ``triton.compile``, each
a cache miss (a fresh ``TRITON_CACHE_DIR`` per run and a distinct constexpr per kernel).
With one compile thread on two or more cores, a long iteration is the GIL, not a
shortage of CPU. The same ticker runs alone as a baseline, for as long as the compiles
took. Each run is repeated per switch interval (``--switch-intervals-ms``).

Each long gap (above ``--long-ms``) is charged to the compile stage that overlaps it the
most (stage times from Triton's compilation listener), to see which stage holds the GIL;
the garbage collector's passes during the compiles are counted too (a pass is C code that
holds the GIL throughout, like a pybind11 call that does not release it).
One compile before the runs warms up Triton's one-time costs (imports, the ptxas version).
With ``--freeze``, ``gc.collect()`` then ``gc.freeze()`` run after the imports and that warm-up,
before the runs: every object alive then moves to the permanent generation, which no pass
traverses again, so a full (generation 2) pass no longer walks torch's objects.

    python benchmarks/triton_gil.py
    python benchmarks/triton_gil.py --kernels 8 --switch-intervals-ms 5,0.5,0.1
    python benchmarks/triton_gil.py --import-torch
    python benchmarks/triton_gil.py --import-torch --freeze

Needs Triton with its NVIDIA backend and ptxas (shipped in the wheel); no GPU.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import threading
import time

import numpy as np
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn,
                  stride_cm, stride_cn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr, SALT: tl.constexpr):
    """C = A @ B * SALT in fp16 with fp32 accumulation; SALT only makes kernels distinct."""
    pid = tl.program_id(0)
    blocks_n = tl.cdiv(N, BLOCK_N)
    rows = (pid // blocks_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = (pid % blocks_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ak
    b_ptrs = b_ptr + ks[:, None] * stride_bk + cols[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=(rows[:, None] < M) & (ks[None, :] < left), other=0.0)
        b = tl.load(b_ptrs, mask=(ks[:, None] < left) & (cols[None, :] < N), other=0.0)
        acc += tl.dot(a, b)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    acc = acc * SALT
    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(tl.float16), mask=(rows[:, None] < M) & (cols[None, :] < N))


SIGNATURE = {
    "a_ptr": "*fp16", "b_ptr": "*fp16", "c_ptr": "*fp16",
    "M": "i32", "N": "i32", "K": "i32",
    "stride_am": "i32", "stride_ak": "constexpr",
    "stride_bk": "i32", "stride_bn": "constexpr",
    "stride_cm": "i32", "stride_cn": "constexpr",
    "BLOCK_M": "constexpr", "BLOCK_N": "constexpr", "BLOCK_K": "constexpr", "SALT": "constexpr",
}
FIRST_STAGE = "make_ir"  # Triton's "ir_initialization": cache key, AST to TTIR (Python)


class Compiler:
    """Compiles distinct matmul kernels for one target and keeps each stage's interval."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.target = GPUTarget("cuda", args.arch, 32)
        self.options = {"num_warps": args.num_warps, "num_stages": args.num_stages}
        self.blocks = {"BLOCK_M": args.block_m, "BLOCK_N": args.block_n, "BLOCK_K": args.block_k}
        self.salt = 0
        self.stages: list[tuple[str, float, float]] = []  # (stage, start, end), perf_counter s
        self._times = None
        triton.knobs.compilation.listener = self._listen

    def _listen(self, *, src, metadata, metadata_group, times, cache_hit) -> None:
        if cache_hit:
            raise RuntimeError("Triton cache hit: the measurement needs every compile to miss")
        self._times = times

    def compile_one(self) -> float:
        """Compile the next distinct kernel; returns its wall seconds."""
        self.salt += 1
        constexprs = {"stride_ak": 1, "stride_bn": 1, "stride_cn": 1, "SALT": self.salt, **self.blocks}
        src = triton.compiler.ASTSource(fn=matmul_kernel, signature=SIGNATURE, constexprs=constexprs)
        start = time.perf_counter()
        kernel = triton.compile(src, target=self.target, options=self.options)
        end = time.perf_counter()
        if not kernel.asm.get("cubin"):
            raise RuntimeError("triton.compile returned no cubin")
        # Triton's timer gives durations in microseconds from the call's start, stage after stage.
        t = start
        durations = [(FIRST_STAGE, self._times.ir_initialization)] + list(self._times.lowering_stages)
        for name, us in durations:
            self.stages.append((name, t, t + us / 1e6))
            t += us / 1e6
        return end - start


class GcPasses:
    """The garbage collector's passes while recording: (generation, start, end), perf_counter s.
    A pass is C code that holds the GIL throughout, which no switch interval can cut short."""

    def __init__(self) -> None:
        self.passes: list[tuple[int, float, float]] = []
        self._start = 0.0
        self.recording = False
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if not self.recording:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.passes.append((info["generation"], self._start, time.perf_counter()))


def tick(tick_s: float, done: threading.Event, min_s: float = 0.0) -> list[tuple[float, float]]:
    """Sleep ``tick_s`` at a time until ``done`` is set (and ``min_s`` has passed); returns each
    iteration's (start, end) in perf_counter seconds."""
    iterations = []
    first = time.perf_counter()
    start = first
    while not done.is_set() or start - first < min_s:
        time.sleep(tick_s)
        end = time.perf_counter()
        iterations.append((start, end))
        start = end
    return iterations


def run_compiles(compiler: Compiler, kernels: int, tick_s: float) -> tuple[list, float, float]:
    """Tick in this thread while one other thread compiles ``kernels`` kernels, each in a fresh
    cache dir. Returns the ticker's iterations, the compile thread's wall and summed compile s."""
    done = threading.Event()
    seconds: list[float] = []

    def worker() -> None:
        try:
            with tempfile.TemporaryDirectory(prefix="triton-gil-") as cache_dir:
                os.environ["TRITON_CACHE_DIR"] = cache_dir
                for _ in range(kernels):
                    seconds.append(compiler.compile_one())
        finally:
            done.set()

    thread = threading.Thread(target=worker, name="compile")
    start = time.perf_counter()
    thread.start()
    iterations = tick(tick_s, done)
    thread.join()
    wall = time.perf_counter() - start
    if len(seconds) != kernels:
        raise RuntimeError("the compile thread failed (its traceback is above)")
    return iterations, wall, sum(seconds)


def gap_stats(iterations: list[tuple[float, float]], long_ms: float) -> dict:
    gaps = np.array([(end - start) * 1000 for start, end in iterations])
    return {
        "n": len(gaps),
        "median": float(np.median(gaps)),
        "p99": float(np.percentile(gaps, 99)),
        "max": float(gaps.max()),
        "long_n": int((gaps > long_ms).sum()),
        "long_sum": float(gaps[gaps > long_ms].sum()),
    }


def charge_long_gaps(iterations, stages, long_ms: float) -> dict[str, list[float]]:
    """Each gap above ``long_ms`` goes to the stage that overlaps it the most."""
    charged: dict[str, list[float]] = {}
    for start, end in iterations:
        if (end - start) * 1000 <= long_ms:
            continue
        best, best_overlap = "(between stages)", 0.0
        for name, s, e in stages:
            overlap = min(end, e) - max(start, s)
            if overlap > best_overlap:
                best, best_overlap = name, overlap
        charged.setdefault(best, []).append((end - start) * 1000)
    return charged


def gc_line(passes, iterations, long_ms: float) -> str:
    """One line on the collector's passes during a run and the long gaps that contain one."""
    slow = [(g, s, e) for g, s, e in passes if (e - s) * 1000 > 1.0]
    if not slow:
        return f"{len(passes)} GC passes, none over 1 ms"
    g, s, e = max(slow, key=lambda p: p[2] - p[1])
    # A pass's end is read in its Python callback, where the ticker may already have taken
    # the GIL back, so "containing" means: the gap overlaps most of the pass.
    hit = sum(1 for a, b in iterations if (b - a) * 1000 > long_ms
              and any(min(b, pe) - max(a, ps) > (pe - ps) / 2 for _, ps, pe in slow))
    return (f"{len(passes)} GC passes, {len(slow)} over 1 ms (summed {sum(pe - ps for _, ps, pe in slow) * 1000:.0f} ms, "
            f"longest {(e - s) * 1000:.1f} ms, generation {g}); gaps > {long_ms:g} ms containing one: {hit}")


def gc_generations(passes) -> dict[int, tuple[int, float, float]]:
    """Per generation: (passes, summed ms, longest ms)."""
    out = {}
    for gen in (0, 1, 2):
        ms = [(e - s) * 1000 for g, s, e in passes if g == gen]
        out[gen] = (len(ms), sum(ms), max(ms, default=0.0))
    return out


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", type=int, default=5, help="kernels compiled per run")
    ap.add_argument("--switch-intervals-ms", default="5,0.5",
                    help="sys.setswitchinterval values to run, ms, comma-separated (5 is Python's default)")
    ap.add_argument("--tick-ms", type=float, default=1.0, help="the ticker's sleep, ms")
    ap.add_argument("--long-ms", type=float, default=5.0, help="a gap above this counts as long, ms")
    ap.add_argument("--arch", type=int, default=90, help="CUDA compute capability of the target")
    ap.add_argument("--block-m", type=int, default=64)
    ap.add_argument("--block-n", type=int, default=64)
    ap.add_argument("--block-k", type=int, default=64)
    ap.add_argument("--num-warps", type=int, default=4)
    ap.add_argument("--num-stages", type=int, default=3)
    ap.add_argument("--import-torch", action="store_true",
                    help="import torch first, as the measuring process has: the collector then has "
                         "torch's objects to traverse in a full pass")
    ap.add_argument("--freeze", action="store_true",
                    help="after the imports and the warm-up compile, gc.collect() then gc.freeze(): "
                         "the objects alive then are never traversed again by any pass")
    args = ap.parse_args(argv)
    if args.import_torch:
        import torch  # noqa: F401  (only its objects matter here)

    compiler = Compiler(args)
    collector = GcPasses()
    tick_s = args.tick_ms / 1000
    with tempfile.TemporaryDirectory(prefix="triton-gil-warmup-") as cache_dir:
        os.environ["TRITON_CACHE_DIR"] = cache_dir
        warmup_s = compiler.compile_one()
    compiler.stages.clear()
    if args.freeze:
        gc.collect()
        gc.freeze()

    rows, charged_by_interval, compile_lines, gc_by_interval = [], {}, [], {}
    old_interval = sys.getswitchinterval()
    try:
        for interval_ms in _floats(args.switch_intervals_ms):
            sys.setswitchinterval(interval_ms / 1000)
            collector.passes, collector.recording = [], True
            iterations, wall, compile_s = run_compiles(compiler, args.kernels, tick_s)
            collector.recording = False
            stages, compiler.stages = compiler.stages, []
            done = threading.Event()
            done.set()
            baseline = tick(tick_s, done, min_s=wall)
            rows.append((interval_ms, "none (baseline)", gap_stats(baseline, args.long_ms)))
            rows.append((interval_ms, f"1 thread, {args.kernels} kernels", gap_stats(iterations, args.long_ms)))
            charged_by_interval[interval_ms] = (charge_long_gaps(iterations, stages, args.long_ms), stages)
            gc_by_interval[interval_ms] = gc_generations(collector.passes)
            compile_lines.append(f"switch interval {interval_ms:g} ms: {args.kernels} compiles took "
                                 f"{compile_s:.2f} s ({compile_s / args.kernels * 1000:.0f} ms a kernel), "
                                 f"the compile thread's wall {wall:.2f} s; "
                                 + gc_line(collector.passes, iterations, args.long_ms))
    finally:
        sys.setswitchinterval(old_interval)

    print(f"triton {triton.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"target sm_{args.arch}; kernel: tl.dot matmul {args.block_m}x{args.block_n}x{args.block_k}, "
          f"num_warps {args.num_warps}, num_stages {args.num_stages}; ticker: time.sleep({args.tick_ms:g} ms); "
          f"warm-up compile (not counted) {warmup_s:.2f} s; torch imported: {args.import_torch}, "
          f"objects tracked by the collector: {len(gc.get_objects())}; "
          f"gc.freeze: {args.freeze}, gc.get_freeze_count(): {gc.get_freeze_count()}")
    print()
    print(f"| switch interval ms | compiling | ticks | median ms | p99 ms | max ms | gaps > {args.long_ms:g} ms "
          f"| sum of gaps > {args.long_ms:g} ms |")
    print("|---|---|---|---|---|---|---|---|")
    for interval_ms, what, s in rows:
        print(f"| {interval_ms:g} | {what} | {s['n']} | {s['median']:.2f} | {s['p99']:.2f} | {s['max']:.1f} "
              f"| {s['long_n']} | {s['long_sum']:.0f} |")
    print()
    for line in compile_lines:
        print(line)
    print()
    print("GC passes during the compiles, by generation:")
    print()
    print("| switch interval ms | generation | passes | sum ms | max ms |")
    print("|---|---|---|---|---|")
    for interval_ms, by_gen in gc_by_interval.items():
        for gen, (n, total, longest) in by_gen.items():
            print(f"| {interval_ms:g} | {gen} | {n} | {total:.1f} | {longest:.1f} |")
    print()
    print(f"Gaps > {args.long_ms:g} ms by the compile stage that overlaps them most "
          f"(stage ms: mean per kernel):")
    print()
    print("| switch interval ms | stage | stage ms | gaps | sum ms | max ms |")
    print("|---|---|---|---|---|---|")
    for interval_ms, (charged, stages) in charged_by_interval.items():
        names = list(dict.fromkeys(name for name, _, _ in stages)) + ["(between stages)"]
        for name in names:
            spans = [(e - s) * 1000 for n, s, e in stages if n == name]
            stage_ms = f"{np.mean(spans):.0f}" if spans else "-"
            gaps = charged.get(name, [])
            if not spans and not gaps:
                continue
            print(f"| {interval_ms:g} | {name} | {stage_ms} | {len(gaps)} | {sum(gaps):.0f} "
                  f"| {max(gaps, default=0):.1f} |")
    if args.freeze:
        # Back to the oldest generation, so the collection at interpreter exit can reach them:
        # frozen, Triton's nanobind objects outlive the module teardown and nanobind reports
        # them as leaked instances on stderr.
        gc.unfreeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
