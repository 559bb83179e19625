"""Measurements in a child process, so that a config that crashes or hangs ends only itself.

A kernel launched with a bad config can take its whole process down: an illegal or
misaligned address leaves the CUDA context unusable (every later launch fails), a fault in
the driver or in Triton's compiler can segfault, and a deadlocked kernel never returns.
:class:`IsolatedBenchmarker` runs the real benchmarker in a child process and talks to it
over a pipe, one request and one reply per measurement. When the child dies, the config it
was measuring comes back as ``runtime_error`` with the signal or exit status as its
reason; when no reply comes within the trial timeout, the child is killed and the config
comes back as ``timeout``. Either way the next call starts a fresh child, and the search
stores the failure on the trial like any other.

The child is started with multiprocessing's ``spawn`` method (a forked CUDA context is
unusable), builds the benchmarker itself from a picklable factory, and exits by itself when
the parent goes away. It ignores Ctrl-C and SIGTERM, which a terminal or ``timeout`` sends
to the whole process group: the parent's graceful stop finishes the measurement in
progress and then stops the child.
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
import weakref
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from searcher.errors import BenchmarkerError, SearcherError
from searcher.measure.measurement import FIDELITIES, Fidelity, Measurement, Status

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Config

__all__ = [
    "IsolatedBenchmarker",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_RECYCLE_AFTER",
    "DEFAULT_RECYCLE_RSS_GIB",
    "DEFAULT_START_TIMEOUT_S",
    "describe_exit",
]

#: Seconds a measurement (its compile included) may take before its child is killed.
DEFAULT_TIMEOUT_S = 300.0
#: Measurements one child makes before it is replaced by a fresh one.
DEFAULT_RECYCLE_AFTER = 20_000
#: Resident memory (GiB) past which the child is replaced before its next measurement.
DEFAULT_RECYCLE_RSS_GIB = 16.0
#: Seconds a child may take to start and build its benchmarker (imports, CUDA init).
DEFAULT_START_TIMEOUT_S = 300.0
#: Seconds a child asked to stop may take before it is killed.
STOP_GRACE_S = 10.0

_log = logging.getLogger(__name__)


def describe_exit(exitcode: int | None) -> str:
    """How a child process ended, for a reason: ``died with signal SIGSEGV (11)``."""
    if exitcode is None:
        return "died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "signal"
        return f"died with signal {name} ({-exitcode})"
    return f"exited with status {exitcode}"


# -- the child --------------------------------------------------------------------------
def _portable(exc: BaseException) -> tuple[BaseException | None, str]:
    """An exception as (itself if it pickles, else None; its text with the traceback)."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return None, text
    return exc, text


def _exit_with_parent() -> None:
    """Exit this child as soon as its parent process is gone, even in a measurement that
    never returns (the parent would otherwise leave an orphan holding the GPU)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover - always set in a spawned child
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(conn: Connection, factory: Callable[[], Any]) -> None:
    """The child's loop: build the benchmarker, report ready, then answer requests until
    told to stop or the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent()
    try:
        bencher = factory()
        info = dict(bencher.device_info())
    except BaseException as exc:
        conn.send(("error", _portable(exc)))
        return
    # What this process holds now (torch, triton, the workload: some 10^5 objects) lives as
    # long as it does: out of the collector's passes. A full pass over it holds the GIL
    # for 80-120 ms on a 2-core CPU (`python -c "import gc, time, torch, triton;
    # t = time.perf_counter(); gc.collect(); print(time.perf_counter() - t)"`), and
    # the compiled kernels of a run's hundreds of configs, piling up in the oldest
    # generation, can set such passes off in the middle of measurements. A precaution:
    # one compile thread on a CPU set off no full pass in 80 compiles
    # (benchmarks/triton_gil.py), and on one H100 the 18 batch sizes with and without it
    # read the same time split, with issue #13's slow finalists' rounds in both
    # (examples/h100-e64-n1408-throughput-ab/cad1439-vs-404ab0c/).
    gc.collect()
    gc.freeze()
    # With every reply (this one too), the configs whose compile ahead has finished
    # (None: this benchmarker compiles nothing ahead), for the parent's ready().
    compiled = getattr(bencher, "compiled_ahead", None)
    conn.send(("ready", info, compiled() if compiled is not None else None))
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            op, args = request[0], request[1:]
            if op == "stop":
                return
            try:
                if op == "measure":
                    reply: tuple[str, Any] = ("ok", bencher.measure(*args))
                elif op == "measure_round":
                    reply = ("ok", bencher.measure_round(*args))
                elif op == "precompile":
                    bencher.precompile(*args)
                    reply = ("ok", None)
                else:
                    raise BenchmarkerError(f"unknown request {op!r}")
            except Exception as exc:
                reply = ("error", _portable(exc))
            conn.send(reply + (compiled() if compiled is not None else None,))
    finally:
        try:
            close = getattr(bencher, "close", None)
            if close is not None:
                close()
        finally:
            gc.unfreeze()  # so that the exit frees them (nanobind reports leaks otherwise)


# -- the parent's handle on one child ---------------------------------------------------
def _shutdown(proc: multiprocessing.process.BaseProcess, conn: Connection, grace_s: float) -> None:
    """Ask a child to stop, kill it if it does not within ``grace_s``, and reap it."""
    try:
        if proc.is_alive():
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
            proc.join(grace_s)
        if proc.is_alive():
            proc.kill()
            proc.join(grace_s)
    finally:
        conn.close()


_children: weakref.WeakSet[_Child] = weakref.WeakSet()
_atexit_registered = False


def _stop_children() -> None:
    # Registered after multiprocessing's own exit hook, so it runs first: that hook joins
    # every child, and a child waiting on the pipe would wait for this process forever.
    for child in list(_children):
        child.stop(grace_s=2.0)


def resident_gib(pid: int) -> float:
    """A process's resident memory in GiB, from ``/proc/PID/status`` (Linux); 0.0 where
    it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class _Child:
    """One running child process and the parent's end of its pipe."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        global _atexit_registered
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child_conn, factory),
                                name="searcher-measure")
        self.proc.start()
        child_conn.close()  # so the parent sees EOF when the child dies
        self.pid = self.proc.pid
        self.measured = 0
        # (M, config) pairs whose compile ahead had finished at the child's last reply;
        # None: its benchmarker compiles nothing ahead (every config is ready).
        self.compiled: frozenset | None = frozenset()
        self._finalizer = weakref.finalize(self, _shutdown, self.proc, self.conn, STOP_GRACE_S)
        _children.add(self)
        if not _atexit_registered:
            atexit.register(_stop_children)
            _atexit_registered = True

    def call(self, request: tuple, timeout_s: float | None) -> tuple[str, Any]:
        """Send ``request`` and wait for the reply.

        Returns ``("reply", value)``, ``("died", exitcode)`` or ``("timeout", None)``.
        Interrupted (a second Ctrl-C), the child is killed: its reply would be stale.
        """
        try:
            self.conn.send(request)
        except (OSError, ValueError):  # a broken pipe: the child is gone
            return "died", self._reap()
        except BaseException:  # interrupted mid-send: the child may hold half a request
            self.kill()
            raise
        return self.receive(timeout_s)

    def receive(self, timeout_s: float | None) -> tuple[str, Any]:
        try:
            ready = wait([self.conn, self.proc.sentinel], timeout_s)
            if self.conn in ready:
                try:
                    reply = self.conn.recv()
                except Exception:  # EOF or a reply cut short: the child died mid-send
                    return "died", self._reap()
                if len(reply) == 3:  # an answer, and what has compiled ahead (_serve)
                    compiled = reply[2]
                    self.compiled = None if compiled is None else frozenset(compiled)
                    reply = reply[:2]
                return "reply", reply
            if ready:
                return "died", self._reap()
            return "timeout", None
        except BaseException:
            self.kill()
            raise

    def _reap(self) -> int | None:
        self.proc.join(STOP_GRACE_S)
        return self.proc.exitcode

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask the child to exit (killing it after ``grace_s``) and reap it."""
        self._finalizer.detach()
        _children.discard(self)
        _shutdown(self.proc, self.conn, grace_s)

    def kill(self) -> None:
        """Kill the child now (whatever it is doing) and reap it."""
        self._finalizer.detach()
        _children.discard(self)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(STOP_GRACE_S)
        self.conn.close()


# -- the benchmarker ----------------------------------------------------------------------
class IsolatedBenchmarker:
    """A :class:`~searcher.measure.harness.Benchmarker` whose measurements run in a child process.

    A child that dies while measuring (a segfault, an abort, the OOM killer) yields a
    ``runtime_error`` measurement naming the signal; one that does not reply within
    ``timeout_s`` is killed and yields ``timeout``. A child whose benchmarker returns a
    ``runtime_error`` is replaced too, since the CUDA errors behind one (illegal or
    misaligned address) are sticky: every later launch in that context would fail. A new
    child is started at the next call.

    The child is also replaced, cleanly, once its resident memory passes
    ``recycle_rss_gib`` (read from ``/proc`` where there is one) or after
    ``recycle_after`` measurements: a long-lived process keeps every kernel it compiled
    (Triton's in-process kernel cache holds each compiled config's binaries and launchers;
    a benchmarker keeps its own bookkeeping), so over thousands of configs its memory
    grows without bound. A fresh process starts from nothing, but its start costs
    seconds (about 7 s on the H200: CUDA, imports, the kernels loaded again from the
    on-disk cache), which a replacement after every 1,000 measurements charged to the
    18-batch-size H200 study at M=1024 (issue #13); memory is what the replacement is for,
    so memory decides it.

    Args:
        factory: a picklable callable of no arguments that builds the real benchmarker,
            run inside the child (e.g. a ``functools.partial`` of a module-level function;
            for a GPU, the benchmarker must be built there, not passed in).
        timeout_s: seconds one measurement (its compile included) or precompile request
            may take; None waits as long as the child lives.
        recycle_after: measurements one child makes before it is replaced.
        recycle_rss_gib: the child's resident memory (GiB) past which it is replaced
            before the next measurement (None: the count alone).
        start_timeout_s: seconds a child may take to build its benchmarker.

    Raises:
        ValueError: a timeout is not positive or ``recycle_after`` is below 1.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        recycle_after: int = DEFAULT_RECYCLE_AFTER,
        recycle_rss_gib: float | None = DEFAULT_RECYCLE_RSS_GIB,
        start_timeout_s: float | None = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        for name, value in (("timeout_s", timeout_s), ("start_timeout_s", start_timeout_s)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} = {value!r} must be positive (or None)")
        if recycle_after < 1:
            raise ValueError(f"recycle_after = {recycle_after!r} must be at least 1")
        self.factory = factory
        self.timeout_s = timeout_s
        self.recycle_after = recycle_after
        self.recycle_rss_gib = recycle_rss_gib
        self.start_timeout_s = start_timeout_s
        self.started = 0  # children started so far
        self._child: _Child | None = None
        self._info: dict[str, Any] | None = None
        # One request at a time on the child's pipe: the search asks (and precompiles) the
        # next batch on a thread of its own while this one measures.
        self._lock = threading.RLock()

    # -- the protocol ---------------------------------------------------------------------
    def device_info(self) -> dict[str, Any]:
        """The device of the first child (fetched once, then cached)."""
        with self._lock:
            return self._device_info()

    def precompile(self, M: int, configs: Iterable[Config]) -> None:
        """Pass the hint on to the child; a failure or timeout there is logged, not raised
        (the configs then compile when measured). Thread-safe, as every method here."""
        with self._lock:
            self._precompile(M, configs)

    def ready(self, M: int, config: Config) -> bool:
        """Whether the child had finished compiling ``config`` ahead at its last reply
        (True where its benchmarker compiles nothing ahead, or no child runs: the next
        one compiles as it measures). Takes no lock: it is asked while a measurement runs."""
        child = self._child
        return child is None or child.compiled is None or (M, config) in child.compiled

    def measure(self, M: int, config: Config, fidelity: Fidelity | str) -> Measurement:
        with self._lock:
            return self._measure(M, config, fidelity)

    def measure_round(self, M: int, configs: Sequence[Config],
                      fidelity: Fidelity | str) -> list[Measurement]:
        """Measure ``configs`` side by side in the child (one request, the child's own
        interleaving). A round that ends the child, hangs past the trial timeout per
        config, or makes the child raise is measured again config by config, so that a
        failure lands on the config that caused it."""
        configs = list(configs)
        with self._lock:
            if len(configs) > 1:
                measured = self._measure_round(M, configs, fidelity)
                if measured is not None:
                    return measured
            return [self._measure(M, config, fidelity) for config in configs]

    def _measure_round(self, M: int, configs: list[Config],
                       fidelity: Fidelity | str) -> list[Measurement] | None:
        fid = FIDELITIES[fidelity] if isinstance(fidelity, str) else fidelity
        child = self._measuring_child()
        timeout = None if self.timeout_s is None else self.timeout_s * len(configs)
        outcome, value = child.call(("measure_round", M, configs, fid), timeout)
        if outcome == "reply" and value[0] == "ok":
            child.measured += len(configs)
            measured: list[Measurement] = value[1]
            if any(m.status is Status.RUNTIME_ERROR for m in measured):
                self._stop_child()  # its CUDA context may be unusable now
            return measured
        what = ("raised " + value[1][1].splitlines()[-1] if outcome == "reply"
                else describe_exit(value) if outcome == "died"
                else f"gave no answer within {timeout:g} s and was killed")
        _log.warning("the measuring process %s during a round of %d configs at M=%d; they "
                     "are measured one by one", what, len(configs), M)
        if outcome == "reply":
            self._stop_child()
        else:
            self._drop_child()
        return None

    def _device_info(self) -> dict[str, Any]:
        if self._info is None:
            self._ensure_child()
        assert self._info is not None
        return dict(self._info)

    def _precompile(self, M: int, configs: Iterable[Config]) -> None:
        configs = list(configs)
        if not configs:
            return
        child = self._ensure_child()
        outcome, value = child.call(("precompile", M, configs), self.timeout_s)
        if outcome == "reply":
            kind, payload = value
            if kind == "error":
                _log.warning("precompiling %d configs at M=%d failed in the measuring "
                             "process (they compile when measured): %s", len(configs), M,
                             payload[1].splitlines()[-1])
            return
        what = (f"{describe_exit(value)}" if outcome == "died"
                else f"gave no answer within {self.timeout_s:g} s and was killed")
        _log.warning("the measuring process %s while precompiling %d configs at M=%d; a new "
                     "one starts for the next measurement", what, len(configs), M)
        self._drop_child()

    def _measuring_child(self) -> _Child:
        """The child to send a measurement to: a fresh one past ``recycle_after``
        measurements or ``recycle_rss_gib`` of memory."""
        child = self._child
        if child is not None and (child.measured >= self.recycle_after or (
                self.recycle_rss_gib is not None
                and resident_gib(child.pid) > self.recycle_rss_gib)):
            self._stop_child()  # recycle: a fresh process, fresh caches
        return self._ensure_child()

    def _measure(self, M: int, config: Config, fidelity: Fidelity | str) -> Measurement:
        fid = FIDELITIES[fidelity] if isinstance(fidelity, str) else fidelity
        child = self._measuring_child()
        start = time.perf_counter()
        outcome, value = child.call(("measure", M, config, fid), self.timeout_s)
        if outcome == "reply":
            child.measured += 1
            kind, payload = value
            if kind == "error":  # the benchmarker raised instead of returning a failure
                self._stop_child()
                raise _reraise(payload, f"measuring {config.short()} at M={M}")
            m: Measurement = payload
            if m.status is Status.RUNTIME_ERROR:
                self._stop_child()  # its CUDA context may be unusable now
            return m
        where = f"while measuring {config.short()} at M={M} ({fid.name} fidelity)"
        if outcome == "died":
            status = Status.RUNTIME_ERROR
            reason = f"child process {describe_exit(value)} {where}"
        else:
            status = Status.TIMEOUT
            reason = (f"no result within the trial timeout of {self.timeout_s:g} s {where}; "
                      "the child process was killed")
        _log.warning("%s; a new one starts for the next measurement", reason)
        self._drop_child()
        return Measurement.failed(status, reason, fid.name, cost_s=time.perf_counter() - start,
                                  device=self._info)

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The process id of the current child (None when none is running)."""
        return self._child.pid if self._child is not None else None

    def close(self) -> None:
        """Stop the child (a later call would start a new one)."""
        with self._lock:
            self._stop_child()

    def __enter__(self) -> IsolatedBenchmarker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _ensure_child(self) -> _Child:
        if self._child is not None:
            return self._child
        child = _Child(self.factory)
        self.started += 1
        outcome, value = child.receive(self.start_timeout_s)
        if outcome == "reply" and value[0] == "ready":
            self._child = child
            if self._info is None:
                self._info = value[1]
            return child
        child.kill()
        if outcome == "reply":
            raise _reraise(value[1], "building the benchmarker")
        if outcome == "died":
            raise BenchmarkerError(f"the measuring process {describe_exit(value)} while "
                                   "building the benchmarker")
        raise BenchmarkerError(f"the measuring process did not build its benchmarker within "
                               f"{self.start_timeout_s:g} s")

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.stop()

    def _drop_child(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()


def _reraise(payload: tuple[BaseException | None, str], doing: str) -> BaseException:
    """The exception to raise in the parent for one raised in the child: a searcher error
    as itself, anything else as a BenchmarkerError carrying the child's traceback."""
    exc, text = payload
    if isinstance(exc, SearcherError):
        return exc
    return BenchmarkerError(f"the measuring process raised an error {doing}: "
                            f"{text.splitlines()[-1]}\n{text}")
