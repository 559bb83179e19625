"""``searcher compare``: was the search worth it? The search against the exhaustive grid,
vLLM's default and optionally an existing vLLM config file, per batch size.

For each M: the grid's best, the search's winner, the gap between them, trials and GPU
time spent by each, and the trials the search needed to come within 1% and 3% of the
grid's best. Times of configs come from the grid where it measured them (one measurement
set, so paired), else from the search's own measurements. With a benchmarker, the
finalists (grid best, search winner, default, the file's config) are re-measured side by
side, interleaved, in one run, so their ratios are fair. Outputs a table, a CSV and one
PNG per M of best-so-far time against trials for the search and for the grid visited in
random orders (a band over several orders).
"""

from __future__ import annotations

import csv
import math
import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from searcher.store import record
from searcher.store.record import (COUNTED_STATUSES, TrialStatus, config_of, status_of,
                                   stored_wall_time, summarize_study, unmeasured_source)
from searcher.store.storage import (
    load_existing_study, load_stored_study, open_storage, study_name)

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.measure.harness import Benchmarker
    from searcher.kernels.base import Config, Kernel
    from searcher.study.spec import StudySpec

__all__ = ["CompareRow", "compare", "write_csv", "plot_best_so_far"]

#: Random orders of the grid drawn for the band in the plots.
GRID_ORDERS = 20


@dataclass
class CompareRow:
    M: int
    grid_best_us: float | None = None
    grid_best: Config | None = None
    grid_trials: int = 0
    grid_size: int = 0
    grid_gpu_s: float = 0.0
    search_best_us: float | None = None  # the search's winner, timed as said above
    search_winner: Config | None = None
    search_trials: int = 0
    search_gpu_s: float = 0.0
    gap_pct: float | None = None  # search winner over grid best, in %
    trials_to_1pct: int | None = None
    trials_to_3pct: int | None = None
    default_us: float | None = None
    against: Config | None = None
    against_us: float | None = None
    remeasured: dict[str, float] = field(default_factory=dict)  # label -> median us
    # What produced the stored times when not a GPU: "synthetic" or "replay of FILE"
    # (record.unmeasured_source), for the search and the grid; None: measured on a GPU.
    source: str | None = None
    curves: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("curves")
        for key in ("grid_best", "search_winner", "against"):
            value = getattr(self, key)
            d[key] = value.to_dict() if value else None
        return d


def _values(kernel: Kernel, study: optuna.Study | None) -> list[tuple[Config, float | None, str]]:
    """(config, full median or None, status) of counted trials, in trial order."""
    if study is None:
        return []
    out = []
    for t in study.get_trials(deepcopy=False):
        status = status_of(t)
        config = config_of(kernel, t)
        if status in COUNTED_STATUSES and config is not None:
            out.append((config, t.value if status is TrialStatus.OK else None, status))
    return out


def _best_so_far(values: Sequence[float | None]) -> list[float]:
    best, out = math.inf, []
    for v in values:
        if v is not None and v < best:
            best = v
        out.append(best)
    return out


def compare(
    spec: StudySpec,
    storage_url: str,
    device: str,
    *,
    against: dict[int, Config] | None = None,
    bencher: Benchmarker | None = None,
    rounds: int = 3,
    fidelity: str = "long",
    batch_sizes: Sequence[int] | None = None,
    against_file: str | None = None,
) -> list[CompareRow]:
    """Compare the stored search and grid of every batch size (see the module docstring)."""
    from searcher.results.export import nearest_config
    from searcher.tune.grid import grid_order

    kernel = spec.kernel
    # A side-by-side re-measurement is stored with the study; stored times are only read.
    storage = open_storage(storage_url, read_only=bencher is None)
    rows = []
    for M in batch_sizes or spec.batch_sizes:
        search = load_stored_study(storage, "search", spec, device, M)
        # The grid is a baseline: one of another space (vLLM's grid against an extended
        # search) is what the comparison is for.
        grid = load_existing_study(storage, study_name(kernel, "grid", spec.shape, device, M))
        row = CompareRow(M=M)
        row.source = ", ".join(sorted({src for st in (search, grid) if st is not None
                                       if (src := unmeasured_source(st.user_attrs))})) or None
        default = kernel.default_config(spec.shape, M)
        grid_vals = _values(kernel, grid)
        grid_time = {c: v for c, v, _ in grid_vals if v is not None}
        if grid is not None:
            row.grid_trials = len(grid_vals)
            row.grid_size = len(grid_order(spec, M))
            row.grid_gpu_s = stored_wall_time(grid.user_attrs)
            if grid_time:
                row.grid_best, row.grid_best_us = min(grid_time.items(), key=lambda kv: kv[1])
        search_vals = _values(kernel, search)

        def time_of(config: Config | None, fallback: float | None = None) -> float | None:
            if config is None:
                return None
            return grid_time.get(config, fallback)

        if search is not None:
            s = summarize_study(kernel, search, M)
            row.search_trials = s.trials
            row.search_gpu_s = s.wall_s
            row.search_winner = s.winner or s.best_config
            own = {c: v for c, v, _ in search_vals if v is not None}
            row.search_best_us = time_of(row.search_winner, s.winner_us or own.get(row.search_winner))
            row.default_us = time_of(default, s.default_us)
            paired = [time_of(c, v) if v is not None else None for c, v, _ in search_vals]
            if row.grid_best_us:
                for pct, attr in ((1.01, "trials_to_1pct"), (1.03, "trials_to_3pct")):
                    hit = next((i + 1 for i, b in enumerate(_best_so_far(paired))
                                if b <= pct * row.grid_best_us), None)
                    setattr(row, attr, hit)
            row.curves["search"] = _best_so_far(paired)
        else:
            row.default_us = time_of(default)
        if row.grid_best_us and row.search_best_us:
            row.gap_pct = 100.0 * (row.search_best_us / row.grid_best_us - 1.0)
        if against:
            row.against = nearest_config(against, M)
            # Without a grid, the file's config has the time the finalists measured for it
            # (it was a finalist), else the search's (it was a trial).
            stored = None
            if search is not None:
                final = search.user_attrs.get(record.FINAL) or {}
                finalists = {kernel.config_from_dict(e["config"]): e.get("median_us")
                             for e in final.get("entries", [])}
                own = {c: v for c, v, _ in search_vals if v is not None}
                stored = finalists.get(row.against) or own.get(row.against)
            row.against_us = time_of(row.against, stored)
        if grid_vals:
            values = [v for _, v, _ in grid_vals]
            orders = []
            for seed in range(GRID_ORDERS):
                shuffled = values[:]
                random.Random(seed).shuffle(shuffled)
                orders.append(_best_so_far(shuffled))
            row.curves["grid"] = orders
        if bencher is not None:
            configs = {
                "grid best": row.grid_best, "search": row.search_winner,
                "vLLM default": default, "file": row.against,
            }
            times = remeasure_times(bencher, M, configs, rounds, fidelity)
            row.remeasured = {label: statistics.median(v) for label, v in times.items()}
            if search is not None:
                # Kept with the study, so `searcher report` shows it without a GPU.
                search.set_user_attr(record.SIDE_BY_SIDE, {
                    "fidelity": fidelity, "rounds": rounds, "against_file": against_file,
                    record.DEVICE_INFO: bencher.device_info(),
                    "entries": [{"label": label, "config": configs[label].to_dict(),
                                 "times_us": v, "median_us": row.remeasured[label]}
                                for label, v in times.items()],
                })
        rows.append(row)
    return rows


def remeasure_times(bencher: Benchmarker, M: int, configs: dict[str, Config | None],
                    rounds: int, fidelity: str) -> dict[str, list[float]]:
    """``rounds`` interleaved measurements (medians, us; inf where one failed) of each
    distinct config, by label."""
    distinct: dict[Config, list[str]] = {}
    for label, config in configs.items():
        if config is not None:
            distinct.setdefault(config, []).append(label)
    times: dict[Config, list[float]] = {c: [] for c in distinct}
    for _ in range(rounds):  # a round side by side: on a GPU their replays interleave
        for config, m in zip(distinct, bencher.measure_round(M, list(distinct), fidelity)):
            times[config].append(m.median_us if m.ok else math.inf)
    return {label: times[config] for config, labels in distinct.items() for label in labels}


def write_csv(rows: Sequence[CompareRow], path: str | Path) -> Path:
    path = Path(path)
    fields = ["M", "grid_best_us", "grid_best", "grid_trials", "grid_size", "grid_gpu_s",
              "search_best_us", "search_winner", "search_trials", "search_gpu_s", "gap_pct",
              "trials_to_1pct", "trials_to_3pct", "default_us", "against", "against_us",
              "source"]
    labels = sorted({k for r in rows for k in r.remeasured})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields + [f"remeasured {k} us" for k in labels])
        for r in rows:
            d = r.to_dict()
            cells = []
            for k in fields:
                v = d[k]
                if isinstance(v, dict):
                    v = "/".join(str(x) for x in v.values())
                cells.append("" if v is None else v)
            w.writerow(cells + [r.remeasured.get(k, "") for k in labels])
    return path


def plot_best_so_far(row: CompareRow, path: str | Path, title: str) -> Path | None:
    """PNG of best-so-far time against trials: the search, and the grid in random orders
    (median and 10-90% band). None when there is nothing to plot."""
    if not row.curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    if "grid" in row.curves:
        arr = np.array(row.curves["grid"], dtype=float)
        arr[~np.isfinite(arr)] = np.nan
        x = np.arange(1, arr.shape[1] + 1)
        ax.fill_between(x, np.nanpercentile(arr, 10, axis=0), np.nanpercentile(arr, 90, axis=0),
                        color="tab:gray", alpha=0.3, label=f"grid, random order (10-90%, {len(arr)} orders)")
        ax.plot(x, np.nanmedian(arr, axis=0), color="tab:gray", lw=1.2, label="grid, median order")
    if "search" in row.curves:
        y = np.array(row.curves["search"], dtype=float)
        y[~np.isfinite(y)] = np.nan
        ax.plot(np.arange(1, len(y) + 1), y, color="tab:blue", lw=2, label="searcher")
    if row.default_us:
        ax.axhline(row.default_us, color="tab:red", ls="--", lw=1, label="vLLM default")
    if row.grid_best_us:
        ax.axhline(row.grid_best_us, color="black", ls=":", lw=1, label="grid best")
        ax.set_ylim(row.grid_best_us * 0.98, row.grid_best_us * 1.25)
    ax.set_xscale("log")
    ax.set_xlabel("measured configs (trials)")
    ax.set_ylabel("best time so far (us per layer call)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
