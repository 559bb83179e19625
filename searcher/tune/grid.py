"""The exhaustive grid: every valid config of a study's space at every batch size, timed
with the same harness and method as the search, stored in the same storage under its own
study names (kind ``grid``), resumable after a kill.

Each config is timed at the short fidelity and then in full (no pruning), so a recorded
grid can later be replayed faithfully to any search setup, pruning included. Configs are
visited in a seeded random order: a grid cut short is a uniform random sample, and the
visiting order doubles as "the grid in random order" for comparisons.

A measured config is stored as one finished trial (value = full median, status and reason
in user attributes); nothing is left RUNNING, so a kill loses at most the config in flight.

Workers sharing a storage split each batch size's visiting order by position (worker i of n
measures positions i, i+n, ...), so no config is measured twice, and they start at
different batch sizes so they do not all compile for the same one at once.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from searcher.measure.measurement import Measurement
from searcher.tune.stop import Stopped, stop_requested
from searcher.store import record
from searcher.store.record import GridSummary, add_wall_time, config_of, summarize_grid
from searcher.store.storage import open_storage, open_study

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.measure.harness import Benchmarker
    from searcher.kernels.base import Config, Kernel
    from searcher.study.spec import StudySpec

__all__ = ["run_grid", "grid_order", "grid_records", "write_grid_dataset",
           "stored_grid_summaries", "PRECOMPILE_AHEAD"]

#: Configs handed to the compile threads ahead of the one being measured.
PRECOMPILE_AHEAD = 12


def grid_order(spec: StudySpec, M: int) -> list[Config]:
    """The valid configs of M in the grid's seeded random visiting order."""
    configs = spec.space.enumerate(spec.kernel.context(spec.shape, M, spec.gpu_facts))
    random.Random(f"{spec.seed}:{M}").shuffle(configs)
    return configs


def _measured(kernel: Kernel, study: optuna.Study) -> dict[Config, Any]:
    out = {}
    for t in study.get_trials(deepcopy=False):
        config = config_of(kernel, t)
        if config is not None and t.user_attrs.get(record.STATUS):
            out[config] = t
    return out


def _store(study: optuna.Study, spec: StudySpec, config: Config, order: int,
           short: Measurement, full: Measurement | None) -> None:
    import optuna
    from optuna.trial import TrialState

    attrs: dict[str, Any] = {record.CONFIG: config.to_dict(), **record.config_attrs(config),
                             record.ORDER: order, record.SHORT: short.brief()}
    cost = short.cost_s
    if full is not None:
        attrs[record.FULL] = full.brief()
        cost += full.cost_s
    final = full if full is not None else short
    attrs[record.STATUS] = final.status.value
    attrs[record.COST_S] = cost
    if not final.ok:
        attrs[record.REASON] = final.reason
    trial = optuna.trial.create_trial(
        params=spec.space.to_params(config),
        distributions=spec.space.distributions(),
        value=final.median_us if final.ok else None,
        state=TrialState.COMPLETE if final.ok else TrialState.FAIL,
        user_attrs=attrs,
    )
    study.add_trial(trial)


def run_grid(
    spec: StudySpec,
    bencher: Benchmarker,
    device: str,
    storage_url: str,
    batch_sizes: Sequence[int] | None = None,
    limit_per_m: int | None = None,
    time_limit_s: float | None = None,
    progress: Callable[[GridSummary], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    worker: int = 0,
    workers: int = 1,
) -> list[GridSummary]:
    """Measure (or resume measuring) the grid of every batch size.

    Args:
        limit_per_m: measure only the first this many configs of each batch size's
            visiting order (a random sample of the grid); None measures all of them.
        time_limit_s: stop the whole run after this long (rerun to continue).
        progress: called after every measured config.
        worker, workers: this process's share when several share the storage.
    """
    from optuna.samplers import RandomSampler

    from searcher.strategies.pruners import make_pruner

    from searcher.study.spec import check_configs_exist

    sizes = list(batch_sizes or spec.batch_sizes)
    check_configs_exist(spec, sizes)
    storage = open_storage(storage_url)
    deadline = clock() + time_limit_s if time_limit_s else None
    k = (worker * len(sizes)) // workers
    summaries = []
    for M in sizes[k:] + sizes[:k]:
        study = open_study(storage, "grid", spec.shape, device, M, spec.space,
                           RandomSampler(seed=spec.seed), make_pruner("none"),
                           bencher.device_info(), storage_url)
        order = grid_order(spec, M)
        measured = _measured(spec.kernel, study)
        sample = order if limit_per_m is None else order[:limit_per_m]
        todo = [(i, c) for i, c in enumerate(sample) if i % workers == worker and c not in measured]
        started = clock()
        try:
            for k, (i, config) in enumerate(todo):
                if stop_requested():
                    raise Stopped
                if deadline is not None and clock() >= deadline:
                    break
                if k % PRECOMPILE_AHEAD == 0:
                    bencher.precompile(M, [c for _, c in todo[k: k + 2 * PRECOMPILE_AHEAD]])
                short = bencher.measure(M, config, "short")
                full = bencher.measure(M, config, "full") if short.ok else None
                _store(study, spec, config, i, short, full)
                if progress is not None:
                    progress(summarize_grid(spec.kernel, study, M, len(order)))
        finally:
            add_wall_time(study, clock() - started)
        summaries.append(summarize_grid(spec.kernel, study, M, len(order)))
        if deadline is not None and clock() >= deadline:
            break
    return summaries


def stored_grid_summaries(spec: StudySpec, storage_url: str, device: str,
                          batch_sizes: Sequence[int] | None = None) -> list[GridSummary]:
    """The summary of each batch size's stored grid (batch sizes with none are left out)."""
    from searcher.store.storage import load_stored_study

    storage = open_storage(storage_url, read_only=True)
    out = []
    for M in batch_sizes or spec.batch_sizes:
        study = load_stored_study(storage, "grid", spec, device, M)
        if study is not None:
            out.append(summarize_grid(spec.kernel, study, M, len(grid_order(spec, M))))
    return out


def grid_records(kernel: Kernel, study: optuna.Study, M: int) -> list[dict[str, Any]]:
    """The stored grid of one batch size as dataset records (see :mod:`searcher.measure.replay`)."""
    from searcher.measure.measurement import Status

    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.user_attrs.get(record.ORDER, 0)):
        if not t.user_attrs.get(record.STATUS):
            continue
        short = t.user_attrs.get(record.SHORT) or {}
        full = t.user_attrs.get(record.FULL) or {}
        rows.append({
            "M": M, "config": config_of(kernel, t),
            "status": Status(t.user_attrs[record.STATUS]),
            "median_us": full.get("median_us"), "spread_us": full.get("spread_us"),
            "short_median_us": short.get("median_us"),
            "short_cost_s": (short.get("cost_s") or 0.0) - (short.get("compile_s") or 0.0),
            "full_cost_s": full.get("cost_s"),
            "compile_s": short.get("compile_s"),
        })
    return rows


def write_grid_dataset(spec: StudySpec, storage_url: str, device: str, path: str,
                       batch_sizes: Sequence[int] | None = None) -> str:
    """Write every stored grid measurement of ``spec`` on ``device`` as a replay dataset."""
    from searcher.errors import StorageError
    from searcher.measure.replay import write_dataset
    from searcher.store.storage import load_stored_study

    storage = open_storage(storage_url, read_only=True)
    records: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    sizes = {}
    for M in batch_sizes or spec.batch_sizes:
        study = load_stored_study(storage, "grid", spec, device, M)
        if study is None:
            continue
        info = info or dict(study.user_attrs.get(record.DEVICE_INFO) or {})
        rows = grid_records(spec.kernel, study, M)
        sizes[M] = f"{len(rows)}/{len(grid_order(spec, M))}"
        records.extend(rows)
    if not records:
        raise StorageError(f"{storage_url} holds no grid of study {spec.name} on {device}; "
                           f"run `{spec.command('grid', storage_url)}` first")
    meta = {k: info[k] for k in ("name", "vllm_name", "torch_version", "triton_version",
                                 "driver_version", "backend") if k in info}
    meta.update({
        "study": spec.name, "kernel": spec.kernel.name, "shape": spec.shape.label(),
        "space": spec.space.name,
        "space_fingerprint": spec.space.fingerprint(),
        "fidelity": "short then full per config (see searcher.measure.measurement.FIDELITIES)",
        "measured": ", ".join(f"M={M}: {v}" for M, v in sizes.items()),
        "source": f"searcher grid --study {spec.name} (storage {storage_url})",
    })
    write_dataset(path, meta, records, study=spec.name)
    return path
