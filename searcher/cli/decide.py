"""``searcher decide``: decide again what each finished batch size exports."""

from __future__ import annotations

import argparse
import json

from searcher.cli.common import (
    AGAINST_HELP, against_configs, check_finalists_share, finalists_share_arg, load,
    resolve_against, rich_console, source_args, source_kwargs, study_args,
)
from searcher.errors import ConfigError, NoGPUError
from searcher.strategies.finalists import SHARE


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``searcher decide`` and its options to the commands."""
    p = sub.add_parser("decide", help="decide again what each batch size exports, under "
                       "the current decision rule",
                       description="For every batch size whose search finished, re-measure "
                       "its finalists, vLLM's default and (if any) the file it competed "
                       "against, interleaved, and let the decision rule "
                       "(searcher/strategies/decide.py) pick again; --stored judges the rounds "
                       "stored with each batch size instead, without a GPU. The previous winner "
                       "is kept in the record.")
    study_args(p)
    p.add_argument("--stored", action="store_true",
                   help="judge the finalists' stored rounds; measure nothing (for a study "
                   "whose GPU is not at hand; a pair the rule cannot decide from them keeps "
                   "vLLM's default)")
    p.add_argument("--device", default=None,
                   help="with --stored: the GPU whose studies to decide (default: the spec's)")
    p.add_argument("--against", default=None, metavar="FILE.json|vllm",
                   help="a vLLM config file whose configs compete too (default: the one the "
                   "stored record competed against, if any)" + AGAINST_HELP)
    source_args(p)
    finalists_share_arg(p)
    p.add_argument("--json", action="store_true", help="print the decisions as JSON")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    """Run ``searcher decide``; returns the exit code."""
    from searcher.store.record import DEVICE_INFO, FINAL, unmeasured_source
    from searcher.store.storage import iter_studies, open_storage
    from searcher.tune.decide import redecide, redecide_stored
    from searcher.tune.search import SearchOptions

    spec, storage = load(args)
    batch_sizes = args.batch_sizes or spec.batch_sizes
    check_finalists_share(args)
    if args.stored:
        if args.against or args.replay or args.synthetic or args.finalists_share != SHARE:
            raise ConfigError("--stored measures nothing: it takes no --against, --replay, "
                              "--synthetic or --finalists-share")
        device = args.device or spec.gpu
    else:
        if args.device:
            raise ConfigError("--device goes with --stored; a measuring decide uses this "
                              "machine's GPU")
        from searcher.tune.run import make_benchmarker

        try:
            bencher, device = make_benchmarker(spec, **source_kwargs(args))
        except NoGPUError as exc:  # the CPU route decide has of its own
            raise NoGPUError(f"{exc}; or judge the rounds already stored, measuring "
                             "nothing, with --stored") from exc
        resolve_against(args, spec, device)  # the file for the GPU that measures
    # What there is to decide, read without writing: a refused decide leaves the storage
    # as it was (a missing storage file is an error naming it, not a new file).
    finished = {M: study for M, study in iter_studies(
        open_storage(storage, read_only=True), "search", spec, device, batch_sizes)
        if study is not None and study.user_attrs.get(FINAL)}
    if not finished:
        raise ConfigError(f"{storage} holds no finished search of {spec.name} on {device} "
                          "to decide (run it first)")
    before = {M: study.user_attrs[FINAL].get("winner") for M, study in finished.items()}
    sources = {src for study in finished.values() if (src := unmeasured_source(study.user_attrs))}
    if args.stored:
        after = {}
        for M, study in iter_studies(open_storage(storage), "search", spec, device, finished):
            after[M] = redecide_stored(spec.kernel, study, M)
    else:
        here = unmeasured_source({DEVICE_INFO: bencher.device_info()})
        sources |= {here} if here else set()
        opts = SearchOptions(device=device, storage_url=storage,
                             against=against_configs(spec, args.against),
                             finalists_share=args.finalists_share)
        after = redecide(spec, bencher, opts, list(finished))
    source = ", ".join(sorted(sources)) or None
    rows = []
    for M in batch_sizes:
        s = after.get(M)
        if s is None:
            rows.append({"M": M, "decided": False})
            continue
        old = spec.kernel.config_from_dict(before[M]) if before.get(M) else None
        is_default = s.winner == spec.kernel.default_config(spec.shape, M)
        reason = s.decision or ("vLLM's default was the only finalist that ran" if is_default
                                else "vLLM's default failed as a trial: nothing to judge against")
        rows.append({"M": M, "decided": True, "before": old, "winner": s.winner,
                     "default": is_default, "winner_us": s.winner_us,
                     "default_us": s.default_us, "reason": reason})
    how = "stored rounds" if args.stored else "measured"
    if args.json:
        print(json.dumps({"study": spec.name, "device": device, "storage": storage,
                          "from": how, "source": source or "GPU",
                          "batch_sizes": [{**r, **{k: r[k].to_dict() for k in ("before", "winner")
                                                   if r.get(k) is not None}} for r in rows]},
                         indent=2))
        return 0
    out = rich_console()
    if source:
        out.print(f"not measured on a GPU: {source} times; a file of them needs "
                  "`searcher export --allow-unmeasured`", style="yellow")
    missing = [str(r["M"]) for r in rows if not r["decided"]]
    if missing:
        out.print(f"no finished search stored (nothing to decide) at M={', '.join(missing)}")
    for r in rows:
        if not r["decided"]:
            continue
        was = r["before"].short() if r["before"] else "-"
        now = r["winner"].short() + (" (vLLM's default)" if r["default"] else "")
        change = "kept" if r["before"] == r["winner"] else f"was {was}"
        out.print(f"M={r['M']}: {now}, {change}: {r['reason']}")
    changed = sum(r["decided"] and r["before"] != r["winner"] for r in rows)
    export = f"searcher export --study {spec.name} --storage {storage}"
    decided = [r["M"] for r in rows if r["decided"]]
    if args.batch_sizes or missing:  # export refuses batch sizes with nothing stored
        export += f" --batch-sizes {','.join(map(str, decided))}"
    if source:
        export += " --allow-unmeasured"
    out.print(f"{changed} of {sum(r['decided'] for r in rows)} batch sizes changed; "
              f"`{export} --out DIR` writes the file (add --overwrite to replace one there)")
    return 0
