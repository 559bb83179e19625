"""benchmarks/phase_bias.py on a CPU: its synthetic smoke run, its table, its gaps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pb():
    spec = importlib.util.spec_from_file_location("phase_bias", ROOT / "benchmarks" / "phase_bias.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_synthetic_run_writes_the_json_and_its_table(pb, tmp_path, capsys) -> None:
    out = tmp_path / "pb.json"
    assert pb.main(["--synthetic", "--rounds", "2", "--out", str(out),
                    "--case", "h200-e64-n1408:1", "--case", "h200-mixtral-8x7b-tp2-fp8:1024"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["rounds_done"] == 2 and result["gpu"] and result["torch"] and result["triton"]
    assert [(c["study"], c["M"]) for c in result["cases"]] == \
        [("h200-e64-n1408", 1), ("h200-mixtral-8x7b-tp2-fp8", 1024)]
    labels = [c["label"] for c in result["cases"][1]["configs"]]
    assert labels[0] == "default" and "example file" in labels  # the committed H200 file
    n_configs = sum(len(c["configs"]) for c in result["cases"])
    assert len(result["measurements"]) == 2 * n_configs * len(pb.PLAN)

    rows = {(r["study"], r["M"], r["config"], r["method"], r["fidelity"]): r
            for r in pb.table_rows(result)}
    key = ("h200-e64-n1408", 1, "default")
    # In the synthetic model a replay's time is its routing set's: the cycle order's full
    # and long agree exactly, the legacy order's do not (the bias the new order removes).
    assert rows[(*key, "cycle", "full")]["ratio_to_long"] == 1.0
    assert rows[(*key, "legacy", "full")]["ratio_to_long"] != 1.0
    assert rows[(*key, "cycle, gaps", "long")]["ratio_to_long"] == 1.0

    # --table renders the saved file as printed at the end of the run.
    assert pb.main(["--table", str(out)]) == 0
    table = capsys.readouterr().out
    assert table == printed
    assert "SYNTHETIC" in table and "| study | M | config | fidelity | method |" in table
    assert len([line for line in table.splitlines() if line.startswith("| h200")]) == len(rows)


def test_the_table_of_a_small_fixture(pb) -> None:
    result = {"gpu": "NVIDIA H200", "torch": "2.11.0", "triton": "3.6.0", "date": "d",
              "rounds_done": 2, "burst": 20, "gap_s": 0.05, "measurements": [
                  {"study": "s", "M": 2, "config": "default", "method": m, "fidelity": f,
                   "round": r, "median_us": us}
                  for m, f, r, us in [("legacy", "full", 0, 88.0), ("legacy", "full", 1, 90.0),
                                      ("legacy", "long", 0, 104.0), ("legacy", "long", 1, 104.0),
                                      ("cycle", "long", 0, 100.0), ("cycle", "long", 1, 102.0),
                                      ("cycle, gaps", "long", 0, 100.5),
                                      ("cycle, gaps", "long", 1, 100.5)]]
              + [{"study": "s", "M": 2, "config": "x", "method": "cycle", "fidelity": "full",
                  "round": 0, "median_us": None, "status": "compile_error"}]}
    text = pb.render_table(result)
    assert text.startswith("NVIDIA H200, torch 2.11.0, triton 3.6.0")
    assert "| s | 2 | default | full | legacy | 89.0 | 88.0-90.0 | 0.856 |" in text
    assert "| s | 2 | default | long | cycle, gaps | 100.5 | 100.5-100.5 | 0.995 |" in text
    assert "| x |" not in text and "| s | 2 | x |" not in text  # a failed config: no row


def test_gaps_fall_between_bursts_of_timed_replays(pb) -> None:
    class Inner:
        def __init__(self) -> None:
            self.log: list[object] = []

        def refresh(self, M, inputs) -> None:
            self.log.append(inputs)

    inner = Inner()
    gapped = pb.Gapped(inner, "long", sleep=lambda s: inner.log.append(("gap", s)))
    for _ in range(2):  # two measurements: the count restarts with each
        for inputs in pb.replay_inputs(pb.FIDELITIES["long"]):
            gapped.refresh(1, inputs)
    gaps = [i for i, e in enumerate(inner.log) if isinstance(e, tuple)]
    assert len(gaps) == 8
    # In the first measurement: after the 5 warm-ups, before timed replays 20, 40, 60, 80.
    assert [g - k for k, g in enumerate(gaps[:4])] == [25, 45, 65, 85]


@pytest.mark.parametrize("argv, message", [
    (["--table", "missing.json"], "no such file"),
    (["--rounds", "2"], "--out JSON is needed"),
    (["--synthetic", "--out", "x.json", "--rounds", "0"], "must be at least 1"),
    (["--synthetic", "--out", "x.json", "--case", "h200:0"], "STUDY:M"),
    (["--synthetic", "--out", "x.json", "--case", "no-such-study:2"], "no-such-study"),
    (["--synthetic", "--out", "nowhere/x.json"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(pb, argv, message, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("[1]")
    assert pb.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert pb.main(["--table", "bad.json"]) == 2
    assert "not a phase_bias.py result" in capsys.readouterr().err
