"""Where the wall time of one measurement goes, on the GPU (issue #13).

A search's measuring time and its finalists' time are counts of measurements times the
cost of one. This benchmark takes that cost apart for one study's vLLM default config at
a few batch sizes, per fidelity (short, full, long), measured the way a run measures:

- ``process``: through :class:`searcher.measure.isolation.IsolatedBenchmarker` (the default
  ``--isolation process``), as the search loop sees it (pipe round trip included);
- ``none``: :class:`searcher.measure.harness.GpuBenchmarker` in this process.

Each row gives the mean over ``--repeat`` measurements (after one unmeasured warm-up) of
``wall`` (as the caller saw it), ``compile`` (``compile_s``), ``gpu`` (``gpu_s``: the
events' time of every replay, warm-ups included) and ``rest`` = wall - compile - gpu: what
one measurement costs besides the GPU's work. With ``--profile``, the in-process
measurements of the last batch size at the ``full`` fidelity run under cProfile and the
top functions by cumulative time are written too.

    python benchmarks/measure_cost.py --out benchmarks/results/measure-cost-NVIDIA_H200.json
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import pstats
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIDELITY_NAMES = ("short", "full", "long")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure_rows(bencher, isolation: str, M: int, config, repeat: int) -> list[dict]:
    rows = []
    bencher.measure(M, config, "short")  # warm-up: compiles, builds the layer
    for fid in FIDELITY_NAMES:
        walls, compiles, gpus = [], [], []
        for _ in range(repeat):
            start = time.perf_counter()
            m = bencher.measure(M, config, fid)
            walls.append(time.perf_counter() - start)
            if not m.ok:
                raise SystemExit(f"M={M} {fid}: {m.status.value}: {m.reason}")
            compiles.append(m.compile_s)
            gpus.append(m.gpu_s)
        wall, comp, gpu = (statistics.mean(v) for v in (walls, compiles, gpus))
        rows.append({"isolation": isolation, "M": M, "fidelity": fid, "wall_ms": wall * 1e3,
                     "compile_ms": comp * 1e3, "gpu_ms": gpu * 1e3,
                     "rest_ms": (wall - comp - gpu) * 1e3, "median_us": m.median_us})
        log(f"{isolation:7s} M={M:5d} {fid:5s} wall {wall * 1e3:7.1f} ms, compile "
            f"{comp * 1e3:6.1f}, gpu {gpu * 1e3:6.1f}, rest {(wall - comp - gpu) * 1e3:6.1f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="h200-e64-n1408")
    ap.add_argument("--batch-sizes", default="1,64,4096")
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import torch
    import triton

    from searcher.tune.run import make_benchmarker
    from searcher.study.spec import find_spec, load_spec

    spec = load_spec(find_spec(args.study))
    batch_sizes = [int(m) for m in args.batch_sizes.split(",")]
    rows: list[dict] = []
    profile_text = ""
    for isolation in ("process", "none"):
        bencher, _ = make_benchmarker(spec, isolation=isolation)
        try:
            for M in batch_sizes:
                rows += measure_rows(bencher, isolation, M, spec.kernel.default_config(spec.shape, M),
                                     args.repeat)
            if args.profile and isolation == "none":
                M = batch_sizes[-1]
                config = spec.kernel.default_config(spec.shape, M)
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(args.repeat):
                    bencher.measure(M, config, "full")
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
                profile_text = buf.getvalue()
            info = bencher.device_info()
        finally:
            bencher.close()
    result = {
        "gpu": info.get("name"), "torch": torch.__version__, "triton": triton.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]),
        "study": args.study, "repeat": args.repeat, "rows": rows,
        "profile_full": profile_text,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
