"""Print the README's instrument tables (Markdown) from a results file of instrument.py.

    python benchmarks/instrument_table.py benchmarks/results/instrument-NVIDIA_H200.json
"""

from __future__ import annotations

import json
import statistics
import sys


def main(path: str) -> None:
    d = json.load(open(path))
    dev = d["device"]
    print(f"{dev['name']}, torch {dev['torch_version']}, triton {dev['triton_version']}, "
          f"driver {dev['driver_version']}; {d['shape']}; from `{path}`\n")
    c = d["correctness"]
    print(f"Correctness (bf16, vs fp32 reference, M = 1, 64, 4096; default + "
          f"{(c['checked'] // 3) - 1} random configs of the 1,920 space): {c['checked']} checks, "
          f"max relative error {c['max_rel_err']:.2e}, unwritten (NaN) outputs: {c['any_nan']}\n")
    print("| M | default config | full #1 us | full #2 us | repeat diff % | short #1 us | "
          "short #2 us | spread (IQR) us |")
    print("|---|---|---|---|---|---|---|---|")
    for r in d["default"]["rows"]:
        cfg = r["config"]
        label = (f"{cfg['BLOCK_SIZE_M']}/{cfg['BLOCK_SIZE_N']}/{cfg['BLOCK_SIZE_K']}/"
                 f"{cfg['GROUP_SIZE_M']}/{cfg['num_warps']}/{cfg['num_stages']}")
        print(f"| {r['M']} | {label} | {r['full1']['median_us']:.1f} | {r['full2']['median_us']:.1f} "
              f"| {r['full_repeat_diff_pct']:.2f} | {r['short1']['median_us']:.1f} | "
              f"{r['short2']['median_us']:.1f} | {r['full1']['spread_us']:.1f} |")
    print()
    print("| M | configs | Spearman short/full | Spearman full/full | short cost s | full cost s "
          "| short/full cost | host s (short) | host s (full) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for M, r in d["ranking"].items():
        print(f"| {M} | {r['configs']} | {r['spearman_short_full']:.3f} | "
              f"{r['spearman_full_full']:.3f} | {r['median_short_cost_s']:.3f} | "
              f"{r['median_full_cost_s']:.3f} | {r['short_over_full_cost']:.2f} | "
              f"{r['median_host_s_short']:.4f} | {r['median_host_s_full']:.4f} |")
    print()
    t = d["tiny_batch_path"]["rows"]
    for r in t:
        print(f"- tiny-batch path at M={r['M']}: skip alignment {statistics.median(r['naive_us']):.1f} us, "
              f"align {statistics.median(r['aligned_us']):.1f} us (medians of 3, alternating)")
    k = d["compile"]
    print(f"- compile of one config (both GEMMs): median {k['median_compile_s']:.2f} s; "
          f"{k['configs']} configs take {k['sequential_wall_s']:.1f} s one by one and "
          f"{k['threads8_wall_s']:.1f} s on 8 CPU threads ({k['thread_speedup']:.1f}x)")


if __name__ == "__main__":
    main(sys.argv[1])
