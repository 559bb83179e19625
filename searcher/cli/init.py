"""``searcher init``: write the study a model would run, to edit and share."""

from __future__ import annotations

import argparse
from pathlib import Path

from searcher.cli.common import model_args, model_options, rich_console
from searcher.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher init`` and its options to the commands."""
    p = sub.add_parser("init", help="write the study a model would run, to edit and share",
                       description="Read a model's config.json and write the study that "
                       "`searcher run --model` with the same options runs (the same study: "
                       "edit and share it, then run it with --study).")
    p.add_argument("--model", required=True, metavar="PATH",
                   help="a config.json, a model folder holding one, or a model id in the "
                   "local Hugging Face cache (never downloaded)")
    model_args(p)
    p.add_argument("--storage", default=None,
                   help="a storage URL to write into the study (default: none, i.e. "
                   "sqlite:///searcher.db in the directory searcher runs in)")
    p.add_argument("--out", default=None, metavar="FILE.toml",
                   help="where to write it (default: studies/NAME.toml)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher init``; returns the exit code."""
    from searcher.kernels import DEFAULT_KERNEL, get_kernel
    from searcher.study.model_study import model_spec

    _spec, made = model_spec(get_kernel(DEFAULT_KERNEL), args.model, **model_options(args))
    out = Path(args.out) if args.out else Path("studies") / f"{made.name}.toml"
    if out.suffix != ".toml":
        raise ConfigError(f"--out {out}: a study file must end in .toml")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"--out {out}: exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(made.text, encoding="utf-8")
    tmp.replace(out)
    err = rich_console(stderr=True)
    for note in made.notes:
        err.print(f"note: {note}", style="yellow")
    err.print(f"study {out.stem}: run it with `searcher run --study {out}`")
    print(out)
    return 0
