"""Stopping a run cleanly: the first Ctrl-C (or SIGTERM) asks the run to stop after the
measurement in progress; a second Ctrl-C stops at once.

Loops check :func:`stop_requested` between measurements, put what they asked but did not
measure back in the queue, and raise :class:`Stopped`. Nothing measured is lost either way;
the graceful stop also leaves no trial running for the next run to recover.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

__all__ = ["Stopped", "stop_requested", "request_stop", "graceful_signals"]

_stop = threading.Event()


class Stopped(KeyboardInterrupt):
    """A run stopped on request after its measurement in progress."""


def stop_requested() -> bool:
    return _stop.is_set()


def request_stop() -> None:
    _stop.set()


def graceful_signals(message: Callable[[str], None] | None = None) -> Callable[[], None]:
    """Install the Ctrl-C and SIGTERM handlers (main thread only); returns a function that
    restores the previous ones."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    _stop.clear()

    def handler(signum: int, _frame: Any) -> None:
        if _stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: now
        _stop.set()
        if message is not None:
            message("stopping after the measurement in progress (Ctrl-C again to stop now)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)
        _stop.clear()

    return restore


