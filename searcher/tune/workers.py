"""Several worker processes on one storage: ``searcher run|grid --workers N|auto``.

The parent starts one ``searcher`` process per worker with the same arguments plus
``--worker I/N``, each seeing one GPU (``CUDA_VISIBLE_DEVICES``), and prefixes their output
lines with the worker's index. The workers share nothing but the storage: the search's
budget is enforced per batch size across workers by trial order (see
:meth:`searcher.tune.search._Searcher.measure_batch`), the grid splits each batch size's
visiting order by position. A worker that dies leaves its running trial to be recovered
by the others or by the next run.

Workers run in their own process session, so a Ctrl-C (SIGINT) or SIGTERM reaches them
once, passed on by the parent: each finishes its measurement in progress, puts the
trials it asked ahead back in the queue and exits, and the parent waits for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Sequence

from searcher.errors import ConfigError, NoGPUError
from searcher.tune.stop import stop_requested

__all__ = ["visible_gpus", "resolve_workers", "parse_worker", "child_argv", "run_workers"]

#: Seconds the parent waits for workers to finish cleanly after Ctrl-C or SIGTERM.
STOP_GRACE_S = 60


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    from searcher.measure.device import cuda_available

    if not cuda_available():
        return []
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def resolve_workers(text: str, uses_gpu: bool) -> tuple[int, list[str] | None]:
    """The number of workers ``--workers TEXT`` asks for, and the GPU of each (None when
    measurements come from a replay or a synthetic benchmarker).

    ``auto`` is one worker per visible GPU, or one per CPU core without a GPU. Two workers
    never share a GPU: their measurements would disturb each other.

    Raises:
        ConfigError: TEXT is not ``auto`` or a positive integer, or asks for more workers
            than there are GPUs.
        NoGPUError: GPU measurements are asked for and no GPU is visible.
    """
    if text != "auto":
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"--workers {text}: must be 'auto' or a positive integer")
        if n == 1:
            return 1, None  # this process does the work: it checks for a GPU itself
    if not uses_gpu:
        return (os.cpu_count() or 1 if text == "auto" else n), None
    gpus = visible_gpus()
    if not gpus:
        raise NoGPUError(
            "--workers: no CUDA GPU is visible on this machine; to run workers without one, "
            "replay recorded measurements with --replay DATASET.csv or use --synthetic")
    if text == "auto":
        return len(gpus), gpus
    if n > len(gpus):
        raise ConfigError(
            f"--workers {n}: only {len(gpus)} GPU(s) visible ({','.join(gpus)}); two workers "
            "on one GPU would disturb each other's timings")
    return n, gpus[:n]


def parse_worker(text: str) -> tuple[int, int]:
    """``I/N`` as given to a worker process."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--worker {text}: expected I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"--worker {text}: need 0 <= I < N")
    return i, n


def child_argv(argv: Sequence[str], drop: Sequence[str], worker: int, workers: int,
               extra: Sequence[str] = ()) -> list[str]:
    """The parent's arguments for a worker: without ``--workers`` and the options in
    ``drop`` (each must take a value), plus ``extra`` and ``--worker I/N``."""
    out: list[str] = []
    skip = False
    options = {"--workers", *drop}
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in options:
            skip = "=" not in arg
            continue
        out.append(arg)
    return [*out, *extra, "--worker", f"{worker}/{workers}"]


def _pump(stream: IO[str], prefix: str, sink: IO[str], lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sink.write(prefix + line)
            sink.flush()


def run_workers(argvs: Sequence[Sequence[str]], gpus: Sequence[str] | None) -> int:
    """Run one ``searcher`` process per argument list and wait for all of them.

    Returns 0 when every worker succeeded, 130 after Ctrl-C, else the first non-zero exit
    status (a worker killed by a signal counts as 128 + its number).
    """
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    lock = threading.Lock()
    for i, argv in enumerate(argvs):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        label = f"w{i}"
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i]
            label += f" gpu{gpus[i]}"
        proc = subprocess.Popen([sys.executable, "-m", "searcher", *argv], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        for stream, sink in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
            t = threading.Thread(target=_pump, args=(stream, f"[{label}] ", sink, lock),
                                 daemon=True)
            t.start()
            pumps.append(t)

    def forward(signum: int) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    # The first Ctrl-C (or SIGTERM) sets the stop flag here (searcher.tune.stop): pass it on
    # once, and let the workers finish their measurement in progress; a second Ctrl-C is
    # passed on too (the workers stop at once), and after STOP_GRACE_S they are killed.
    stopping_since = None
    interrupted = False
    try:
        while [p.poll() for p in procs].count(None):  # poll each: reap dead workers now
            try:
                if stop_requested() and stopping_since is None:
                    stopping_since = time.monotonic()
                    interrupted = True
                    forward(signal.SIGINT)
                if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S:
                    for p in procs:
                        p.kill()
                time.sleep(0.1)
            except KeyboardInterrupt:
                interrupted = True
                stopping_since = stopping_since or time.monotonic()
                forward(signal.SIGINT)
        codes = [p.wait() for p in procs]
    finally:
        for t in pumps:
            t.join(timeout=5)
    if interrupted:
        return 130
    bad = [(i, c) for i, c in enumerate(codes) if c != 0]
    for i, code in bad:
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        sys.stderr.write(f"worker w{i}: {why}\n")
    if not bad:
        return 0
    code = bad[0][1]
    return 128 - code if code < 0 else code
