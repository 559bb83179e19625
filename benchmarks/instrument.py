"""Evidence that the instrument can be trusted, measured on a GPU (issue #2).

Runs, for one layer shape (default E=64, N=1408, hidden 2048, top_k 6, bf16):

1. correctness: the built-in kernel against the fp32 reference at M = 1, 64, 4096 for
   vLLM's default config and 20 random configs of the 1,920 space that compile;
2. vLLM's default config at all 18 batch sizes, both fidelities, each measured twice;
3. how well the short fidelity ranks configs against the full one: Spearman over 50
   random configs that compile, at M=64 and M=1024 (a second full measurement gives the
   full-vs-full ceiling), and the cost of a short measurement relative to a full one;
4. host-side cost per config: compile alone, and measurement wall time outside GPU work;
5. the tiny-batch path (vLLM 0.33 skips alignment when M*top_k*4 <= E) on and off;
6. compile-ahead: fresh configs compiled one by one versus on CPU threads.

Writes everything to one JSON file (GPU name, torch and triton versions, date, command).

    python benchmarks/instrument.py --out benchmarks/results/instrument-H100.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# A fresh Triton cache, so compile times are real compile times.
os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="searcher-triton-"))

import torch  # noqa: E402

from searcher.kernels.fused_moe.config import KernelConfig  # noqa: E402
from searcher.kernels.fused_moe.default import vllm_default_config  # noqa: E402
from searcher.measure.device import current_device  # noqa: E402
from searcher.measure.harness import GpuBenchmarker  # noqa: E402
from searcher.kernels.fused_moe.layer import MoEWorkspace, compile_config, fused_moe, make_inputs  # noqa: E402
from searcher.kernels.fused_moe.reference import fused_moe_reference  # noqa: E402
from searcher.kernels.fused_moe.problem import Shape  # noqa: E402
from searcher.kernels.fused_moe import FUSED_MOE  # noqa: E402
from searcher.study.space import load_space  # noqa: E402
from searcher.measure.stats import spearman  # noqa: E402

BATCH_SIZES = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def correctness(shape: Shape, configs: list[KernelConfig], Ms: list[int], seed: int) -> list[dict]:
    rows = []
    for M in Ms:
        gen = torch.Generator(device="cuda").manual_seed(seed + M)
        inputs = make_inputs(shape, M, device="cuda", generator=gen, scale_weights=True)
        ref = fused_moe_reference(inputs.x, inputs.logits, inputs.w1, inputs.w2, shape.top_k)
        todo = [("default", vllm_default_config(M, shape.E))] + [("random", c) for c in configs]
        for kind, cfg in todo:
            ws = MoEWorkspace(inputs, cfg.BLOCK_SIZE_M)
            for buf in (ws.gate_up, ws.act, ws.down, ws.out):
                buf.fill_(float("nan"))
            try:
                out = fused_moe(inputs, cfg, ws).float()
                torch.cuda.synchronize()
            except Exception as exc:  # noqa: BLE001 - recorded, the config is skipped
                rows.append({"M": M, "kind": kind, "config": cfg.to_dict(), "status": "failed",
                             "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
                continue
            err = ((out - ref).norm() / ref.norm()).item()
            rows.append({"M": M, "kind": kind, "config": cfg.to_dict(), "status": "ok",
                         "nan": bool(torch.isnan(out).any()), "rel_err": err})
        del inputs, ref
        torch.cuda.empty_cache()
    return rows


def pick_compiling(shape: Shape, candidates: list[KernelConfig], n: int, M: int) -> list[KernelConfig]:
    """The first n candidates whose kernels compile and launch at batch size M."""
    inputs = make_inputs(shape, M, device="cuda")
    chosen = []
    for cfg in candidates:
        if len(chosen) == n:
            break
        try:
            fused_moe(inputs, cfg, MoEWorkspace(inputs, cfg.BLOCK_SIZE_M))
            torch.cuda.synchronize()
            chosen.append(cfg)
        except Exception:  # noqa: BLE001 - out of resources or compile error: skip it
            continue
    return chosen


def section_correctness(shape: Shape, pool: list[KernelConfig], n: int, seed: int) -> dict:
    t0 = time.perf_counter()
    chosen = pick_compiling(shape, pool[:80], n, 64)
    rows = correctness(shape, chosen, [1, 64, 4096], seed)
    ok = [r for r in rows if r["status"] == "ok"]
    log(f"correctness: {len(ok)} checks, max rel err {max(r['rel_err'] for r in ok):.2e}")
    return {
        "rows": rows,
        "max_rel_err": max(r["rel_err"] for r in ok),
        "checked": len(ok),
        "any_nan": any(r["nan"] for r in ok),
        "failed_to_run": len(rows) - len(ok),
        "seconds": time.perf_counter() - t0,
    }


def section_default(bencher: GpuBenchmarker, shape: Shape) -> dict:
    """vLLM's default config at every batch size, both fidelities, each twice."""
    t0 = time.perf_counter()
    rows = []
    for M in BATCH_SIZES:
        cfg = vllm_default_config(M, shape.E)
        row = {"M": M, "config": cfg.to_dict()}
        for fid in ("short", "full"):
            for rep in (1, 2):
                row[f"{fid}{rep}"] = bencher.measure(M, cfg, fid).to_dict()
        a, b = row["full1"]["median_us"], row["full2"]["median_us"]
        row["full_repeat_diff_pct"] = 100.0 * abs(a - b) / min(a, b)
        rows.append(row)
        log(f"default M={M}: full {a:.1f} / {b:.1f} us, short {row['short1']['median_us']:.1f}")
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def section_tiny(shape: Shape, seed: int) -> dict:
    """The tiny-batch path on and off, alternating, three rounds each."""
    from searcher.kernels.fused_moe.backends import BuiltinBackend
    from searcher.kernels.fused_moe.workload import FusedMoEWorkload

    t0 = time.perf_counter()
    rows = []
    benchers = {flag: GpuBenchmarker(FusedMoEWorkload(shape, BuiltinBackend(naive=flag), seed),
                                     compile_threads=0) for flag in (True, False)}
    for M in (1, 2):
        cfg = vllm_default_config(M, shape.E)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(3):
            for flag in (True, False):
                times[flag].append(benchers[flag].measure(M, cfg, "full").median_us)
        rows.append({"M": M, "naive_us": times[True], "aligned_us": times[False]})
        log(f"tiny-batch M={M}: naive {statistics.median(times[True]):.1f} us, aligned "
            f"{statistics.median(times[False]):.1f} us")
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def section_ranking(bencher: GpuBenchmarker, candidates: list[KernelConfig], M: int,
                    n: int) -> dict:
    """Short versus full fidelity over n random configs that compile, and their costs."""
    t0 = time.perf_counter()
    bencher.precompile(M, candidates[: n + 30])
    rows = []
    for cfg in candidates:
        if len(rows) == n:
            break
        short = bencher.measure(M, cfg, "short")
        if not short.ok:
            continue
        full = bencher.measure(M, cfg, "full")
        full2 = bencher.measure(M, cfg, "full")
        if full.ok and full2.ok:
            rows.append({"config": cfg.to_dict(), "short": short.to_dict(),
                         "full": full.to_dict(), "full2": full2.to_dict()})
    s = [r["short"]["median_us"] for r in rows]
    f = [r["full"]["median_us"] for r in rows]
    f2 = [r["full2"]["median_us"] for r in rows]
    # A trial's short measurement is the first of its config: it pays the kernel load but
    # not the compile (done ahead on a thread). A second full one is the steady state.
    def med(key: str, fn) -> float:
        return statistics.median(fn(r[key]) for r in rows)

    short_cost = med("short", lambda m: m["cost_s"] - m["compile_s"])
    full_cost = med("full2", lambda m: m["cost_s"] - m["compile_s"])
    result = {
        "configs": len(rows),
        "spearman_short_full": spearman(s, f),
        "spearman_full_full": spearman(f, f2),
        "best_by_short_is_within_pct_of_best_full": 100.0 * (f[s.index(min(s))] / min(f) - 1),
        "median_short_cost_s": short_cost,
        "median_full_cost_s": full_cost,
        "short_over_full_cost": short_cost / full_cost,
        "median_host_s_short": med("short", lambda m: m["cost_s"] - m["compile_s"] - m["gpu_s"]),
        "median_host_s_full": med("full2", lambda m: m["cost_s"] - m["compile_s"] - m["gpu_s"]),
        "median_wait_for_compile_s": med("short", lambda m: m["compile_s"]),
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    log(f"rank M={M}: spearman short/full {result['spearman_short_full']:.3f}, full/full "
        f"{result['spearman_full_full']:.3f}, cost ratio {result['short_over_full_cost']:.2f}")
    return result


def section_compile(bencher: GpuBenchmarker, fresh: list[KernelConfig], n: int) -> dict:
    """Compile alone: n fresh configs one by one, then n others on 8 CPU threads."""
    from concurrent.futures import ThreadPoolExecutor

    inputs = bencher.inputs(256)

    def compile_one(cfg: KernelConfig) -> float:
        ws = MoEWorkspace(inputs, cfg.BLOCK_SIZE_M)
        t = time.perf_counter()
        try:
            compile_config(inputs, cfg, ws)
        except Exception:  # noqa: BLE001 - a config that does not compile still took time
            pass
        return time.perf_counter() - t

    t0 = time.perf_counter()
    seq_times = [compile_one(c) for c in fresh[:n]]
    seq_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(compile_one, fresh[n: 2 * n]))
    par_wall = time.perf_counter() - t0
    log(f"compile: median {statistics.median(seq_times):.2f} s/config; {n} configs "
        f"{seq_wall:.1f} s sequential, {par_wall:.1f} s on 8 threads")
    return {
        "configs": n,
        "median_compile_s": statistics.median(seq_times),
        "sequential_wall_s": seq_wall,
        "threads8_wall_s": par_wall,
        "thread_speedup": seq_wall / par_wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--E", type=int, default=64)
    ap.add_argument("--N", type=int, default=1408)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--top-k", type=int, default=6)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rank-configs", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="fewer configs (a smoke run)")
    ap.add_argument("--sections", default="correctness,default,tiny,ranking,compile",
                    help="comma-separated subset of: correctness,default,tiny,ranking,compile")
    args = ap.parse_args()
    sections = set(args.sections.split(","))

    shape = Shape(args.E, args.N, args.hidden, args.top_k, args.dtype)
    device = current_device()
    out = Path(args.out)
    # Rerunning some sections updates them in an existing file and keeps the others.
    result: dict = json.loads(out.read_text()) if out.exists() else {}
    result.update({
        "what": "searcher instrument evidence (issue #2)",
        "device": device.to_dict(),
        "shape": shape.label(),
    })
    result.setdefault("commands", []).append({
        "command": "python " + " ".join(sys.argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sections": sorted(sections),
    })
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    log(f"device {device.name}, torch {device.torch_version}, triton {device.triton_version}")
    space = load_space(ROOT / "spaces" / "vllm-1920.toml")
    rng = random.Random(args.seed)
    pool = space.enumerate(FUSED_MOE.context(shape, 64, device.facts))
    rng.shuffle(pool)
    n_random = 5 if args.quick else 20
    n_rank = 10 if args.quick else args.rank_configs
    from searcher.kernels.fused_moe.workload import FusedMoEWorkload

    bencher = GpuBenchmarker(FusedMoEWorkload(shape, seed=args.seed), compile_threads=8)
    if "correctness" in sections:
        result["correctness"] = section_correctness(shape, pool, n_random, args.seed)
        save()
    if "default" in sections:
        result["default"] = section_default(bencher, shape)
        save()
    if "tiny" in sections:
        result["tiny_batch_path"] = section_tiny(shape, args.seed)
        save()
    if "ranking" in sections:
        result["ranking"] = {}
        for M in (64, 1024):
            result["ranking"][str(M)] = section_ranking(bencher, pool[80:400], M, n_rank)
            save()
    if "compile" in sections:
        result["compile"] = section_compile(bencher, pool[400:], 6 if args.quick else 16)
        save()
    bencher.close()

    # Summary table (last lines of output) --------------------------------------------
    print(f"\n{device.name} | torch {device.torch_version} | triton {device.triton_version}")
    print(f"correctness: {result['correctness']['checked']} checks, max rel err "
          f"{result['correctness']['max_rel_err']:.2e}, NaN: {result['correctness']['any_nan']}")
    print("M     full1    full2   diff%   short1   short2")
    for r in result.get("default", {}).get("rows", []):
        print(f"{r['M']:<5} {r['full1']['median_us']:8.1f} {r['full2']['median_us']:8.1f} "
              f"{r['full_repeat_diff_pct']:6.2f} {r['short1']['median_us']:8.1f} "
              f"{r['short2']['median_us']:8.1f}")
    for M, r in result.get("ranking", {}).items():
        print(f"rank M={M}: n={r['configs']} spearman short/full {r['spearman_short_full']:.3f} "
              f"full/full {r['spearman_full_full']:.3f}; short cost {r['median_short_cost_s']:.3f}s "
              f"full {r['median_full_cost_s']:.3f}s; host short {r['median_host_s_short']:.3f}s "
              f"full {r['median_host_s_full']:.3f}s")
    for r in result.get("tiny_batch_path", {}).get("rows", []):
        print(f"tiny-batch M={r['M']}: naive {r['naive_us']} aligned {r['aligned_us']}")
    print(f"compile: {result.get('compile')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
