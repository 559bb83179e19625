"""The search loop's host overhead per trial, measured on a CPU.

Issue #13: host work off the critical path.

Runs the synthetic search of ``searcher run --study h200-e64-n1408 --synthetic
--batch-sizes 64,1024,4096`` (the spec's seed, 40 trials per batch size, measurements in
a child process as ``run`` does, started before the clock starts) into a fresh SQLite file
in a temporary directory, and prints, per repeat and as the median over repeats:

- ``trials``: measured trials (those that count against the budget);
- ``wall s``: :func:`searcher.tune.search.run_search`'s wall time (finalists included);
- ``host ms/trial``: (wall - measuring) / trials, where measuring is the synthetic
  benchmarker's charged seconds times ``--sleep`` (0 by default: measurements then cost
  about nothing, and host time is nearly all of the wall);
- ``asker wait s``: the main thread's wait for the batch asked ahead on the asker thread.
  With free measurements asking is slower than measuring, so this wait is an artefact of
  the synthetic run (on a GPU the asks overlap the measurements);
- ``excl. wait``: host ms/trial less that wait: the main thread's own host time (with
  ``--sleep`` and measurements queued ahead, the main thread also waits for the asker
  while a measurement runs, so this column means nothing there: read host ms/trial);
- ``main CPU``: the main thread's CPU ms per trial (with ``--sleep`` most of it overlaps
  measurements, so it can exceed host ms/trial);
- ``main SQL``: SQL statements the main thread sent per trial (the same in every run of
  one code: the number to compare when the times are noisy).

``--sleep F`` really sleeps F times each measurement's charged cost (a short measurement
0.06 s, a full one 0.25 s, a config's first compile 1 s), so that the asks and storage
writes can overlap measurements as on a GPU. ``--measure-ahead 0`` measures one at a time
(the main thread's storage work between measurements, as before the measuring thread);
the default 1 queues the next measurement behind the one in progress, as ``run`` does.

The times depend on the machine and its load: compare runs of one machine only, with
several repeats.

    python benchmarks/host_overhead.py --repeat 5
    python benchmarks/host_overhead.py --repeat 3 --sleep 0.5 --measure-ahead 0
    python benchmarks/host_overhead.py --repeat 3 --sleep 0.5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from searcher.tune import search  # noqa: E402
from searcher.store.record import COUNTED_STATUSES, status_of  # noqa: E402
from searcher.tune.run import make_benchmarker  # noqa: E402
from searcher.study.spec import find_spec, load_spec  # noqa: E402

COLUMNS = (("trials", "trials", ".0f"), ("wall s", "wall_s", ".2f"),
           ("host ms/trial", "host_ms", ".1f"), ("asker wait s", "wait_s", ".2f"),
           ("excl. wait", "host_ms_excl_wait", ".1f"), ("main CPU", "cpu_ms", ".1f"),
           ("main SQL", "sql", ".1f"))


class _TimedFuture:
    """A future of the asker whose waits on the main thread are added up."""

    def __init__(self, future: Any, waited: list[float]) -> None:
        self._future = future
        self._waited = waited

    def _timed(self, name: str) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self._future, name)()
        finally:
            if threading.current_thread() is threading.main_thread():
                self._waited[0] += time.perf_counter() - started

    def result(self) -> Any:
        return self._timed("result")

    def exception(self) -> Any:
        return self._timed("exception")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._future, name)


def _timed_executor(waited: list[float]) -> type:
    class TimedExecutor(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            future = super().submit(fn, *args, **kwargs)
            if not self._thread_name_prefix.startswith("searcher-ask"):
                return future  # the measuring thread's: its waits are the measurements
            return _TimedFuture(future, waited)

    return TimedExecutor


def _count_main_statements(counted: list[int]) -> Callable[[], None]:
    """Count the SQL statements the main thread sends; returns what stops counting."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def count(*args: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            counted[0] += 1

    event.listen(Engine, "before_cursor_execute", count)
    return lambda: event.remove(Engine, "before_cursor_execute", count)


def one_run(study: str, batch_sizes: list[int], sleep: float,
            measure_ahead: int = 1) -> dict[str, float]:
    """One search into a new SQLite file; its numbers (see the module doc)."""
    spec = load_spec(find_spec(study))
    waited, statements = [0.0], [0]
    original = search.ThreadPoolExecutor
    search.ThreadPoolExecutor = _timed_executor(waited)  # the asker's waits are timed
    os.environ["SEARCHER_SYNTHETIC_SLEEP"] = str(sleep)  # read by the measuring process
    bencher, device = make_benchmarker(spec, synthetic=True)
    try:
        bencher.device_info()  # starts the measuring process: not the loop's time
        with tempfile.TemporaryDirectory(prefix="searcher-host-") as tmp:
            opts = search.SearchOptions(device=device, storage_url=f"sqlite:///{tmp}/h.db",
                                        batch_sizes=batch_sizes,
                                        measure_ahead=measure_ahead)
            stop_counting = _count_main_statements(statements)
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                summaries = search.run_search(spec, bencher, opts)
            finally:
                wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
                stop_counting()
            trials = sum(1 for s in summaries for t in s.extra["study"].get_trials(deepcopy=False)
                         if status_of(t) in COUNTED_STATUSES)
            measuring = sleep * sum(s.cost_s + s.extra.get("final_cost_s", 0.0)
                                    for s in summaries)
    finally:
        search.ThreadPoolExecutor = original
        close = getattr(bencher, "close", None)
        if close is not None:
            close()
    host = wall - measuring
    return {"trials": trials, "wall_s": wall, "host_ms": 1000 * host / trials,
            "wait_s": waited[0], "host_ms_excl_wait": 1000 * (host - waited[0]) / trials,
            "cpu_ms": 1000 * cpu / trials, "sql": statements[0] / trials}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="h200-e64-n1408")
    parser.add_argument("--batch-sizes", default="64,1024,4096")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.0,
                        help="sleep this times each measurement's charged cost (default 0)")
    parser.add_argument("--measure-ahead", type=int, default=1,
                        help="measurements queued behind the one in progress (default 1; "
                             "0: one at a time, as before issue #13's measuring thread)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    batch_sizes = [int(m) for m in args.batch_sizes.split(",")]

    def show(label: str, row: dict[str, float] | None) -> None:
        cells = [f"{name:>{len(name)}}" if row is None else f"{row[key]:>{len(name)}{fmt}}"
                 for name, key, fmt in COLUMNS]
        print(f"{label:>6}  " + "  ".join(cells), flush=True)

    show("run", None)
    rows = []
    for i in range(args.repeat):
        rows.append(one_run(args.study, batch_sizes, args.sleep, args.measure_ahead))
        show(str(i + 1), rows[-1])
    show("median", {k: statistics.median(r[k] for r in rows) for k in rows[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
