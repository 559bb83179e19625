"""The ``searcher`` command: thin shells over library functions, one module per command
(``searcher/cli/run.py`` is ``searcher run``), the options they share in
:mod:`searcher.cli.common` and the status table in :mod:`searcher.cli.render`.

Results go to stdout (a table, or JSON with ``--json``); progress and errors to stderr.
Any :class:`~searcher.errors.SearcherError` ends the command with a one-line red message
and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Callable, NoReturn, Sequence

from searcher.cli import (  # the commands, one module each
    bench as bench_cmd,
    run as run_cmd,
    grid as grid_cmd,
    compare as compare_cmd,
    status as status_cmd,
    decide as decide_cmd,
    export as export_cmd,
    copy as copy_cmd,
    report as report_cmd,
    init as init_cmd,
    listing as list_cmd,  # `searcher list` (a module named list would hide the builtin here)
)
from searcher.cli.common import EXIT_USAGE, rich_console
from searcher.errors import SearcherError

__all__ = ["main", "build_parser", "versions"]


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
    """The ``searcher`` argument parser with every command's subparser."""
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


# In the order --help lists them.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    cmd.add_parser for cmd in (run_cmd, grid_cmd, compare_cmd, status_cmd, decide_cmd,
                               export_cmd, report_cmd, copy_cmd, init_cmd, list_cmd, bench_cmd)
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

        err = rich_console(stderr=True)
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
        rich_console(stderr=True).print(f"searcher {args.command}: {exc}", style="red")
        return EXIT_USAGE
    except KeyboardInterrupt:
        resume = ("; what was measured is stored, rerun the same command to resume"
                  if args.command in ("run", "grid") else "")
        rich_console(stderr=True).print(f"searcher {args.command}: interrupted{resume}",
                                        style="yellow")
        return 130
    except BrokenPipeError:
        # The reader went away (`searcher status | head`): no traceback, and no second
        # error when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        restore()

