"""GPU correctness of the quantized fused-MoE layers: vLLM's default config and random
configs per variant, against the fp32 reference, with the fp8 activation quantization
compared to torch's element by element.

    python benchmarks/check_quant.py --out benchmarks/results/check-quant-NVIDIA_H200.json

Per variant (fp8_w8a8 per-tensor, per-channel, block-wise [128, 128]; int8_w8a16), on a
model shape of that kind, at M = 1, 64 and 1024: vLLM's default config and ``--configs``
random configs of vLLM's 1,920 CUDA space (for block-wise, the 640 its tuner keeps). The
reference (:func:`~searcher.kernels.fused_moe.reference.layer_reference`) quantizes the
activations itself with torch, so it checks the kernel's quantization as well. A config
that does not run (out of shared memory) is recorded and replaced. Writes JSON with the
GPU, torch and triton versions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from searcher.measure.device import current_device  # noqa: E402
from searcher.kernels.fused_moe import FUSED_MOE  # noqa: E402
from searcher.kernels.fused_moe.config import KernelConfig  # noqa: E402
from searcher.kernels.fused_moe.layer import MoEWorkspace, fused_moe, make_inputs, uses_swap_ab  # noqa: E402
from searcher.kernels.fused_moe.problem import Shape  # noqa: E402
from searcher.kernels.fused_moe.reference import layer_reference, quantize_activations  # noqa: E402

#: Relative (Frobenius) error allowed against the fp32 reference that quantizes the
#: activations itself: the layer's bf16 roundings plus SiLU outputs that land on the other
#: side of an fp8 rounding boundary (measured: below 1e-2 on an H200).
TOLERANCE = 3e-2

VARIANTS = {
    # Mixtral-8x7B at TP=2, per-tensor fp8.
    "fp8_w8a8 per-tensor": Shape(8, 7168, 4096, 2, "fp8_w8a8"),
    # Qwen3-30B-A3B-like at TP=1, per-channel fp8.
    "fp8_w8a8 per-channel": Shape(128, 768, 2048, 8, "fp8_w8a8", per_channel=True),
    # DeepSeek-V3 at TP=8, block-wise fp8.
    "fp8_w8a8 block [128,128]": Shape(256, 256, 7168, 8, "fp8_w8a8", block_shape=(128, 128)),
    # Mixtral-8x7B at TP=2, int8 weights.
    "int8_w8a16": Shape(8, 7168, 4096, 2, "int8_w8a16"),
}
SPACE_1920 = [KernelConfig(*v) for v in itertools.product(
    [16, 32, 64, 128, 256], [32, 64, 128, 256], [64, 128, 256], [1, 16, 32, 64], [4, 8],
    [2, 3, 4, 5])]


def check(shape: Shape, M: int, config: KernelConfig, seed: int) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    inputs = make_inputs(shape, M, device="cuda", generator=gen, scale_weights=True)
    row = {"M": M, "config": config.to_dict(),
           "swap_ab": uses_swap_ab(shape, config, torch.cuda.get_device_capability())}
    try:
        ws = MoEWorkspace(inputs, config.BLOCK_SIZE_M)
        ws.out.fill_(float("nan"))
        out = fused_moe(inputs, config, ws).float()
        torch.cuda.synchronize()
    except Exception as exc:  # a config that cannot run here
        row.update(status="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        return row
    ref = layer_reference(inputs)
    row.update(status="ok", nan=bool(torch.isnan(out).any()),
               rel_err=((out - ref).norm() / ref.norm()).item())
    if ws.x_q is not None:
        want, _ = quantize_activations(inputs.x, shape, inputs.a1_scale)
        row["x_fp8_mismatches"] = int((ws.x_q.float() != want.float()).sum())
        want, _ = quantize_activations(ws.act, shape, inputs.a2_scale)
        row["act_fp8_mismatches"] = int((ws.act_q.float() != want.float()).sum())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = current_device()
    result = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
              "device": device.to_dict(), "tolerance": TOLERANCE, "variants": {}}
    rng = random.Random(args.seed)
    ok_all = True
    for name, shape in VARIANTS.items():
        t0 = time.perf_counter()
        pool = SPACE_1920
        if shape.block_shape is not None:
            bn, bk = shape.block_shape
            pool = [c for c in pool if c.BLOCK_SIZE_N % bn == 0 and c.BLOCK_SIZE_K % bk == 0]
        rows = []
        for M in (1, 64, 1024):
            rows.append(dict(check(shape, M, FUSED_MOE.default_config(shape, M), args.seed),
                             default=True))
        candidates = rng.sample(pool, len(pool))
        ran = 0
        for config in candidates:
            if ran >= args.configs:
                break
            M = (1, 64, 1024)[ran % 3]
            row = check(shape, M, config, args.seed + ran)
            rows.append(row)
            ran += row["status"] == "ok"
        good = [r for r in rows if r["status"] == "ok"]
        worst = max(r["rel_err"] for r in good)
        mism = sum(r.get("x_fp8_mismatches", 0) + r.get("act_fp8_mismatches", 0) for r in good)
        passed = worst < TOLERANCE and not any(r["nan"] for r in good)
        ok_all &= passed
        result["variants"][name] = {
            "shape": shape.label(), "rows": rows, "checked": len(good),
            "failed_to_run": len(rows) - len(good), "max_rel_err": worst,
            "fp8_mismatches": mism, "swap_ab_configs": sum(r["swap_ab"] for r in good),
            "passed": passed, "seconds": time.perf_counter() - t0}
        print(f"{name}: {len(good)} configs ran ({len(rows) - len(good)} could not), max rel "
              f"err {worst:.2e}, fp8 mismatches {mism}, passed {passed}", flush=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        torch.cuda.empty_cache()
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
