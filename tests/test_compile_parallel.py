"""benchmarks/compile_parallel.py on a CPU: its config draw, its GIL bookkeeping, its
table, and (slow) a whole run compiling for sm_90 without a GPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from searcher.study.spec import find_spec, load_spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("compile_parallel",
                                                  ROOT / "benchmarks" / "compile_parallel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configs_are_distinct_valid_seeded_and_not_the_default(cp) -> None:
    spec = load_spec(find_spec("h200-e64-n1408"))
    configs = cp.draw_configs(spec, 64, 24, 0)
    assert configs == cp.draw_configs(spec, 64, 24, 0) != cp.draw_configs(spec, 64, 24, 1)
    assert len({tuple(c.values()) for c in configs}) == 24
    context = spec.kernel.context(spec.shape, 64, spec.gpu_facts)
    kernel_configs = [spec.kernel.config_from_dict(c) for c in configs]
    assert all(spec.space.is_valid(c, context) for c in kernel_configs)
    assert spec.kernel.default_config(spec.shape, 64) not in kernel_configs
    with pytest.raises(SystemExit, match="must be 1 to"):
        cp.draw_configs(spec, 64, 10**6, 0)


def test_held_time_is_counted_inside_a_window(cp) -> None:
    held = [(0.0, 1.0), (2.0, 3.0), (5.0, 6.0)]
    assert cp.covered_s(held, 0.5, 5.5) == pytest.approx(2.0)
    assert cp.covered_s(held, 3.0, 5.0) == 0.0
    assert cp.covered_s([], 0.0, 1.0) == 0.0


def _mode(name: str, threads: int, processes: int, wall_s: float) -> dict:
    return {"mode": name, "threads": threads, "processes": processes, "wall_s": wall_s,
            "configs_per_s": 24 / wall_s, "cpu_s": 20.0, "children_cpu_s": 5.0,
            "gil_busy": 0.3, "late": 0.25, "baseline_gil_busy": 0.01, "baseline_late": 0.02,
            "kernels_compiled": 48, "disk_hits": 0,
            "stage_s": {"cubin": [4.8, 0.1], "make_ir": [0.96, 0.9]}}


def test_the_tables_give_speedups_and_stages_in_pipeline_order(cp) -> None:
    processes = _mode("12 processes", 1, 12, 3.0)
    # Its workers' probes also wait for cores: not read for the GIL share of a stage.
    processes["stage_s"] = {"cubin": [4.8, 4.8], "make_ir": [0.96, 0.0]}
    table = cp.render([_mode("1 thread", 1, 1, 24.0), _mode("12 threads", 12, 1, 8.0),
                       processes])
    rows = table.splitlines()
    assert rows[2].startswith("| 1 thread | 1.00 | 24.0 | 1.00x |")
    assert rows[3].startswith("| 12 threads | 3.00 | 8.0 | 3.00x |")
    assert rows[4].startswith("| 12 processes | 8.00 | 3.0 | 8.00x |")
    stages = [r.split(" | ")[0] for r in rows[8:]]
    assert stages == ["| make_ir", "| cubin"]
    assert "| 94% | 20.0 | 20.0 | 20.0 |" in rows[8]
    assert "| 2% | 100.0 | 100.0 | 100.0 |" in rows[9]


@pytest.mark.slow
def test_a_cpu_target_run_compiles_in_every_mode(tmp_path) -> None:
    out = tmp_path / "cp.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compile_parallel.py"), "--cpu-target",
         "--configs", "2", "--threads", "1,2", "--processes", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["triton"] and result["torch"] and result["command"]
    assert [m["mode"] for m in result["modes"]] == ["1 thread", "2 threads", "2 processes"]
    for mode in result["modes"]:
        assert not mode["failures"] and mode["kernels_compiled"] >= 2
        assert mode["wall_s"] > 0 and 0.0 <= mode["gil_busy"] <= 1.0
    assert "| make_ir |" in done.stdout
