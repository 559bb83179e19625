"""``searcher report``: the evidence that a tuned vLLM config file is right, for one GPU.

From the storage alone (no GPU), a Markdown file with two PNG plots: per batch size M,
vLLM's default time, the best config of each recorded grid given, searcher's winner, its
speedup over the default (and whether that is within the measurement noise), how close it
comes to the physical floor, and what the search cost.

Where a row's times come from, first found wins:

1. the study's ``side_by_side`` attribute, written by ``searcher compare`` (the winner,
   the default, the grid's best and a vLLM file's config re-measured interleaved, in one
   run); it is skipped when its winner is no longer the study's (a search resumed since);
2. the study's ``final`` attribute (the finalists' run at the end of the search, in which
   the default is measured side by side with the best configs).

A grid's best config takes its time from that same run when the run measured it (as the
winner, the default, or under any other label); otherwise its time is the median the grid
run recorded, which was not measured side by side (marked †).

The physical floor of the layer at M is the kernel's roofline (``kernel.floor_us``; for the
fused MoE ``max(bytes / bandwidth, FLOPs / peak)``: bytes are the expert weights touched
under uniform routing plus reading the input and writing the output activations
(``M * hidden`` elements each); FLOPs are both GEMMs'). The GPU numbers are in
:data:`GPU_PEAKS`.

The report only reads the storage: it refuses a storage file that does not exist rather
than creating an empty one, and it sets no attribute.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from searcher.errors import ConfigError, SearcherError, StorageError
from searcher.measure.measurement import FIDELITIES
from searcher.store import record
from searcher.strategies.decide import Verdict
from searcher.store.record import TimeSplit, paired_verdict, unmeasured_source, within_noise
from searcher.tune.view import format_us

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Config, Kernel, Problem
    from searcher.store.record import MSummary
    from searcher.study.spec import StudySpec

__all__ = [
    "GpuPeak",
    "GPU_PEAKS",
    "STANDARD_GRIDS",
    "floor_us",
    "GridDataset",
    "read_grid",
    "GridCell",
    "ReportRow",
    "Report",
    "build_report",
    "write_report",
    "render_markdown",
    "report_command",
    "time_table",
]


@dataclass(frozen=True)
class GpuPeak:
    """What bounds the layer from below on one GPU."""

    tensor_flops: float  # dense bf16/fp16 tensor-core FLOP/s (a kernel scales it per dtype)
    bandwidth: float  # memory bandwidth, bytes/s


#: Peak numbers by vLLM device name, from FUSED_MOE.md ("Physical floor"): H100 SXM 989
#: TFLOP/s dense bf16 and 3.35 TB/s; H200 the same compute and 4.8 TB/s; A100 SXM4 80GB
#: 312 TFLOP/s and 2.04 TB/s. A GPU not listed gets no floor ("-" in the report).
GPU_PEAKS: dict[str, GpuPeak] = {
    "NVIDIA_H100_80GB_HBM3": GpuPeak(tensor_flops=989e12, bandwidth=3.35e12),
    "NVIDIA_H200": GpuPeak(tensor_flops=989e12, bandwidth=4.8e12),
    "NVIDIA_A100-SXM4-80GB": GpuPeak(tensor_flops=312e12, bandwidth=2.04e12),
}

#: Grid spaces that always get a column ("not measured" when no dataset of theirs is
#: given): vLLM's tuner's full grid and the reduced grid of vLLM PR #40542.
STANDARD_GRIDS: tuple[str, ...] = ("vllm-432", "vllm-1920")

#: Batch sizes from which the "large batch" geomean is taken.
LARGE_M = 256


def floor_us(kernel: Kernel, problem: Problem, M: int, device: str) -> float | None:
    """The physical floor (us) of ``kernel`` on ``problem`` at M on ``device`` (see the
    module docstring), or None for a GPU without peak numbers or a problem whose rate the
    peaks do not give."""
    peak = GPU_PEAKS.get(device)
    if peak is None:
        return None
    return kernel.floor_us(problem, M, peak)


# -- recorded grids --------------------------------------------------------------------
@dataclass
class GridDataset:
    """A grid recorded by ``searcher grid --dataset``, reduced to what a report shows."""

    path: Path
    space: str
    best: dict[int, tuple[Config, float]]  # M -> fastest config that ran, its median
    batch_sizes: set[int]  # every M the dataset has rows for
    configs: int  # rows (measured configs, all batch sizes)
    cost_s: dict[int, float]  # M -> recorded GPU seconds (only where costs are recorded)

    @property
    def column(self) -> str:
        return grid_column(self.space)


def grid_column(space: str) -> str:
    return f"grid {space} best"


def read_grid(path: str | Path, kernel: Kernel, problem: Problem, device: str) -> GridDataset:
    """Read a recorded grid and check that it is of this kernel, problem and GPU.

    Raises:
        SearcherError: the file cannot be read, names no space, or was recorded for
            another kernel, shape or GPU (the message names ``--grid`` and the file).
    """
    from searcher.measure.measurement import Status
    from searcher.measure.replay import read_dataset

    path = Path(path)
    try:
        meta, records = read_dataset(path)
    except SearcherError as exc:
        raise SearcherError(f"--grid {exc}") from None
    space = meta.get("space")
    if not space:
        raise SearcherError(f"--grid {path}: no '# space:' metadata line names the grid's "
                            "space (`searcher grid --dataset` writes one)")
    for key, want in (("kernel", kernel.name), ("shape", problem.label()),
                      ("vllm_name", device)):
        have = meta.get(key)
        if have and have != want:
            raise SearcherError(f"--grid {path}: recorded with {key} {have}, but this report "
                                f"is of {key} {want}")
    best: dict[int, tuple[Config, float]] = {}
    cost: dict[int, float] = {}
    sizes: set[int] = set()
    for (M, config), r in records.items():
        sizes.add(M)
        spent = [r[k] for k in ("short_cost_s", "full_cost_s", "compile_s") if math.isfinite(r[k])]
        if spent:
            cost[M] = cost.get(M, 0.0) + sum(spent)
        if r["status"] is Status.OK and math.isfinite(r["median_us"]) \
                and (M not in best or r["median_us"] < best[M][1]):
            best[M] = (config, r["median_us"])
    return GridDataset(path=path, space=space, best=best, batch_sizes=sizes,
                       configs=len(records), cost_s=cost)


# -- rows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridCell:
    """A grid's best config at one M; ``config`` None where the dataset lacks M (or
    nothing ran there)."""

    config: Config | None = None
    us: float | None = None
    side_by_side: bool = False  # timed in the row's own side-by-side run


@dataclass
class ReportRow:
    M: int
    source: str  # "side by side", "finalists" or "none"
    default: Config
    default_us: float | None = None
    winner: Config | None = None
    winner_us: float | None = None
    # the decision rule's noise (relative; searcher/strategies/decide.py)
    noise: float | None = None
    verdict: Verdict | None = None  # the decision rule on the winner's and default's rounds
    trials: int = 0
    wall_s: float = 0.0
    time: TimeSplit = field(default_factory=TimeSplit)  # where wall_s went
    floor_us: float | None = None
    grids: dict[str, GridCell | None] = field(default_factory=dict)  # column -> cell; None: no dataset
    stale: bool = False  # a side-by-side run is stored, but of an older winner or default

    @property
    def speedup(self) -> float | None:
        if self.default_us and self.winner_us and math.isfinite(self.default_us) \
                and math.isfinite(self.winner_us):
            return self.default_us / self.winner_us
        return None

    @property
    def within_noise(self) -> bool:
        return self.speedup is not None and within_noise(self.verdict)

    @property
    def slower(self) -> bool:
        """searcher's config is slower than the default by more than the noise."""
        return (self.speedup is not None and self.verdict is not None
                and self.verdict.outcome.value == "slower")

    @property
    def floor_pct(self) -> float | None:
        if self.floor_us is None or not self.winner_us:
            return None
        return 100.0 * self.floor_us / self.winner_us


@dataclass
class Report:
    spec: StudySpec
    storage_url: str
    device: str
    rows: list[ReportRow]
    grids: list[GridDataset]
    columns: list[str]  # grid columns, in order
    device_infos: list[dict[str, Any]]
    runs: list[dict[str, Any]]  # {"source", "M": [...], "fidelity", "rounds", "against_file"}
    missing: list[int]  # batch sizes with no stored search
    stale: list[int] = field(default_factory=list)  # side-by-side runs of an older winner

    @property
    def source(self) -> str | None:
        """What produced the times when it was not a GPU measuring this study: "synthetic",
        "replay of FILE" (several joined by ", "); None for GPU measurements."""
        found = sorted({src for info in self.device_infos
                        if (src := unmeasured_source({record.DEVICE_INFO: info})) is not None})
        return ", ".join(found) or None

    @property
    def synthetic(self) -> bool:
        return any(src == "synthetic" for src in (self.source or "").split(", "))

    def title(self) -> str:
        """``study on device``, and the source where it is not a GPU's measurements."""
        text = f"{self.spec.name} on {self.device}"
        if self.synthetic:
            return f"{text}, SYNTHETIC landscape (no GPU measurement)"
        if self.source:
            return f"{text}, {self.source} (recorded measurements, not this study's)"
        return text

    def geomean(self, min_M: int = 0) -> float | None:
        values = [r.speedup for r in self.rows if r.M >= min_M and r.speedup]
        return statistics.geometric_mean(values) if values else None

    @property
    def slower(self) -> list[int]:
        return [r.M for r in self.rows if r.slower]

    @property
    def search_wall_s(self) -> float:
        return sum(r.wall_s for r in self.rows)

    def grid_cost_s(self, grid: GridDataset) -> float | None:
        """The grid's recorded GPU seconds at this report's batch sizes (None: unrecorded)."""
        Ms = {r.M for r in self.rows}
        spent = [s for M, s in grid.cost_s.items() if M in Ms]
        return sum(spent) if spent else None


def _entries_of_side_by_side(attrs: dict[str, Any], summary: MSummary,
                             default: Config, kernel: Kernel) -> tuple[list[dict[str, Any]], dict] | None:
    """The side-by-side run's entries as (config, times_us, median_us, role), or None when
    there is none, or it no longer shows the study's winner or vLLM's default."""
    run = attrs.get(record.SIDE_BY_SIDE)
    if not run:
        return None
    by_label = {e.get("label"): e for e in run.get("entries", [])}
    search, dflt = by_label.get("search"), by_label.get("vLLM default")
    if search is None or dflt is None:
        return None
    winner = kernel.config_from_dict(search["config"])
    if summary.winner is not None and winner != summary.winner:
        return None  # the search went on after compare: its winner changed
    if kernel.config_from_dict(dflt["config"]) != default:
        return None
    entries = [{"config": kernel.config_from_dict(e["config"]), "times_us": e["times_us"],
                "median_us": e["median_us"],
                "role": {"search": "winner", "vLLM default": "default"}.get(e["label"])}
               for e in run["entries"]]
    return entries, run


def _entries_of_final(attrs: dict[str, Any],
                      kernel: Kernel) -> tuple[list[dict[str, Any]], dict] | None:
    final = attrs.get(record.FINAL)
    if not final:
        return None
    entries = []
    for e in final["entries"]:
        config = kernel.config_from_dict(e["config"])
        role = "default" if e.get("default") else None
        entries.append({"config": config, "times_us": e["times_us"], "median_us": e["median_us"],
                        "role": role})
        if config == kernel.config_from_dict(final["winner"]):
            entries.append({**entries[-1], "role": "winner"})
    return entries, final


def _row(spec: StudySpec, device: str, M: int, attrs: dict[str, Any],
         summary: MSummary) -> tuple[ReportRow, list[dict[str, Any]], dict | None]:
    default = spec.kernel.default_config(spec.shape, M)
    row = ReportRow(M=M, source="none", default=default, trials=summary.trials,
                    wall_s=summary.wall_s, time=summary.time, floor_us=floor_us(spec.kernel, spec.shape, M, device))
    found = _entries_of_side_by_side(attrs, summary, default, spec.kernel)
    source = "side by side"
    if found is None:
        row.stale = bool(attrs.get(record.SIDE_BY_SIDE))
        found, source = _entries_of_final(attrs, spec.kernel), "finalists"
    if found is None:
        return row, [], None
    entries, run = found
    row.source = source
    roles = {e["role"]: e for e in entries if e["role"]}
    row.winner, row.winner_us = roles["winner"]["config"], roles["winner"]["median_us"]
    if "default" in roles:
        row.default_us = roles["default"]["median_us"]
    row.verdict = paired_verdict(roles["winner"]["times_us"],
                                 roles["default"]["times_us"] if "default" in roles else None)
    row.noise = row.verdict.noise if row.verdict is not None else None
    if source == "finalists" and row.winner == default and summary.noise is not None:
        # A default kept: its rounds against themselves have no noise; the noise is that
        # of the pair the rule judged, as `searcher status` reports it.
        row.noise = summary.noise
    return row, entries, run


def build_report(spec: StudySpec, storage_url: str, device: str,
                 grids: Sequence[str | Path] = (),
                 batch_sizes: Sequence[int] | None = None) -> Report:
    """Read what the storage holds for ``spec`` on ``device`` and the recorded ``grids``.

    Raises:
        StorageError: the storage file does not exist, or holds no search of this study
            on this device.
        SearcherError: a grid file is unreadable, of another shape or GPU, or two grids
            are of one space.
    """
    datasets: list[GridDataset] = []
    for path in grids:
        g = read_grid(path, spec.kernel, spec.shape, device)
        twin = next((d for d in datasets if d.space == g.space), None)
        if twin is not None:
            raise SearcherError(f"--grid {g.path} and --grid {twin.path} are both grids of "
                                f"space {g.space}; give one")
        datasets.append(g)
    columns = [grid_column(s) for s in STANDARD_GRIDS]
    columns += [g.column for g in datasets if g.column not in columns]

    from searcher.store.storage import open_storage

    storage = open_storage(storage_url, read_only=True)
    try:
        return _read_storage(spec, storage, storage_url, device, datasets, columns, batch_sizes)
    finally:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()  # close the connections now: SQLite then removes its -wal/-shm


def _read_storage(spec: StudySpec, storage: Any, storage_url: str, device: str,
                  datasets: list[GridDataset], columns: list[str],
                  batch_sizes: Sequence[int] | None) -> Report:
    from searcher.store.record import summarize_study
    from searcher.store.storage import iter_studies, stored_devices

    by_column = {g.column: g for g in datasets}
    rows: list[ReportRow] = []
    missing: list[int] = []
    infos: dict[str, dict[str, Any]] = {}
    runs: dict[tuple, dict[str, Any]] = {}
    for M, study in iter_studies(storage, "search", spec, device, batch_sizes or spec.batch_sizes):
        if study is None:
            missing.append(M)
            continue
        attrs = study.user_attrs
        row, entries, run = _row(spec, device, M, attrs, summarize_study(spec.kernel, study, M))
        for info in (attrs.get(record.DEVICE_INFO), (run or {}).get(record.DEVICE_INFO)):
            if info:
                infos.setdefault(json.dumps(info, sort_keys=True), info)
        if run is not None:
            key = (row.source, run.get("fidelity"), run.get("rounds"), run.get("against_file"),
                   run.get("calls_per_graph"), bool((run.get("plan") or {}).get("stopped")))
            runs.setdefault(key, {"source": key[0], "fidelity": key[1], "rounds": key[2],
                                  "against_file": key[3], "calls_per_graph": key[4],
                                  "stopped": key[5], "M": []})["M"].append(M)
        for column in columns:
            g = by_column.get(column)
            if g is None:
                row.grids[column] = None
            elif M not in g.best:
                row.grids[column] = GridCell()
            else:
                config, us = g.best[M]
                paired = next((e for e in entries if e["config"] == config), None)
                row.grids[column] = GridCell(config, paired["median_us"], True) if paired \
                    else GridCell(config, us, False)
        rows.append(row)
    if not rows:
        others = [d for d in stored_devices(storage, spec.kernel, "search", spec.shape)
                  if d != device]
        hint = f" (it has some for: {', '.join(others)}; pass --device)" if others else ""
        raise StorageError(f"--storage {storage_url} holds no search of study {spec.name} on "
                           f"{device}{hint}")
    return Report(spec=spec, storage_url=storage_url, device=device, rows=rows,
                  grids=datasets, columns=columns, device_infos=list(infos.values()),
                  runs=list(runs.values()), missing=missing,
                  stale=[r.M for r in rows if r.stale])


# -- rendering -------------------------------------------------------------------------
def report_command(spec_arg: str, storage_url: str, device: str, grids: Sequence[str | Path],
                   out_dir: str | Path, batch_sizes: Sequence[int] | None = None) -> str:
    """The ``searcher report`` command line that writes this report again."""
    argv = ["searcher", "report", "--study", spec_arg, "--storage", storage_url,
            "--device", device]
    for g in grids:
        argv += ["--grid", str(g)]
    if batch_sizes:
        argv += ["--batch-sizes", ",".join(map(str, batch_sizes))]
    argv += ["--out", str(out_dir)]
    return shlex.join(argv)


def _base_name(report: Report) -> str:
    return f"report-{report.spec.name}-{report.device}"


def _speedup_text(row: ReportRow) -> str:
    if row.speedup is None:
        return "-"
    return f"{row.speedup:.3f}" + (" (= within noise)" if row.within_noise else "")


def _grid_text(cell: GridCell | None) -> str:
    if cell is None:
        return "not measured"
    if cell.config is None:
        return "-"
    mark = " (side by side)" if cell.side_by_side else " †"
    return f"{cell.config.short()}: {format_us(cell.us)}{mark}"


def _info_text(info: dict[str, Any]) -> str:
    def get(key: str) -> str:
        return str(info.get(key) or "?")

    return (f"{get('name')} (torch {get('torch_version')}, triton {get('triton_version')}, "
            f"driver {get('driver_version')}, CUDA {get('cuda_version')}, backend "
            f"{get('backend')})")


def _rounds(n: Any) -> str:
    """``n`` interleaved round(s), in words."""
    return f"{n} interleaved round{'' if n == 1 else 's'}"


def _ms(values: Sequence[int]) -> str:
    return ", ".join(map(str, values))


def render_markdown(report: Report, command: str, plots: dict[str, str | None]) -> str:
    """The report as Markdown; ``plots`` maps "speedup" and "floor" to PNG file names
    next to it (None where not drawn)."""
    spec, rows = report.spec, report.rows
    lines = [f"# searcher report: {report.title()}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += ["| | |", "|---|---|",
              f"| study | `{spec.name}` |",
              f"| space | {spec.space.name} |",
              f"| shape | {spec.shape.label()} |",
              f"| device | {report.device} |"]
    for info in report.device_infos or [{}]:
        lines.append(f"| GPU | {_info_text(info)} |")
    lines += [f"| storage | `{report.storage_url}` |",
              f"| reproduce | `{command}` |", ""]

    lines += ["## Per batch size", ""]
    # A synthetic landscape's times are made up: no % of a GPU's floor, no GPU minutes.
    facts = not report.synthetic
    cols = ["M", "vLLM default us", *report.columns, "searcher winner", "searcher us",
            "speedup", "noise %", *(("% of floor",) if facts else ()), "trials",
            "GPU min" if facts else "simulated min"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" if c in ("searcher winner",) or c in report.columns
                                else "---:" for c in cols) + "|")
    for r in rows:
        cells = [str(r.M), format_us(r.default_us)]
        cells += [_grid_text(r.grids.get(c)) for c in report.columns]
        cells += [f"`{r.winner.short()}`" if r.winner else "-", format_us(r.winner_us),
                  _speedup_text(r), "-" if r.noise is None else f"{100 * r.noise:.2f}",
                  *(("-" if r.floor_pct is None else f"{r.floor_pct:.0f}",) if facts else ()),
                  str(r.trials), f"{r.wall_s / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_footnotes(report), ""]

    lines += ["## Summary", ""]
    lines += [f"- {line}" for line in summary_lines(report)]
    if report.synthetic:  # its costs are made up: shares of real wall time would be noise
        lines += ["", "## Where the time went", "",
                  "Not shown: a synthetic landscape's measurement and compile costs are made "
                  "up (`--synthetic`), so they say nothing about a GPU's time."]
    else:
        lines += ["", "## Where the time went", "", *time_table(report)]
    lines += ["", "## Plots", ""]
    if plots.get("speedup"):
        lines += [f"![speedup over vLLM's default against M]({plots['speedup']})", ""]
    if plots.get("floor"):
        lines += [f"![% of the physical floor against M]({plots['floor']})", ""]
    elif report.synthetic:
        lines += ["No % of floor plot: the times are a synthetic landscape's, not a GPU's.", ""]
    else:
        lines += [f"No % of floor plot: searcher has no peak numbers for {report.device} "
                  f"({spec.shape.label()}).", ""]
    return "\n".join(lines)


def _footnotes(report: Report) -> list[str]:
    notes = []
    for about in report.runs:
        if about["source"] == "side by side":
            against = f", with the vLLM file {about['against_file']}" if about["against_file"] else ""
            notes.append(
                f"Times at M = {_ms(about['M'])}: `searcher compare`'s side-by-side "
                f"re-measurement ({_rounds(about['rounds'])} at the "
                f"{about['fidelity']} fidelity{against}); medians of the rounds.")
        else:
            full = FIDELITIES.get(about["fidelity"])
            calls = about.get("calls_per_graph")
            fewer = (f" with graphs of {calls} layer call{'' if calls == 1 else 's'}, as many as "
                     "fit the finalists' budget" if calls and full is not None
                     and calls != full.calls_per_graph else "")
            stopped = ("; the budget ended the rounds of an undecided pair, whose incumbent "
                       "stayed" if about.get("stopped") else "")
            notes.append(
                f"Times at M = {_ms(about['M'])}: the search's finalists' run "
                f"({_rounds(about['rounds'])} at the {about['fidelity']} fidelity{fewer}, "
                f"vLLM's default among them{stopped}; no `searcher compare` re-measurement "
                "stored); medians of the rounds.")
    none = [r.M for r in report.rows if r.source == "none"]
    if none:
        notes.append(f"M = {_ms(none)}: the search has no finalists' run yet (rerun "
                     "`searcher run` to finish it): no times.")
    if report.stale:
        notes.append(f"M = {_ms(report.stale)}: the stored side-by-side run timed another "
                     "winner or default (the search went on after `searcher compare`); the "
                     "finalists' run is used instead. Rerun `searcher compare` on the GPU.")
    if report.missing:
        notes.append(f"No search is stored for M = {_ms(report.missing)}.")
    if any(c is not None and c.config is not None and not c.side_by_side
           for r in report.rows for c in r.grids.values()):
        notes.append("† recorded in the grid run, not side by side: another run, on another "
                     "day or machine, at the full (not long) fidelity; compare it with the "
                     "other columns with care.")
    notes.append("Grid cells: the grid's fastest config and its time; \"(side by side)\" "
                 "when the row's own run also timed that config; \"-\" where the dataset "
                 "lacks M; \"not measured\" where no grid of that space was given.")
    notes.append("Speedup = vLLM default us / searcher us; \"(= within noise)\" unless "
                 "searcher's decision rule (searcher/strategies/decide.py) finds the winner "
                 "faster or slower in the paired rounds: at least 5 of them, every round faster "
                 "(slower), the median ratio beyond 1 + max(1%, noise); noise % = the "
                 "standard deviation of the "
                 "log paired ratios default/winner.")
    peak = GPU_PEAKS.get(report.device)
    if report.source and not report.synthetic:
        notes.append(f"Times replayed from a recorded dataset ({report.source}), not "
                     "measured by this study; GPU min is the recorded cost replayed.")
    if report.synthetic:
        notes.append("Synthetic landscape (`--synthetic`): the times are made up for tests "
                     "and demos, not measured; \"simulated min\" is the wall time the search "
                     "loop took with the synthetic benchmarker, not GPU time. No % of floor.")
    elif peak is not None:
        notes.append(
            f"% of floor = floor / searcher us, floor = max(bytes / {peak.bandwidth / 1e12:g} "
            f"TB/s, FLOPs / {peak.tensor_flops / 1e12:g} TFLOP/s) for {report.device}; "
            "bytes = expert weights touched under uniform routing + input and output "
            "activations, FLOPs = 6 M top_k H N.")
    else:
        notes.append(f"% of floor: no peak numbers for {report.device} (\"-\").")
    if not report.synthetic:
        notes.append("GPU min: wall time the search held the GPU at that M (all workers, "
                     "finalists' run included).")
    return [f"{i}. {n}" for i, n in enumerate(notes, start=1)]


def _batch_sizes(n: int) -> str:
    return f"{n} batch size{'s' if n != 1 else ''}"


def summary_lines(report: Report) -> list[str]:
    """The report's summary, one line each (Markdown)."""
    def geo(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    large = [r.M for r in report.rows if r.M >= LARGE_M and r.speedup]
    lines = [
        f"Geomean speedup over vLLM's default: {geo(report.geomean(LARGE_M))} for M >= "
        f"{LARGE_M} ({_batch_sizes(len(large))}), "
        f"{geo(report.geomean())} over all M "
        f"({_batch_sizes(sum(1 for r in report.rows if r.speedup))}).",
        f"Batch sizes where searcher's config is slower than the default beyond noise: "
        f"{len(report.slower)}" + (f" (M = {_ms(report.slower)})" if report.slower else "") + ".",
        f"Search {'simulated' if report.synthetic else 'GPU'} time: "
        f"{report.search_wall_s / 60:.1f} min over "
        f"{len(report.rows)} batch sizes.",
    ]
    for g in report.grids:
        cost = report.grid_cost_s(g)
        if cost is None:
            lines.append(f"grid {g.space} (`{g.path}`): {g.configs} measurements; its "
                         "dataset records no costs.")
            continue
        lines.append(
            f"grid {g.space} (`{g.path}`): {cost / 60:.1f} GPU min at these batch sizes "
            "(sum of its recorded measurement and compile costs, less than the run's wall "
            f"time); searcher's {report.search_wall_s / 60:.1f} min are "
            f"{100 * report.search_wall_s / cost:.0f}% of it.")
    return lines


def time_table(report: Report) -> list[str]:
    """Per batch size and in total, the search's wall seconds by part (Markdown lines; see
    :class:`searcher.store.record.TimeSplit`), then a note on what each part is."""
    def sec(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    lines = ["| M | measuring s | compile waits s | finalists s | host overhead s | wall s |",
             "|---:|---:|---:|---:|---:|---:|"]
    total = TimeSplit()
    for r in report.rows:
        t = r.time
        total = total + t
        lines.append(f"| {r.M} | {sec(t.measuring_s)} | {sec(t.compile_s)} | "
                     f"{sec(t.finalists_s)} | {sec(t.host_s)} | {sec(t.wall_s)} |")
    lines.append(f"| **total** | {sec(total.measuring_s)} | {sec(total.compile_s)} | "
                 f"{sec(total.finalists_s)} | {sec(total.host_s)} | {sec(total.wall_s)} |")
    kind = "simulated" if report.synthetic else "measured"
    lines += ["", f"Measuring: the trials' short and full measurements ({kind}), less their "
              "compile waits; compile waits: the time a measurement waited for its config's "
              "compile (ahead on CPU threads, or inline); finalists: the finalists' "
              "re-measurement; host overhead = wall - measuring - compile waits - finalists "
              "(sampler, storage, pruning, Python); wall: all processes' wall time. \"-\": "
              "a record from before the finalists' cost was stored."]
    if total.gpu_s is not None:
        lines[-1] += (f" Of measuring, the GPU replayed graphs for {total.gpu_s:.0f} s "
                      "(trials that recorded it).")
    return lines


def _plot(report: Report, path: Path, kind: str) -> bool:
    """Draw the speedup or floor plot into ``path``; False when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.rows
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    title = report.title()
    if kind == "floor" and report.synthetic:
        plt.close(fig)
        return False
    if kind == "speedup":
        pts = [(r.M, r.speedup, r.noise or 0.0) for r in rows if r.speedup]
        if not pts:
            plt.close(fig)
            return False
        Ms = [p[0] for p in pts]
        ax.fill_between(Ms, [1 - p[2] for p in pts], [1 + p[2] for p in pts], color="tab:gray",
                        alpha=0.3, label="1 ± noise")
        ax.axhline(1.0, color="tab:red", ls="--", lw=1, label="vLLM default")
        ax.plot(Ms, [p[1] for p in pts], "o-", color="tab:blue", label="searcher")
        ax.set_ylabel("speedup over vLLM's default")
    else:
        pts = [(r.M, r.floor_pct, r.floor_us, r.default_us) for r in rows if r.floor_pct]
        if not pts:
            plt.close(fig)
            return False
        Ms = [p[0] for p in pts]
        ax.plot(Ms, [p[1] for p in pts], "o-", color="tab:blue", label="searcher")
        dflt = [(p[0], 100 * p[2] / p[3]) for p in pts if p[3]]
        if dflt:
            ax.plot([d[0] for d in dflt], [d[1] for d in dflt], "s--", color="tab:red",
                    label="vLLM default")
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of the physical floor (higher is better)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(Ms)
    ax.set_xticklabels([str(m) for m in Ms], rotation=45, fontsize=7)
    ax.set_xlabel("batch size M (tokens)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return True


def write_report(report: Report, out_dir: str | Path, command: str | None = None) -> Path:
    """Write ``report-<study>-<device>.md`` and its PNGs into ``out_dir``; returns the
    Markdown file.

    Raises:
        ConfigError: ``out_dir`` is not a directory.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise ConfigError(f"--out {out}: not a directory")
    base = _base_name(report)
    plots: dict[str, str | None] = {}
    for kind in ("speedup", "floor"):
        name = f"{base}-{kind}.png"
        plots[kind] = name if _plot(report, out / name, kind) else None
    if command is None:
        command = report_command(report.spec.name, report.storage_url, report.device,
                                 [g.path for g in report.grids], out)
    path = out / f"{base}.md"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_markdown(report, command, plots) + "\n")
    os.replace(tmp, path)
    return path
