"""How long a measurement's host loop takes beside compile threads, by switch interval (CPU).

A model of the measuring process of issue #13, with no GPU: a "measurement" is the loop
of one config's 25 replays (5 warm-ups, 20 timed), each with two blocking waits that
release the GIL, as ``torch.cuda.synchronize()`` and the end event's ``synchronize()``
do (``--wait-ms`` in all a replay: about 0.5 ms at M=1 on the lent GPUs, 10 layer calls
a graph). Beside it, ``--threads`` compile threads each hold the GIL for ``--hold-ms``
(Triton's Python front end: 47.5 ms a kernel, 98% of it with the GIL held) and then
release it for the rest of a compile, so that each holds it ``--share`` of its time (15%,
``benchmarks/results/compile-parallel-NVIDIA_H100_80GB_HBM3.md``). Back from a wait, the
loop needs the GIL again; a thread holding it is asked to drop it only after the switch
interval (``sys.setswitchinterval``, Python's default 5 ms). Prints, per number of threads
and interval, the median and the largest of ``--measurements`` measurements' wall time.

    python benchmarks/gil_convoy.py
    python benchmarks/gil_convoy.py --threads 0,12 --intervals-ms 5,0.5 --share 0.15

What it shows is the GIL's behaviour on this machine's cores, not a GPU's measurement:
the lent GPU's run of the same question is ``bash benchmarks/lent_gpu.sh switch-ab OUT``
(README, "Still missed").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time


def compile_like(stop: threading.Event, hold_s: float, share: float) -> None:
    """Hold the GIL for ``hold_s`` (pure Python), then release it so that the holding is
    ``share`` of the time, until ``stop``."""
    while not stop.is_set():
        start, x = time.perf_counter(), 0
        while time.perf_counter() - start < hold_s:
            for i in range(200):
                x += i
        time.sleep(hold_s * (1.0 - share) / share)


def measurement(replays: int, wait_s: float) -> float:
    """Seconds of one measurement's host loop: ``replays`` replays of two GIL-releasing
    waits of ``wait_s / 2`` each."""
    start = time.perf_counter()
    for _ in range(replays):
        time.sleep(wait_s / 2)
        time.sleep(wait_s / 2)
    return time.perf_counter() - start


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="0,1,4,12", help="compile threads, comma-separated")
    ap.add_argument("--intervals-ms", default="5,0.5", help="switch intervals, ms")
    ap.add_argument("--share", type=float, default=0.15,
                    help="of a compile thread's time, holding the GIL (0 < share <= 1)")
    ap.add_argument("--hold-ms", type=float, default=47.5, help="one holding of the GIL, ms")
    ap.add_argument("--wait-ms", type=float, default=0.5,
                    help="a replay's GIL-releasing waits together, ms")
    ap.add_argument("--replays", type=int, default=25)
    ap.add_argument("--measurements", type=int, default=20)
    args = ap.parse_args(argv)
    try:
        threads = [int(v) for v in _floats(args.threads)]
        intervals = [v / 1000.0 for v in _floats(args.intervals_ms)]
    except ValueError as exc:
        print(f"gil_convoy.py: --threads and --intervals-ms take comma-separated numbers "
              f"({exc})", file=sys.stderr)
        return 2
    if not 0.0 < args.share <= 1.0 or any(v <= 0 for v in intervals) \
            or any(n < 0 for n in threads):
        print("gil_convoy.py: --share must be in (0, 1], intervals above 0, threads >= 0",
              file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; a measurement: "
          f"{args.replays} replays of {args.wait_ms:g} ms of GIL-releasing waits "
          f"({args.replays * args.wait_ms:g} ms alone); compile threads hold the GIL "
          f"{100 * args.share:g}% of their time, {args.hold_ms:g} ms at a time")
    print()
    print("| compile threads | switch interval ms | measurement ms, median | largest |")
    print("|---|---|---|---|")
    default = sys.getswitchinterval()
    try:
        for n in threads:
            for interval in intervals:
                sys.setswitchinterval(interval)
                stop = threading.Event()
                pool = [threading.Thread(target=compile_like, daemon=True,
                                         args=(stop, args.hold_ms / 1000.0, args.share))
                        for _ in range(n)]
                for t in pool:
                    t.start()
                time.sleep(2 * args.hold_ms / 1000.0)  # every thread under way
                walls = [measurement(args.replays, args.wait_ms / 1000.0)
                         for _ in range(args.measurements)]
                stop.set()
                for t in pool:
                    t.join()
                print(f"| {n} | {1000 * interval:g} | {1000 * statistics.median(walls):.1f} "
                      f"| {1000 * max(walls):.1f} |", flush=True)
    finally:
        sys.setswitchinterval(default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
