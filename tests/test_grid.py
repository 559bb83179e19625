"""searcher grid on a CPU with the synthetic benchmarker."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from searcher.tune.grid import grid_order, run_grid, write_grid_dataset
from searcher.measure.measurement import Status
from searcher.measure.replay import ReplayBenchmarker, read_dataset
from searcher.study.space import load_space
from searcher.study.spec import load_spec
from searcher.store.storage import open_storage, study_name
from searcher.measure.synthetic import SyntheticBenchmarker
from searcher.kernels.fused_moe import FUSED_MOE

ROOT = Path(__file__).resolve().parent.parent
H100 = "NVIDIA_H100_80GB_HBM3"


@pytest.fixture
def spec():
    return load_spec(ROOT / "studies" / "h100-e64-n1408.toml")


def test_order_is_a_seeded_permutation_of_the_valid_configs(spec):
    order = grid_order(spec, 64)
    assert len(order) == 432 == len(set(order))
    assert order == grid_order(spec, 64)
    assert order != grid_order(spec, 128)


def test_grid_resumes_and_never_measures_a_config_twice(spec, tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    bench = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100)
    first = run_grid(spec, bench, H100, url, batch_sizes=[64], limit_per_m=25)[0]
    assert first["measured"] == 25
    second = run_grid(spec, bench, H100, url, batch_sizes=[64], limit_per_m=60)[0]
    assert second["measured"] == 60
    measured = [c for M, c, fid in bench.calls if fid == "short"]
    assert len(measured) == len(set(measured)) == 60
    # Visited in the grid's order: the first 60 of the permutation.
    assert set(measured) == set(grid_order(spec, 64)[:60])
    study = optuna.load_study(study_name=study_name(FUSED_MOE, "grid", spec.shape, H100, 64),
                              storage=open_storage(url))
    assert not [t for t in study.trials if not t.state.is_finished()]


def test_failures_are_stored_and_the_dataset_round_trips(spec, tmp_path):
    import dataclasses

    wide = dataclasses.replace(spec, space=load_space(ROOT / "spaces" / "vllm-1920.toml"))
    url = f"sqlite:///{tmp_path / 'g.db'}"
    bench = SyntheticBenchmarker(FUSED_MOE, wide.shape, device=H100)
    g = run_grid(wide, bench, H100, url, batch_sizes=[256], limit_per_m=120)[0]
    assert g["failed"] > 0 and g["ok"] + g["failed"] == 120
    path = write_grid_dataset(wide, url, H100, str(tmp_path / "d.csv"))
    meta, records = read_dataset(path)
    assert meta["vllm_name"] == H100 and meta["space"] == "vllm-1920"
    assert len(records) == 120
    failed = [r for r in records.values() if r["status"] is Status.OUT_OF_RESOURCES]
    assert len(failed) == g["failed"]
    replay = ReplayBenchmarker(path, noise=False)
    ok = next(r for r in records.values() if r["status"] is Status.OK)
    assert replay.measure(256, ok["config"], "full").median_us == pytest.approx(ok["median_us"], rel=1e-5)
    bad = replay.measure(256, failed[0]["config"], "short")
    assert bad.status is Status.OUT_OF_RESOURCES


def test_grid_time_limit_stops_and_a_rerun_continues(spec, tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    ticks = iter(range(10_000))
    clock = lambda: float(next(ticks))  # noqa: E731 - one second per call
    bench = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100)
    g = run_grid(spec, bench, H100, url, batch_sizes=[8, 16], time_limit_s=30, clock=clock)
    assert len(g) == 1 and 0 < g[0]["measured"] < 432
    done = g[0]["measured"]
    g2 = run_grid(spec, bench, H100, url, batch_sizes=[8], limit_per_m=done + 5)[0]
    assert g2["measured"] == done + 5


def test_export_grid_writes_each_batch_sizes_fastest_measured_config(spec, tmp_path):
    from searcher.errors import ExportError
    from searcher.kernels.fused_moe.vllm_file import read_config_file
    from searcher.tune.grid import stored_grid_summaries
    from searcher.results.winners import export_study

    url = f"sqlite:///{tmp_path / 'g.db'}"
    bench = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100)
    run_grid(spec, bench, H100, url, batch_sizes=[16, 256], limit_per_m=30)
    path = export_study(spec, url, H100, tmp_path, batch_sizes=[16, 256], kind="grid",
                        allow_unmeasured=True).path
    _, configs = read_config_file(path)
    configs = {M: configs[M] for M in (16, 256)}
    best = {g["M"]: g["best_config"] for g in stored_grid_summaries(spec, url, H100, [16, 256])}
    assert configs == best
    # The search studies of this storage are empty: exporting them fails, naming the command.
    with pytest.raises(ExportError, match="searcher run --study"):
        export_study(spec, url, H100, tmp_path, batch_sizes=[16], allow_unmeasured=True)


def test_dataset_never_overwrites_another_file_and_leaves_nothing_behind(spec, tmp_path):
    from searcher.errors import SearcherError

    url = f"sqlite:///{tmp_path / 'g.db'}"
    run_grid(spec, SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100), H100, url,
             batch_sizes=[16], limit_per_m=5)
    mine = tmp_path / "mine.csv"
    mine.write_text("M,some,other,data\n1,2,3,4\n")
    with pytest.raises(SearcherError, match="exists and is not a dataset of study"):
        write_grid_dataset(spec, url, H100, str(mine), batch_sizes=[16])
    assert mine.read_text() == "M,some,other,data\n1,2,3,4\n"
    with pytest.raises(SearcherError, match="is a directory"):
        write_grid_dataset(spec, url, H100, str(tmp_path), batch_sizes=[16])
    # Its own dataset is rewritten (after more measurements), atomically.
    path = tmp_path / "d.csv"
    write_grid_dataset(spec, url, H100, str(path), batch_sizes=[16])
    run_grid(spec, SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100), H100, url,
             batch_sizes=[16], limit_per_m=8)
    write_grid_dataset(spec, url, H100, str(path), batch_sizes=[16])
    assert len(read_dataset(path)[1]) == 8
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []
