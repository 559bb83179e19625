"""Where the main thread is while the GPU waits: a sampling profile of a search's idle time.

Issue #13: the wall time of a study should be at most 1.25x its measurements and
finalists. What is left over is time in which the measuring process has nothing to do.
This script runs a search as ``searcher run`` does (in this process, the measurements
in the measuring process) and tracks when a call into the benchmarker is in progress
(``measure``, ``measure_round``, ``precompile``, from any thread). Every ``--every-ms``
while none is, a sampling thread records where the main thread is (its stack) and where
the asker thread is. It prints:

- wall, busy (a benchmarker call in progress) and idle seconds;
- the idle samples by the main thread's searcher frames (the innermost ``searcher/``
  function and the chain of searcher functions above it) and by its innermost frame of
  any module (e.g. SQLite's ``execute``, a future's ``wait``);
- the same for the asker thread, where the main thread waits for it;
- the CPU seconds each of the run's threads used (main, asker, measuring, heartbeat):
  a main thread whose CPU time is near the wall time is the bottleneck itself.

``--switch-interval`` sets Python's thread switch interval, to see what the asker
thread's hold of the GIL costs the main thread.

"Busy" counts the parent's side of a call: a short gap between two measurements is
the pipe, the child's unpickling and the measuring thread picking up the next job.

On a GPU machine (the default isolation, a fresh storage)::

    python benchmarks/idle_profile.py --study h200-e64-n1408 --batch-sizes 64,1024,4096 \\
        --storage sqlite:///OUT/idle.db

On a CPU, the synthetic benchmarker sleeping ``--sleep`` times each charged cost::

    python benchmarks/idle_profile.py --synthetic --sleep 0.35 --storage sqlite:///tmp/i.db
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from searcher.tune import search  # noqa: E402
from searcher.tune.run import make_benchmarker  # noqa: E402
from searcher.study.spec import find_spec, load_spec  # noqa: E402

PACKAGE = str(ROOT / "searcher")
CALLS = ("measure", "measure_round", "precompile")


class _Busy:
    """Counts benchmarker calls in progress (from any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.busy_s = 0.0
        self._since = 0.0

    def enter(self) -> None:
        with self.lock:
            if self.active == 0:
                self._since = time.perf_counter()
            self.active += 1

    def leave(self) -> None:
        with self.lock:
            self.active -= 1
            if self.active == 0:
                self.busy_s += time.perf_counter() - self._since


def _wrap(bencher: Any, busy: _Busy) -> None:
    for name in CALLS:
        inner = getattr(bencher, name, None)
        if inner is None:
            continue

        def call(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            busy.enter()
            try:
                return _inner(*args, **kwargs)
            finally:
                busy.leave()

        setattr(bencher, name, call)


def _where(frame: Any, depth: int = 4) -> tuple[str, str]:
    """(chain of searcher functions, innermost -> outer; the innermost frame of any
    module) of a thread's stack."""
    leaf = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
    chain: list[str] = []
    while frame is not None and len(chain) < depth:
        if frame.f_code.co_filename.startswith(PACKAGE):
            chain.append(frame.f_code.co_name)
        frame = frame.f_back
    return " < ".join(chain) or "(outside searcher)", leaf


def _cpu_s(thread: threading.Thread) -> float | None:
    """CPU seconds ``thread`` has used so far (Linux), None where unknown."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, TypeError):
        return None


def _sampler(busy: _Busy, every_s: float, stop: threading.Event,
             counts: dict[str, collections.Counter], cpu: dict[str, float]) -> None:
    main = threading.main_thread().ident
    while not stop.wait(every_s):
        for thread in threading.enumerate():  # CPU time of the run's threads, as last seen
            if thread.name.startswith("searcher-") or thread is threading.main_thread():
                used = _cpu_s(thread)
                if used is not None:
                    cpu[thread.name] = used
        if busy.active:
            continue
        frames = sys._current_frames()
        counts["total"]["idle"] += 1
        if main in frames:
            chain, leaf = _where(frames[main])
            counts["main"][chain] += 1
            counts["main_leaf"][leaf] += 1
        for thread in threading.enumerate():
            if thread.name.startswith("searcher-ask") and thread.ident in frames:
                chain, leaf = _where(frames[thread.ident])
                counts["asker"][f"{chain} | {leaf}"] += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="h200-e64-n1408")
    ap.add_argument("--batch-sizes", default="64,1024,4096")
    ap.add_argument("--storage", required=True, help="a new storage (e.g. sqlite:///OUT/i.db)")
    ap.add_argument("--synthetic", action="store_true", help="no GPU: the synthetic benchmarker")
    ap.add_argument("--sleep", type=float, default=0.35,
                    help="with --synthetic: sleep this times each charged cost (default 0.35)")
    ap.add_argument("--every-ms", type=float, default=2.0, help="sampling period (default 2)")
    ap.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="set Python's thread switch interval (seconds; default: as is, "
                         "0.005 unless changed)")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    spec = load_spec(find_spec(args.study))
    if args.synthetic:
        os.environ["SEARCHER_SYNTHETIC_SLEEP"] = str(args.sleep)  # read by the child
    bencher, device = make_benchmarker(spec, synthetic=args.synthetic)
    bencher.device_info()  # starts the measuring process: not the loop's time
    busy = _Busy()
    _wrap(bencher, busy)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    cpu: dict[str, float] = {}
    main_cpu = _cpu_s(threading.main_thread()) or 0.0
    stop = threading.Event()
    sampler = threading.Thread(target=_sampler,
                               args=(busy, args.every_ms / 1000, stop, counts, cpu),
                               daemon=True)
    opts = search.SearchOptions(device=device, storage_url=args.storage,
                                batch_sizes=[int(m) for m in args.batch_sizes.split(",")])
    sampler.start()
    started = time.perf_counter()
    try:
        search.run_search(spec, bencher, opts)
    finally:
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        close = getattr(bencher, "close", None)
        if close is not None:
            close()
    idle = wall - busy.busy_s
    samples = max(1, counts["total"]["idle"])
    print(f"wall {wall:.2f} s, a benchmarker call in progress {busy.busy_s:.2f} s, "
          f"idle {idle:.2f} s ({100 * idle / wall:.0f}%); {samples} idle samples, "
          f"each about {1000 * idle / samples:.1f} ms; switch interval "
          f"{1000 * sys.getswitchinterval():g} ms")
    if "MainThread" in cpu:
        cpu["MainThread"] -= main_cpu
    print("CPU seconds by thread (as last sampled): "
          + ", ".join(f"{name} {used:.2f}" for name, used in sorted(cpu.items())))
    for title, key in (("main thread while idle (searcher frames, innermost first)", "main"),
                       ("main thread while idle (innermost frame)", "main_leaf"),
                       ("asker thread while idle (searcher frames | innermost frame)", "asker")):
        print(f"\n| {title} | idle s | share |\n|---|---|---|")
        for where, n in counts[key].most_common(args.top):
            print(f"| {where} | {idle * n / samples:.2f} | {100 * n / samples:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
