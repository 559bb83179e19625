"""``searcher bench``: time one config of the fused-MoE layer on the GPU."""

from __future__ import annotations

import argparse
import json

from searcher.cli.common import rich_console
from searcher.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher bench`` and its options to the commands."""
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
    p.add_argument("--dtype", default="bf16",
                   choices=["bf16", "fp16", "fp32", "fp8_w8a8", "int8_w8a16"])
    p.add_argument("--block-shape", type=int, nargs=2, default=None, metavar=("BN", "BK"),
                   help="block-wise fp8_w8a8 weights, e.g. 128 128")
    p.add_argument("--per-channel", action="store_true",
                   help="per-channel fp8_w8a8 weights and per-token activations")
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
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher bench``; returns the exit code."""
    from searcher.measure.bench import bench
    # The command's options are the fused MoE's shape: it is that layer's own command.
    from searcher.kernels.fused_moe import FUSED_MOE, KernelConfig, Shape

    shape = Shape(E=args.E, N=args.N, hidden=args.hidden, top_k=args.top_k, dtype=args.dtype,
                  block_shape=tuple(args.block_shape) if args.block_shape else None,
                  per_channel=args.per_channel)
    from searcher.study.spec import MAX_BATCH_SIZE

    if any(m < 1 for m in args.M):
        raise ConfigError(f"-M {min(args.M)}: a batch size must be a positive integer")
    if any(m > MAX_BATCH_SIZE for m in args.M):
        raise ConfigError(f"-M {max(args.M)}: above the largest batch size searcher tunes, "
                          f"M <= {MAX_BATCH_SIZE:,} (2**20)")
    config = None if args.default else KernelConfig(*args.config)
    rows = bench(FUSED_MOE, shape, args.M, config, args.fidelity, backend=args.backend,
                 repeat=args.repeat)
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
    rich_console().print(table)
    return 0 if all(r.measurement.ok for r in rows) else 1
