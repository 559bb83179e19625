"""searcher compare on a CPU: grid and search from the synthetic benchmarker, re-measured
by replay."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from searcher.cli import main
from searcher.results.compare import compare
from searcher.kernels.fused_moe.config import KernelConfig
from searcher.kernels.fused_moe.default import vllm_default_config
from searcher.results.export import write_config_file
from searcher.tune.grid import run_grid, write_grid_dataset
from searcher.measure.replay import ReplayBenchmarker
from searcher.tune.search import SearchOptions, run_search
from searcher.study.spec import load_spec
from searcher.measure.synthetic import SyntheticBenchmarker
from searcher.kernels.fused_moe import FUSED_MOE

ROOT = Path(__file__).resolve().parent.parent
H100 = "NVIDIA_H100_80GB_HBM3"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    url = f"sqlite:///{tmp / 'c.db'}"
    bench = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, noise=0.0)
    run_grid(spec, bench, H100, url, batch_sizes=[64, 1024])
    run_search(spec, SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=3), SearchOptions(
        device=H100, storage_url=url, batch_sizes=[64, 1024], trials_per_m=25))
    dataset = write_grid_dataset(spec, url, H100, str(tmp / "grid.csv"))
    return spec, url, dataset, tmp


def test_rows_against_the_grid(stored):
    spec, url, _, _ = stored
    bench = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100)
    rows = compare(spec, url, H100, batch_sizes=[64, 1024])
    for row in rows:
        valid = [c for c in spec.space.enumerate({"E": 64, "N": 1408, "hidden": 2048, "top_k": 6,
                                                  "dtype_bytes": 2, "M": row.M,
                                                  "smem_per_block": 232448, "sm_count": 132})]
        ok = [c for c in valid if bench.measure(row.M, c, "full").ok]
        # A noiseless grid: its best is the landscape's best among configs that run.
        assert row.grid_best_us == pytest.approx(min(bench.true_time(row.M, c) for c in ok))
        assert row.grid_trials == row.grid_size == 432
        assert row.search_trials == 25
        assert row.gap_pct == pytest.approx(100 * (row.search_best_us / row.grid_best_us - 1))
        assert row.gap_pct >= -1e-9  # paired times: nothing beats the grid's best
        curve = row.curves["search"]
        if row.trials_to_1pct is not None:
            assert curve[row.trials_to_1pct - 1] <= 1.01 * row.grid_best_us
            assert row.trials_to_1pct == 1 or curve[row.trials_to_1pct - 2] > 1.01 * row.grid_best_us
            assert row.trials_to_3pct <= row.trials_to_1pct
        default = vllm_default_config(row.M, 64)
        assert row.default_us == pytest.approx(bench.true_time(row.M, default))
        assert len(row.curves["grid"]) == 20


def test_against_a_file_and_replayed_remeasurement(stored):
    spec, url, dataset, tmp = stored
    cfg = KernelConfig(32, 64, 64, 1, 4, 3)
    f = write_config_file(tmp / "theirs.json", FUSED_MOE, "3.0.0", {1: cfg, 2048: KernelConfig(128, 128, 64, 1, 8, 3)})
    from searcher.kernels.fused_moe.vllm_file import read_config_file

    _, against = read_config_file(f)
    rows = compare(spec, url, H100, against=against, bencher=ReplayBenchmarker(dataset, noise=False),
                   rounds=2, batch_sizes=[64])
    row = rows[0]
    assert row.against == cfg  # nearest key to 64 is 1
    assert set(row.remeasured) == {"grid best", "search", "vLLM default", "file"}
    assert row.remeasured["grid best"] == pytest.approx(row.grid_best_us, rel=1e-4)


def test_cli_writes_csv_and_pngs(stored, capsys):
    spec, url, _, tmp = stored
    out = tmp / "out"
    out.mkdir()
    assert main(["compare", "--study", "h100-e64-n1408", "--storage", url, "--batch-sizes",
                 "64,1024", "--out", str(out), "--no-remeasure", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["M"] for r in data["rows"]] == [64, 1024]
    with open(data["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["M"]) for r in rows] == [64, 1024]
    for png in data["png"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data["png"]) == 2


def test_cli_makes_its_out_folder_and_defaults_to_compare_study(stored, capsys, monkeypatch):
    spec, url, _, tmp = stored
    monkeypatch.chdir(tmp)
    assert main(["compare", "--study", "h100-e64-n1408", "--storage", url, "--batch-sizes",
                 "64", "--out", "made", "--no-remeasure", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["csv"].startswith("made/")
    assert main(["compare", "--study", "h100-e64-n1408", "--storage", url, "--batch-sizes",
                 "64", "--no-remeasure", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["csv"].startswith("compare-h100-e64-n1408/")


def test_cli_without_a_grid_says_so_and_leaves_out_the_grid_columns(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    url = f"sqlite:///{tmp_path / 'search-only.db'}"
    run_search(spec, SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=3),
               SearchOptions(device=H100, storage_url=url, batch_sizes=[64], trials_per_m=3))
    assert main(["compare", "--study", "h100-e64-n1408", "--storage", url, "--batch-sizes",
                 "64", "--no-remeasure"]) == 0
    captured = capsys.readouterr()
    assert "no grid recorded for this study (`searcher grid --study h100-e64-n1408" in \
        captured.err
    assert "grid best us" not in captured.out and "0/0" not in captured.out
    assert "search us" in captured.out


def test_file_time_without_a_grid_comes_from_the_finalists(tmp_path):
    """A study run --against a file and compared against it without a grid: the file's
    column shows the time the finalists measured for the file's config."""
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    url = f"sqlite:///{tmp_path / 'a.db'}"
    theirs = KernelConfig(64, 64, 64, 8, 4, 3)
    run_search(spec, SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=1), SearchOptions(
        device=H100, storage_url=url, batch_sizes=[64], trials_per_m=4, warm_start=False,
        against={64: theirs}))
    (row,) = compare(spec, url, H100, against={1: theirs}, batch_sizes=[64])
    assert row.grid_best_us is None and row.against == theirs
    from searcher.store.record import FINAL
    import optuna

    (name,) = [s.study_name for s in optuna.get_all_study_summaries(url) if s.study_name.endswith(":M=64")]
    final = optuna.load_study(study_name=name, storage=url).user_attrs[FINAL]
    (entry,) = [e for e in final["entries"] if e["against"]]
    assert row.against_us == pytest.approx(entry["median_us"])


def test_synthetic_times_say_so_in_the_table_csv_and_plots(stored, capsys, monkeypatch):
    """Provenance (issue #12): a comparison of synthetic studies names its source in the
    table's title, the CSV and every plot's title."""
    spec, url, _, tmp = stored
    titles = []
    import searcher.results.compare as cmp

    real = cmp.plot_best_so_far
    monkeypatch.setattr(cmp, "plot_best_so_far",
                        lambda row, path, title: titles.append(title) or real(row, path, title))
    out = tmp / "synthetic-out"
    assert main(["compare", "--study", "h100-e64-n1408", "--storage", url, "--batch-sizes",
                 "64", "--out", str(out), "--no-remeasure"]) == 0
    text = capsys.readouterr().out
    assert "[synthetic: not GPU measurements]" in " ".join(text.split())
    assert titles and all("[synthetic: not GPU measurements]" in t for t in titles)
    (csv_path,) = out.glob("*.csv")
    assert [r["source"] for r in csv.DictReader(csv_path.open())] == ["synthetic"]
