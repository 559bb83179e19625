"""The ``searcher`` command: thin shells over library functions.

Results go to stdout (a table, or JSON with ``--json``); progress and errors to stderr.
Any :class:`~searcher.errors.SearcherError` ends the command with a one-line red message
and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from searcher.errors import ConfigError, SearcherError

__all__ = ["main"]

EXIT_USAGE = 2


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


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
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
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
    from searcher.bench import bench
    from searcher.config import KernelConfig
    from searcher.shape import Shape

    shape = Shape(E=args.E, N=args.N, hidden=args.hidden, top_k=args.top_k, dtype=args.dtype)
    if any(m < 1 for m in args.M):
        raise ConfigError(f"-M {min(args.M)}: a batch size must be a positive integer")
    config = None if args.default else KernelConfig(*args.config)
    rows = bench(shape, args.M, config, args.fidelity, backend=args.backend, repeat=args.repeat)
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


# -- entry point ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="searcher",
        description="Find fast launch configs for Triton kernels (vLLM's fused MoE) by search.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_bench]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 some configs failed, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SearcherError as exc:
        if args.debug:
            raise
        _console(stderr=True).print(f"[red]searcher {args.command}: {exc}[/red]")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _console(stderr=True).print(f"[yellow]searcher {args.command}: interrupted[/yellow]")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
