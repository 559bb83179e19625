"""Replaying recorded measurements as if they came from the GPU.

A dataset is a CSV file: ``#`` lines first hold metadata (``# key: value``: the kernel,
device, torch and triton versions, fidelity, command), then a header and one row per
(batch size, config); the config's columns are the kernel's ``config_keys``, e.g. for the
fused MoE::

    M,BLOCK_SIZE_M,BLOCK_SIZE_N,BLOCK_SIZE_K,GROUP_SIZE_M,num_warps,num_stages,status,
    median_us,spread_us,short_median_us,short_cost_s,full_cost_s,compile_s

A dataset without a ``# kernel:`` line is the fused MoE's (every dataset recorded before
searcher had a second kernel).

A replayed measurement of a recorded config returns its recorded status; its time is the
recorded median (the short one at the short fidelity, where recorded) times noise drawn
from the recorded spread; its cost is the recorded cost of that fidelity (plus the
compile, the first time a config is seen). A config the dataset lacks comes back as
``invalid`` (free, not counted against a budget) with a reason that says so.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from searcher.errors import SearcherError
from searcher.kernels import DEFAULT_KERNEL, get_kernel
from searcher.measure.measurement import (
    FIDELITIES, Fidelity, Measurement, Status, calls_scale)

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Config, Kernel

__all__ = ["Record", "ReplayBenchmarker", "read_dataset", "write_dataset", "dataset_columns",
           "dataset_kernel", "check_dataset_fits"]

#: The columns after the config's.
_MEASURE_COLUMNS = ("status", "median_us", "spread_us", "short_median_us", "short_cost_s",
                    "full_cost_s", "compile_s")
#: Costs charged where a dataset records none (seconds; measured on an H200, see README).
DEFAULT_COSTS = {"short": 0.06, "full": 0.23, "long": 0.9, "compile": 1.0}


class Record(dict):
    """One dataset row, with typed fields."""


def _num(text: str) -> float:
    return math.inf if text in ("", "inf", "None") else float(text)


def dataset_columns(kernel: Kernel) -> tuple[str, ...]:
    """The header of a dataset of ``kernel``'s configs."""
    return ("M", *kernel.config_keys, *_MEASURE_COLUMNS)


def dataset_kernel(meta: Mapping[str, str], where: str | Path) -> Kernel:
    """The kernel a dataset's metadata names (the fused MoE when it names none).

    Raises:
        SearcherError: the dataset names an unknown kernel (the file named).
    """
    try:
        return get_kernel(meta.get("kernel", DEFAULT_KERNEL))
    except SearcherError as exc:
        raise SearcherError(f"{where}: # kernel: {exc}") from None


def check_dataset_fits(path: str | Path, kernel: Kernel, shape_label: str, space: str,
                       study: str) -> None:
    """Refuse to replay a dataset of another kernel, shape or space than the study's (its
    ``# kernel:``, ``# shape:`` and ``# space:`` lines, each where present), so that no
    study is "tuned" from another problem's measurements.

    Raises:
        SearcherError: the file is unreadable, or one of them differs (both named).
    """
    path = Path(path)
    try:
        with path.open(errors="replace") as f:
            meta = {}
            for line in f:
                if not line.startswith("#"):
                    break
                key, _, value = line[1:].partition(":")
                meta[key.strip()] = value.strip()
    except OSError as exc:
        raise SearcherError(f"{path}: cannot read the dataset ({exc.strerror})") from None
    ours = {"kernel": kernel.name, "shape": shape_label, "space": space}
    if "kernel" not in meta:
        meta["kernel"] = DEFAULT_KERNEL
    for key in ("kernel", "shape", "space"):
        if key in meta and meta[key] != ours[key]:
            raise SearcherError(
                f"--replay {path}: the dataset's {key} is {meta[key]}, study {study}'s is "
                f"{ours[key]}; replay a dataset recorded for this study's {key}")


def read_dataset(path: str | Path) -> tuple[dict[str, str], dict[tuple[int, Config], Record]]:
    """Read a dataset file into (metadata, records by (M, config)); the configs are those
    of the kernel the metadata names (:func:`dataset_kernel`).

    Raises:
        SearcherError: the file is missing, names an unknown kernel, or a row is malformed
            (file and line named).
    """
    path = Path(path)
    meta: dict[str, str] = {}
    rows: dict[tuple[int, Config], Record] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SearcherError(f"{path}: cannot read the dataset ({exc.strerror})") from None
    body = []
    for line in lines:
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            meta[key.strip()] = value.strip()
        elif line.strip():
            body.append(line)
    kernel = dataset_kernel(meta, path)
    reader = csv.DictReader(body)
    missing = [c for c in ("M", *kernel.config_keys, "status", "median_us")
               if c not in (reader.fieldnames or [])]
    if missing:
        raise SearcherError(f"{path}: the header lacks column(s) {', '.join(missing)}")
    for number, row in enumerate(reader, start=2):
        try:
            config = kernel.make_config([int(row[k]) for k in kernel.config_keys])
            record = Record(
                M=int(row["M"]), config=config, status=Status(row["status"]),
                median_us=_num(row["median_us"]), spread_us=_num(row.get("spread_us", "")),
                short_median_us=_num(row.get("short_median_us", "")),
                short_cost_s=_num(row.get("short_cost_s", "")),
                full_cost_s=_num(row.get("full_cost_s", "")),
                compile_s=_num(row.get("compile_s", "")),
            )
        except (KeyError, ValueError, SearcherError) as exc:
            raise SearcherError(f"{path}: data line {number}: {exc}") from None
        rows[(record["M"], config)] = record
    return meta, rows


def write_dataset(path: str | Path, meta: Mapping[str, Any], records: Iterable[Mapping[str, Any]],
                  study: str | None = None) -> None:
    """Write a dataset (metadata lines, header, rows) to ``path``, atomically. The
    records' configs are those of the kernel ``meta`` names (:func:`dataset_kernel`).

    An existing file is replaced only if it is a dataset of the same ``study`` (as
    `searcher grid --dataset` rewrites its own dataset after more measurements); any other
    file is refused, so a dataset never overwrites someone's data.

    Raises:
        SearcherError: the path is a folder, holds another file, or cannot be written
            (nothing is left behind), or ``meta`` names an unknown kernel.
    """
    path = Path(path)
    columns = dataset_columns(dataset_kernel(meta, path))
    if path.is_dir():
        raise SearcherError(f"--dataset {path}: is a directory; name a .csv file")
    if path.exists() and (study is None or f"# study: {study}\n" not in _head(path)):
        raise SearcherError(f"--dataset {path}: exists and is not a dataset of study {study}; "
                            "remove it or name another file")
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", newline="") as f:
            for key, value in meta.items():
                f.write(f"# {key}: {value}\n")
            writer = csv.writer(f)
            writer.writerow(columns)
            for r in records:
                c: Config = r["config"]
                values = [r["M"], *c.astuple(), r["status"].value if isinstance(r["status"], Status)
                          else r["status"]]
                for key in columns[len(values):]:
                    v = r.get(key)
                    values.append("" if v is None or (isinstance(v, float) and math.isinf(v))
                                  else (f"{v:.6g}" if isinstance(v, float) else v))
                writer.writerow(values)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SearcherError(f"--dataset {path}: cannot write ({exc.strerror})") from None


def _head(path: Path, size: int = 4096) -> str:
    try:
        with path.open(errors="replace") as f:
            return f.read(size)
    except OSError:
        return ""


class ReplayBenchmarker:
    """Serves a dataset's measurements, with noise from each config's recorded spread.

    Args:
        path: the dataset file.
        seed: seeds the noise (different seeds give different but equally likely runs).
        noise: False serves the recorded medians exactly.
    """

    def __init__(self, path: str | Path, seed: int = 0, noise: bool = True) -> None:
        self.path = Path(path)
        self.meta, self.records = read_dataset(self.path)
        self.rng = random.Random(seed)
        self.noise = noise
        self.seen: set[tuple[int, Config]] = set()
        self.charged_s = 0.0

    def device_info(self) -> dict[str, Any]:
        info = {k: self.meta[k] for k in ("name", "vllm_name", "torch_version",
                                          "triton_version") if k in self.meta}
        info["backend"] = f"replay of {self.path.name}"
        return info

    def precompile(self, M: int, configs: Iterable[Config]) -> None:
        pass

    def ready(self, M: int, config: Config) -> bool:
        """Always True: nothing compiles ahead here."""
        return True

    def batch_sizes(self) -> list[int]:
        return sorted({M for M, _ in self.records})

    def measure_round(self, M: int, configs: Sequence[Config],
                      fidelity: Fidelity | str) -> list[Measurement]:
        """One measurement per config, one after the other (nothing to interleave here)."""
        return [self.measure(M, config, fidelity) for config in configs]

    def measure(self, M: int, config: Config, fidelity: Fidelity | str) -> Measurement:
        fid = FIDELITIES[fidelity] if isinstance(fidelity, str) else fidelity
        record = self.records.get((M, config))
        device = self.device_info()
        if record is None:
            # Outside what can be replayed: like a constraint violation, it costs nothing
            # and does not count against a budget.
            return Measurement.failed(
                Status.INVALID, f"not in the recorded dataset {self.path.name}",
                fid.name, device=device)
        compile_s = 0.0
        if (M, config) not in self.seen:
            self.seen.add((M, config))
            compile_s = _finite(record["compile_s"], DEFAULT_COSTS["compile"])
        cost_key = "short_cost_s" if fid.name == "short" else "full_cost_s"
        cost = _finite(record[cost_key], DEFAULT_COSTS[fid.name])
        if fid.name == "long":
            cost *= FIDELITIES["long"].replays / FIDELITIES["full"].replays
        cost *= calls_scale(fid)
        cost += compile_s
        self.charged_s += cost
        if record["status"] is not Status.OK:
            return Measurement.failed(record["status"], f"recorded {record['status'].value}",
                                      fid.name, cost_s=cost, device=device)
        median = record["median_us"]
        if fid.name == "short" and math.isfinite(record["short_median_us"]):
            median = record["short_median_us"]
        spread = _finite(record["spread_us"], 0.0)
        # The spread is the IQR of per-replay times: per-replay sigma ~ IQR / 1.35, and the
        # median of n replays has a standard error of about 1.25 sigma / sqrt(n).
        # Fewer layer calls a graph average fewer calls per replay: a wider spread.
        sigma = spread / 1.35 * 1.2533 / math.sqrt(fid.replays * calls_scale(fid))
        value = median + (self.rng.gauss(0.0, sigma) if self.noise and sigma > 0 else 0.0)
        return Measurement(status=Status.OK, fidelity=fid.name, median_us=max(value, 1e-3),
                           mean_us=max(value, 1e-3), spread_us=spread, samples=fid.replays,
                           device=device, cost_s=cost, compile_s=compile_s)


def _finite(value: float, default: float) -> float:
    return value if math.isfinite(value) else default
