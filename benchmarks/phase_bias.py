"""Why a search-phase time can sit below the finalists' re-measurement of the same config
(issue #13): routing samples, or clocks under sustained load?

For a few studies and batch sizes M, and 2-3 configs each (vLLM's default, the committed
example file's config for that M, and a neighbour of the default), measures in
interleaved rounds (configs rotated each round):

- ``legacy``: short, full and long with the old replay order (replay ``i``, warm-ups
  counted, used router-logit set ``i % 32``: each fidelity timed a different sample);
- ``cycle``: short, full and long with the order searcher uses now (timed replay ``j``
  uses set ``j % 20``, warm-ups sets of their own: full = 1 cycle, long = 5 cycles);
- ``cycle, gaps``: long (cycle order) as 5 bursts of 20 replays with an idle gap between
  bursts, against ``cycle`` long's 100 back-to-back: a difference is the clocks', not the
  routings'.

Prints progress on stderr and, at the end, a table on stdout: config, M, fidelity,
method, median us (median over rounds of each measurement's median), range over rounds,
ratio to the long measurement (``cycle, gaps`` against ``cycle`` long). The JSON (written
after every round, so a killed run keeps what it measured) holds every measurement, the
GPU name, torch and Triton versions, the date and the command.

    python benchmarks/phase_bias.py --out benchmarks/results/phase-bias-H200.json
    python benchmarks/phase_bias.py --table benchmarks/results/phase-bias-H200.json
    python benchmarks/phase_bias.py --synthetic --out /tmp/pb.json   # CPU smoke run

``--synthetic`` needs no GPU: a made-up replay time per routing set stands in for the
GPU, to check the script end to end (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from searcher.measure.harness import replay_inputs  # noqa: E402
from searcher.measure.measurement import FIDELITIES  # noqa: E402

#: (study, M) measured by default: few experts and small M (routing matters most), and
#: large M (compute-heavy; sustained clocks may matter).
CASES: list[tuple[str, int]] = [
    ("h200-mixtral-8x7b-tp2-fp8", 2),
    ("h200-mixtral-8x7b-tp2-fp8", 1024),
    ("h200-e64-n1408", 1),
    ("h200-e64-n1408", 1024),
]
#: (method, fidelity) measured per config and round, in this order.
PLAN: list[tuple[str, str]] = [
    ("legacy", "short"), ("legacy", "full"), ("legacy", "long"),
    ("cycle", "short"), ("cycle", "full"), ("cycle", "long"),
    ("cycle, gaps", "long"),
]
BURST = 20  # replays per burst in ``cycle, gaps``
GAP_S = 0.05  # idle seconds between bursts


class BadInput(Exception):
    """A bad argument or file: one line on stderr, exit 2."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- what is measured --------------------------------------------------------------------
def case_configs(spec: Any, M: int) -> list[tuple[str, Any]]:
    """(label, config) pairs for one case: vLLM's default, the example file's config for
    the nearest M (where a file for this shape is committed under examples/configs), and
    the default with num_stages one step off."""
    kernel = spec.kernel
    default = kernel.default_config(spec.shape, M)
    configs: list[tuple[str, Any]] = [("default", default)]
    path = ROOT / "examples" / "configs" / kernel.file_name(spec.shape, spec.gpu)
    if path.is_file():
        _, by_M = kernel.read_file(path)
        nearest = min(by_M, key=lambda m: abs(m - M))
        if by_M[nearest] not in (c for _, c in configs):
            configs.append(("example file", by_M[nearest]))
    d = default.to_dict()
    d["num_stages"] = d["num_stages"] + 1 if d["num_stages"] <= 3 else d["num_stages"] - 1
    neighbour = kernel.config_from_dict(d)
    if neighbour not in (c for _, c in configs):
        configs.append(("default, stages " + str(d["num_stages"]), neighbour))
    return configs


class Gapped:
    """A workload whose ``refresh`` idles ``gap_s`` before every ``burst``-th timed replay
    after the first (outside the timing: the harness times from after refresh), so a long
    measurement runs as bursts with idle gaps instead of back to back."""

    def __init__(self, workload: Any, fidelity: str, burst: int = BURST, gap_s: float = GAP_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.workload, self.burst, self.gap_s, self.sleep = workload, burst, gap_s, sleep
        self.fid = FIDELITIES[fidelity]
        self.calls = 0

    def layer(self, M: int, config: Any) -> Any:
        return self.workload.layer(M, config)

    def refresh(self, M: int, inputs: int) -> None:
        j = self.calls % (self.fid.warmup + self.fid.replays) - self.fid.warmup
        self.calls += 1
        if j > 0 and j % self.burst == 0:
            self.sleep(self.gap_s)
        self.workload.refresh(M, inputs)

    def info(self) -> dict[str, Any]:
        return self.workload.info()


_WORKLOADS: dict[str, Any] = {}


class GpuCase:
    """One study's problem at one M on the GPU, measured by searcher's harness."""

    def __init__(self, spec: Any, M: int) -> None:
        from searcher.measure.harness import GpuBenchmarker

        # One workload per study: its weights are shared by every M, as in a search.
        key = spec.shape.label()
        if key not in _WORKLOADS:
            _WORKLOADS[key] = spec.kernel.workload(spec.shape, "builtin", seed=0)
        workload = _WORKLOADS[key]
        self.M = M
        self.benchers = {
            "legacy": GpuBenchmarker(workload, compile_threads=0, order="legacy"),
            "cycle": GpuBenchmarker(workload, compile_threads=0, order="cycle"),
            "cycle, gaps": GpuBenchmarker(Gapped(workload, "long"), compile_threads=0,
                                          order="cycle"),
        }

    def measure(self, config: Any, method: str, fidelity: str) -> dict[str, Any]:
        m = self.benchers[method].measure(self.M, config, fidelity)
        return {"status": m.status.value, "median_us": m.median_us if m.ok else None,
                "spread_us": m.spread_us if m.ok else None, "reason": m.reason,
                "gpu_s": m.gpu_s}

    def device_info(self) -> dict[str, Any]:
        return self.benchers["cycle"].device_info()


class SyntheticCase:
    """A CPU stand-in: a replay's time is a made-up function of its routing set and config,
    so the legacy order's fidelities differ and the cycle order's full and long agree."""

    def __init__(self, spec: Any, M: int) -> None:
        self.M = M

    def measure(self, config: Any, method: str, fidelity: str) -> dict[str, Any]:
        fid = FIDELITIES[fidelity]
        sets = replay_inputs(fid, "legacy" if method == "legacy" else "cycle")[fid.warmup:]
        base = 50.0 + sum(config.astuple()) / 10 + math.log2(self.M + 1)
        times = [base * (1 + 0.05 * ((7 * k) % 11) / 10) for k in sets]
        return {"status": "ok", "median_us": statistics.median(times),
                "spread_us": 0.0, "reason": "", "gpu_s": 0.0}

    def device_info(self) -> dict[str, Any]:
        return {"name": "synthetic (no GPU)", "torch_version": "synthetic",
                "triton_version": "synthetic", "timing": "synthetic"}


# -- the run -----------------------------------------------------------------------------
def parse_case(text: str) -> tuple[str, int]:
    study, _, m = text.rpartition(":")
    if not study or not m.isdigit() or int(m) < 1:
        raise BadInput(f"--case {text!r}: must be STUDY:M with M a positive integer "
                       "(e.g. h200-e64-n1408:1024)")
    return study, int(m)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from searcher.errors import SearcherError
    from searcher.study.spec import find_spec, load_spec

    cases = [parse_case(c) for c in args.case] if args.case else CASES
    out = Path(args.out)
    if not out.parent.is_dir():
        raise BadInput(f"--out {args.out}: folder {out.parent} does not exist")
    make = SyntheticCase if args.synthetic else GpuCase
    result: dict[str, Any] = {
        "what": "phase bias: the same config timed at short/full/long, legacy and cycle "
                "replay orders, and long as bursts with gaps (benchmarks/phase_bias.py)",
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "synthetic": bool(args.synthetic), "burst": BURST, "gap_s": GAP_S,
        "cases": [], "measurements": [], "rounds_done": 0,
    }
    loaded = []
    for study, M in cases:
        try:
            spec = load_spec(find_spec(study))
        except SearcherError as exc:
            raise BadInput(f"--case {study}:{M}: {exc}") from None
        log(f"{study} M={M}: preparing")
        case = make(spec, M)
        configs = case_configs(spec, M)
        loaded.append((study, M, case, configs))
        result["cases"].append({"study": study, "M": M, "shape": spec.shape.label(),
                                "configs": [{"label": lbl, "config": c.to_dict(),
                                             "short": c.short()} for lbl, c in configs]})
    info = loaded[0][2].device_info()
    result.update(gpu=info.get("name"), torch=info.get("torch_version"),
                  triton=info.get("triton_version"), device_info=info)

    def save() -> None:
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, out)

    started = time.monotonic()
    last_round_s = 0.0
    for r in range(args.rounds):
        round_start = time.monotonic()
        if r and round_start - started + last_round_s > args.budget_s:
            log(f"stopping after {r} rounds: another would end past --budget-s "
                f"{args.budget_s:g} s")
            break
        for study, M, case, configs in loaded:
            shift = r % len(configs)
            for label, config in configs[shift:] + configs[:shift]:
                for method, fidelity in PLAN:
                    m = case.measure(config, method, fidelity)
                    result["measurements"].append({"study": study, "M": M, "config": label,
                                                   "method": method, "fidelity": fidelity,
                                                   "round": r, **m})
            log(f"round {r + 1}/{args.rounds}: {study} M={M} done "
                f"({time.monotonic() - started:.0f} s)")
        result["rounds_done"] = r + 1
        last_round_s = time.monotonic() - round_start
        save()
    save()
    return result


# -- the table ---------------------------------------------------------------------------
def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (case, config, method, fidelity): the median over rounds of the
    measurements' medians (us), their range, and the ratio to the long measurement of the
    same method (``cycle, gaps``: to ``cycle`` long)."""
    groups: dict[tuple, list[float]] = {}
    for m in result["measurements"]:
        if m.get("median_us") is None:
            continue
        key = (m["study"], m["M"], m["config"], m["method"], m["fidelity"])
        groups.setdefault(key, []).append(m["median_us"])
    medians = {k: statistics.median(v) for k, v in groups.items()}
    rows = []
    for (study, M, config, method, fidelity), values in groups.items():
        ref_method = "cycle" if method == "cycle, gaps" else method
        ref = medians.get((study, M, config, ref_method, "long"))
        rows.append({"study": study, "M": M, "config": config, "method": method,
                     "fidelity": fidelity, "median_us": medians[(study, M, config, method,
                                                                 fidelity)],
                     "min_us": min(values), "max_us": max(values), "rounds": len(values),
                     "ratio_to_long": medians[(study, M, config, method, fidelity)] / ref
                     if ref else None})
    return rows


def render_table(result: dict[str, Any]) -> str:
    """The results as Markdown: a header line (GPU, versions, date, rounds) and the table."""
    head = (f"{result.get('gpu')}, torch {result.get('torch')}, triton {result.get('triton')}, "
            f"{result.get('date')}; {result.get('rounds_done')} interleaved rounds; long as "
            f"{100 // result.get('burst', BURST)} bursts of {result.get('burst', BURST)} with "
            f"{result.get('gap_s', GAP_S) * 1000:g} ms gaps in \"cycle, gaps\"."
            + (" SYNTHETIC (no GPU): the numbers mean nothing." if result.get("synthetic")
               else ""))
    lines = [head, "",
             "| study | M | config | fidelity | method | median us | range us | ratio to long |",
             "|---|---:|---|---|---|---:|---:|---:|"]
    for r in table_rows(result):
        ratio = "-" if r["ratio_to_long"] is None else f"{r['ratio_to_long']:.3f}"
        lines.append(f"| {r['study']} | {r['M']} | {r['config']} | {r['fidelity']} | "
                     f"{r['method']} | {r['median_us']:.1f} | {r['min_us']:.1f}-"
                     f"{r['max_us']:.1f} | {ratio} |")
    return "\n".join(lines)


def read_result(path: str) -> dict[str, Any]:
    try:
        result = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"--table {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"--table {path}: not a JSON file ({exc})") from None
    if not isinstance(result, dict) or not isinstance(result.get("measurements"), list):
        raise BadInput(f"--table {path}: no 'measurements' list; not a phase_bias.py result")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="the JSON results file to write")
    p.add_argument("--table", metavar="JSON", help="print the Markdown table of a saved result")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    p.add_argument("--budget-s", type=float, default=200.0,
                   help="start no round that would end (as long as the last one) past this "
                   "many seconds of measuring (default: 200)")
    p.add_argument("--case", action="append", metavar="STUDY:M",
                   help="a study and batch size (repeat; default: "
                   + ", ".join(f"{s}:{m}" for s, m in CASES) + ")")
    p.add_argument("--synthetic", action="store_true",
                   help="no GPU: a made-up replay time per routing set (a smoke test)")
    args = p.parse_args(argv)
    try:
        if args.table:
            print(render_table(read_result(args.table)))
            return 0
        if not args.out:
            raise BadInput("--out JSON is needed to measure (or --table JSON to render)")
        if args.rounds < 1:
            raise BadInput(f"--rounds {args.rounds}: must be at least 1")
        result = run(args)
    except BadInput as exc:
        print(f"phase_bias.py: {exc}", file=sys.stderr)
        return 2
    print(render_table(result))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
