"""``searcher list``: the studies and search spaces available."""

from __future__ import annotations

import argparse
import json

from searcher.cli.common import rich_console
from searcher.errors import SearcherError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher list`` and its options to the commands."""
    p = sub.add_parser("list", help="the studies and search spaces available")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher list``; returns the exit code."""
    from searcher.study.space import load_space
    from searcher.study.spec import list_specs, load_spec, spaces_dirs

    studies, problems = [], []
    for name, path in list_specs().items():
        try:
            spec = load_spec(path)
        except SearcherError as exc:
            problems.append(str(exc))
            continue
        studies.append({"name": name, "gpu": spec.gpu, "shape": spec.shape.label(),
                        "space": spec.space.name, "batch_sizes": len(spec.batch_sizes),
                        "trials_per_m": spec.trials_per_m, "path": str(path)})
    spaces = []
    seen: set[str] = set()
    for folder in spaces_dirs():
        for path in sorted(folder.glob("*.toml")):
            if path.stem in seen:
                continue
            seen.add(path.stem)
            try:
                space = load_space(path)
            except SearcherError as exc:
                problems.append(str(exc))
                continue
            spaces.append({"name": space.name, "raw_size": space.raw_size(),
                           "constraints": len(space.constraints), "path": str(path)})
    if args.json:
        print(json.dumps({"studies": studies, "spaces": spaces, "problems": problems}, indent=2))
        return 0
    from rich.table import Table

    console = rich_console()
    t = Table(title="studies")
    for col in ("name", "gpu", "shape", "space", "batch sizes", "trials/M"):
        # Fold rather than cut: a shape's end names its quantization (dtype, block_shape).
        t.add_column(col, overflow="fold")
    for s in studies:
        t.add_row(s["name"], s["gpu"], s["shape"], s["space"], str(s["batch_sizes"]),
                  str(s["trials_per_m"] or "-"))
    console.print(t)
    t = Table(title="search spaces")
    for col in ("name", "configs before constraints", "constraints", "path"):
        t.add_column(col)
    for s in spaces:
        t.add_row(s["name"], str(s["raw_size"]), str(s["constraints"]), s["path"])
    console.print(t)
    for problem in problems:
        rich_console(stderr=True).print(f"skipped: {problem}", style="yellow")
    return 0
