"""The CLI in-process: exit codes and one-line messages for bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from searcher.cli import main
from searcher.study.spec import load_spec
from helpers import gunzipped

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_bench_without_a_gpu_says_so_in_one_line(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "-M", "64", "--default"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a CUDA GPU" in err


def test_run_without_a_gpu_names_the_replay_option(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "--study", "h100-e64-n1408"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "--replay" in err and "--synthetic" in err


def test_unknown_study_lists_the_available_ones(capsys):
    assert main(["run", "--study", "h100-e64-n1048", "--synthetic"]) == 2
    err = capsys.readouterr().err
    assert "h100-e64-n1048" in err and "h100-e64-n1408" in err


def test_study_for_another_gpu_is_refused_without_the_flag(capsys, in_tmp):
    from searcher.measure.replay import write_dataset

    data = in_tmp / "h200.csv"
    write_dataset(data, {"name": "NVIDIA H200", "vllm_name": "NVIDIA_H200",
                         "triton_version": "3.6.0"}, [])
    assert main(["run", "--study", "h100-e64-n1408", "--replay", str(data)]) == 2
    err = capsys.readouterr().err
    assert "NVIDIA_H100_80GB_HBM3" in err and "NVIDIA_H200" in err and "--allow-other-gpu" in err


def test_replay_of_another_shape_is_refused(capsys, in_tmp):
    """Issue #12: an E=64 dataset "tuned" an E=60 study; the # shape: line was not read."""
    data = ROOT / "benchmarks" / "data" / "grid-h200-e64-n1408-vllm432.csv"
    other = in_tmp / "e60.toml"
    other.write_text((ROOT / "studies" / "h200-e64-n1408.toml").read_text()
                     .replace("E = 64", "E = 60").replace("top_k = 6", "top_k = 4"))
    assert main(["run", "--study", str(other), "--replay", str(data), "--no-live"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert ("the dataset's shape is E=64,N=1408,H=2048,top_k=6,bf16, study e60's is "
            "E=60,N=1408,H=2048,top_k=4,bf16") in err[0]
    assert not (in_tmp / "searcher.db").exists()
    # Another space is refused alike; the study's own space and shape replay.
    ext = ROOT / "studies" / "h200-e64-n1408-extended.toml"
    assert main(["run", "--study", str(ext), "--replay", str(data), "--no-live"]) == 2
    assert "the dataset's space is vllm-432" in capsys.readouterr().err


def test_malformed_study_file_is_named(capsys, in_tmp):
    bad = in_tmp / "bad.toml"
    bad.write_text("schema = 1\nkernel = 'fused_moe'\n[shape\nE = 1\n")
    assert main(["status", "--study", str(bad)]) == 2
    assert "bad.toml" in capsys.readouterr().err


def test_run_status_export_round_trip_and_refusals(capsys, in_tmp):
    args = ["--study", "h100-e64-n1408", "--batch-sizes", "1,64"]
    assert main(["run", *args, "--synthetic", "--trials-per-m", "6", "--no-live", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["M"] for r in out["batch_sizes"]] == [1, 64]
    assert all(r["trials"] == 6 for r in out["batch_sizes"])
    assert (in_tmp / "searcher.db").exists(), "the default storage is ./searcher.db"

    assert main(["status", *args, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [r["trials"] for r in status["batch_sizes"]] == [6, 6]
    # The Markdown table marks vLLM's default as status does, and says no GPU measured.
    assert main(["status", *args, "--markdown"]) == 0
    text = capsys.readouterr().out
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    for row in status["batch_sizes"]:
        line = next(x for x in text.splitlines() if x.startswith(f"| {row['M']} |"))
        is_default = (spec.kernel.config_from_dict(row["winner"])
                      == spec.kernel.default_config(spec.shape, row["M"]))
        assert ("(default)" in line) == is_default, line
    assert "| wall s |" in text and "GPU s" not in text
    assert "not measured on a GPU (synthetic): the search loop's time" in text
    # Another study, or another device, than the storage holds: one line, exit 2.
    assert main(["status", "--study", "h200-e64-n1408"]) == 2
    captured = capsys.readouterr()
    assert not captured.out
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("searcher status: sqlite:///searcher.db holds no study of h200-e64-n1408")
    assert main(["status", *args, "--device", "NVIDIA_H200"]) == 2
    assert "it has some for: NVIDIA_H100_80GB_HBM3; pass --device" in capsys.readouterr().err
    # A study of the same shape and GPU but another space has the same study names: its
    # commands refuse these results (another search's), as run refuses to resume them.
    extended = ["--study", "h100-e64-n1408-extended", "--batch-sizes", "1,64",
                "--storage", "sqlite:///searcher.db"]
    for command in (["status"], ["export", "--allow-unmeasured", "--out", str(in_tmp)],
                    ["report", "--out", str(in_tmp / "report")], ["decide", "--stored"],
                    ["compare", "--out", str(in_tmp / "cmp")]):
        assert main([*command, *extended]) == 2, command
        captured = capsys.readouterr()
        *notes, line = captured.err.strip().splitlines()
        assert all(n.startswith("no CUDA GPU") for n in notes), notes  # compare's note
        assert "searched space 'vllm-432', but study h100-e64-n1408-extended searches " \
               "space 'extended'" in line, (command, line)
        assert not captured.out, command
    assert not list(in_tmp.glob("E=*.json")) and not (in_tmp / "report").exists()

    # Synthetic results are no vLLM file unless asked for by name.
    assert main(["export", *args, "--out", str(in_tmp)]) == 2
    err = capsys.readouterr().err
    assert "not GPU measurements (synthetic at M = 1, 64)" in err and "--allow-unmeasured" in err
    assert not list(in_tmp.glob("E=*.json"))
    args += ["--allow-unmeasured"]
    assert main(["export", *args, "--out", str(in_tmp)]) == 0
    captured = capsys.readouterr()
    path = Path(captured.out.strip())
    assert ("batch sizes not tuned, written with vLLM's default config: 2, 4, 8, 16, 24, 32, "
            "48, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096") in captured.err
    assert path.name == "E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json"
    before = path.read_bytes()
    assert main(["export", *args, "--out", str(in_tmp)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert path.read_bytes() == before
    # Export of a batch size never run is refused and writes nothing.
    assert main(["export", "--study", "h100-e64-n1408", "--out", str(in_tmp), "--overwrite",
                 "--allow-unmeasured"]) == 2
    assert "no completed trial" in capsys.readouterr().err
    assert path.read_bytes() == before
    # compare against that file names it; its seconds are the loop's (no GPU held).
    assert main(["compare", "--study", "h100-e64-n1408", "--batch-sizes", "1,64",
                 "--against", str(path), "--out", str(in_tmp / "cmp")]) == 0
    out = capsys.readouterr().out
    assert f"search against the default and {path.name}" in out
    assert "search wall s" in out and "GPU s" not in out


def test_bad_batch_size_option(capsys):
    assert main(["status", "--study", "h100-e64-n1408", "--batch-sizes", "3"]) == 2
    assert "not batch sizes of study h100-e64-n1408" in capsys.readouterr().err


def test_list_shows_studies_and_spaces(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"a100-e64-n1408", "h100-e64-n1408", "h200-e64-n1408"} <= {s["name"] for s in data["studies"]}
    sizes = {s["name"]: s["raw_size"] for s in data["spaces"]}
    assert sizes["vllm-432"] == 432 and sizes["vllm-1920"] == 1920


def test_messages_print_user_text_as_is_brackets_included(capsys, in_tmp):
    study = in_tmp / "h100[old].toml"
    assert main(["run", "--study", str(study), "--synthetic"]) == 2
    err = capsys.readouterr().err
    assert "h100[old].toml: no such study file" in err
    # A closing tag in a path once crashed the error printer itself.
    db = ROOT / "examples" / "h200-e64-n1408-throughput" / "searcher.db"
    assert main(["compare", "--study", "h200-e64-n1408", "--storage", f"sqlite:///{db}",
                 "--no-remeasure", "--out", "out[/x]"]) == 2
    assert "--out out[/x]: folder out[ does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "--time-limit", "nan"], "--time-limit nan: must be a positive number"),
    (["run", "--time-limit", "0"], "--time-limit 0: must be a positive number"),
    (["grid", "--time-limit", "-5"], "--time-limit -5: must be a positive number"),
    (["grid", "--limit-per-m", "0"], "--limit-per-m 0: must be at least 1"),
])
def test_limits_must_be_positive(argv, message, capsys, in_tmp):
    assert main([*argv, "--study", "h100-e64-n1408", "--synthetic",
                 "--storage", f"sqlite:///{in_tmp / 's.db'}"]) == 2
    assert message in capsys.readouterr().err
    assert not (in_tmp / "s.db").exists(), "a refused run must not create its storage"


def test_run_refuses_to_resume_a_study_of_another_triton_version(capsys, in_tmp):
    import optuna

    from searcher.study.spec import find_spec, load_spec
    from searcher.store.storage import open_storage, study_name

    args = ["--study", "h100-e64-n1408", "--batch-sizes", "64", "--trials-per-m", "2",
            "--no-live", "--synthetic"]
    assert main(["run", *args]) == 0
    spec = load_spec(find_spec("h100-e64-n1408"))
    study = optuna.load_study(study_name=study_name(spec.kernel, "search", spec.shape,
                                                    spec.gpu, 64),
                              storage=open_storage("sqlite:///searcher.db"))
    study.set_user_attr("triton_version", "3.6.0")
    capsys.readouterr()
    assert main(["run", *args]) == 2
    refusal = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress line
    assert refusal.startswith("searcher run: storage sqlite:///searcher.db: study ")
    assert "made with triton_version '3.6.0', but this run measures with triton_version " \
        "'synthetic'" in refusal


@pytest.mark.parametrize("command", [["status", "--json"], ["export", "--out", "."],
                                     ["report", "--out", "."],
                                     ["compare", "--no-remeasure", "--out", "."]])
def test_committed_storages_without_backend_and_triton_version_are_read(capsys, command):
    # examples/*/searcher.db were stored before the backend and the Triton version were
    # part of a study's identity: reading them must not refuse (or change) them.
    db = ROOT / "examples" / "h100-e64-n1408-extended" / "searcher.db"
    before = db.read_bytes()
    assert main([command[0], "--study", "h100-e64-n1408-extended", "--storage",
                 f"sqlite:///{db}", "--batch-sizes", "1,4096", *command[1:]]) == 0
    assert db.read_bytes() == before


def test_version_names_searcher_torch_triton_and_optuna(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("searcher 0.", "torch ", "triton ", "optuna "):
        assert name in out


def test_batch_sizes_with_an_empty_or_repeated_item_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--study", "h100-e64-n1408", "--batch-sizes", "1,,2"])
    assert exit_.value.code == 2
    assert "'1,,2' has an empty item" in capsys.readouterr().err
    # A batch size named twice is a typo, refused like one.
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--study", "h100-e64-n1408", "--batch-sizes", "64,1,64"])
    assert exit_.value.code == 2
    assert "'64,1,64' gives 64 more than once" in capsys.readouterr().err


def test_a_space_without_a_valid_config_ends_run_and_grid(capsys, in_tmp):
    study = (ROOT / "studies" / "h100-e64-n1408.toml").read_text()
    (in_tmp / "none.toml").write_text(
        "schema = 1\n[params]\nBLOCK_SIZE_M = [16]\nBLOCK_SIZE_N = [64]\nBLOCK_SIZE_K = [64]\n"
        "GROUP_SIZE_M = [1]\nnum_warps = [4]\nnum_stages = [3]\n"
        "[constraints]\nnever = \"M < 0\"\n")
    (in_tmp / "s.toml").write_text(study.replace('space = "vllm-432"', 'space = "none.toml"'))
    for command in (["run", "--no-live"], ["grid"]):
        assert main([*command, "--study", "s.toml", "--synthetic", "--storage",
                     "sqlite:///s.db", "--batch-sizes", "64"]) == 2
        err = capsys.readouterr().err
        assert "none.toml: no config is valid for M=64 of shape E=64,N=1408" in err
    assert not (in_tmp / "s.db").exists(), "nothing is stored for a space without configs"


def test_export_suggestion_keeps_the_storage_used(capsys, in_tmp):
    import optuna

    optuna.create_study(storage="sqlite:///other.db", study_name="unrelated")
    assert main(["export", "--study", "h100-e64-n1408", "--storage", "sqlite:///other.db"]) == 2
    assert "`searcher run --study h100-e64-n1408 --storage sqlite:///other.db`" in \
        capsys.readouterr().err


def test_help_texts_print_single_percent_signs(capsys):
    for command in ("compare", "report"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "%%" not in out and "% of the" in out


def test_every_commands_help_prints(capsys):
    # argparse %-formats help texts: a bare "15%" made `run --help` a traceback.
    import argparse

    from searcher.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "decide", "status", "export"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0, command
        out = capsys.readouterr().out
        assert out.startswith("usage:") and "%%" not in out, command
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "i.e. 15%; 1: unbounded" in " ".join(capsys.readouterr().out.split())


def test_a_table_on_a_pipe_keeps_whole_headers(capsys):
    import io

    from rich.table import Table

    from searcher.cli.common import rich_console

    table = Table()
    for i in range(14):
        table.add_column(f"a long header number {i}")
    table.add_row(*[str(i) for i in range(14)])
    stream = io.StringIO()
    console = rich_console()
    console.file = stream
    console.print(table)
    assert "a long header number 13" in stream.getvalue()


def test_export_out_makes_the_folder_when_its_parent_exists(capsys, in_tmp):
    from searcher.results.export import output_folder
    from searcher.errors import ExportError

    assert output_folder(in_tmp / "new").is_dir()
    with pytest.raises(ExportError, match="folder .*missing does not exist"):
        output_folder(in_tmp / "missing" / "new")
    assert not (in_tmp / "missing").exists()


def test_a_bad_option_value_is_one_line_and_exit_2(capsys):
    """argparse's own errors take searcher's form: no usage block, the command and --help."""
    with pytest.raises(SystemExit) as exc:
        main(["run", "--study", "h100-e64-n1408", "--batch-sizes", "1,,2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "'1,,2' has an empty item" in err and "(see searcher run --help)" in err


def test_status_says_where_the_time_went(capsys, in_tmp):
    args = ["--study", "h100-e64-n1408", "--batch-sizes", "1,64"]
    assert main(["run", *args, "--synthetic", "--trials-per-m", "6", "--no-live"]) == 0
    capsys.readouterr()
    assert main(["status", *args, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    import optuna

    from searcher.kernels.fused_moe import FUSED_MOE
    from searcher.store.record import summarize_study
    from searcher.store.storage import open_storage

    storage = open_storage("sqlite:///searcher.db", read_only=True)
    for row in status["batch_sizes"]:
        # Synthetic costs are made up: the JSON, like the table, gives the wall time only.
        assert row["time_s"]["wall_s"] == pytest.approx(row["wall_s"]) and row["wall_s"] > 0
        assert {k for k, v in row["time_s"].items() if v is not None} == {"wall_s"}
        # The split itself, as a GPU study's status shows it, from the same storage.
        name = next(s.study_name for s in optuna.study.get_all_study_summaries(storage)
                    if s.user_attrs.get("M") == row["M"] and s.user_attrs.get("kind") == "search")
        study = optuna.load_study(study_name=name, storage=storage)
        t = summarize_study(FUSED_MOE, study, row["M"]).time
        assert t.measuring_s + t.compile_s + t.finalists_s + t.host_s == pytest.approx(t.wall_s)
        # The synthetic benchmarker charges a compile per config and "replays" 93% of the rest.
        compile_s = sum((tr.user_attrs.get(f) or {}).get("compile_s", 0.0)
                        for tr in study.get_trials() for f in ("short", "full"))
        assert t.compile_s == pytest.approx(compile_s) and compile_s > 0
        assert t.finalists_s > 0 and 0 < t.gpu_s < t.measuring_s
    total = status["total_time_s"]
    assert total["wall_s"] == pytest.approx(sum(r["wall_s"] for r in status["batch_sizes"]))
    assert {k for k, v in total.items() if v is not None} == {"wall_s"}

    assert main(["status", *args]) == 0
    out = capsys.readouterr().out
    # The split's columns are left out of a synthetic table (made-up costs); wall stays.
    assert "compile s" not in out and "host s" not in out and "wall s" in out and "total" in out
    # Synthetic costs are made up: no shares of real wall time, and no GPU claimed.
    text = " ".join(out.split())
    assert "where the wall time went: not shown, the synthetic costs are made up" in text
    assert "not measured on a GPU: synthetic times" in text and "measured on NVIDIA" not in text


def test_status_of_a_gpu_study_says_where_the_time_went(capsys):
    db = ROOT / "examples" / "h200-e64-n1408-three-m" / "searcher.db"
    assert main(["status", "--study", "h200-e64-n1408", "--storage", f"sqlite:///{db}",
                 "--batch-sizes", "64,1024,4096"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "measured on NVIDIA H200 (torch 2.11.0+cu130, triton 3.6.0" in text
    assert "where the wall time went: measuring 0.3 min (19%)" in text
    assert "the GPU minutes the search held the device" in text


def test_status_of_a_record_without_the_finalists_cost(capsys, tmp_path):
    db = gunzipped(ROOT / "examples" / "h200-e64-n1408-vllm432" / "searcher.db.gz", tmp_path)
    assert main(["status", "--study", "h200-e64-n1408", "--storage", f"sqlite:///{db}",
                 "--batch-sizes", "1,4096", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["batch_sizes"]
    for row in rows:
        t = row["time_s"]
        assert t["finalists_s"] is None and t["host_s"] is None and t["gpu_s"] is None
        assert t["measuring_s"] > 0 and t["compile_s"] > 0 and t["wall_s"] > t["measuring_s"]


def test_status_marks_the_default_and_says_what_best_us_is(capsys):
    db = ROOT / "examples" / "h200-e64-n1408-throughput" / "searcher.db"
    assert main(["status", "--study", "h200-e64-n1408", "--storage", f"sqlite:///{db}",
                 "--batch-sizes", "2,1024"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "M128 N128 K64 G1 w8 s3 (default)" in text  # M=1024 kept vLLM's default
    assert "M16 N64 K128 G1 w4 s3 (default)" not in text  # M=2's winner is not the default
    assert ("best us: the search's fastest measurement (20 replays of graphs of 10 layer "
            "calls, configs one after another)") in text
    # This record's finalists' fidelity; it is older than the finalists' budget, so its
    # graphs are the fidelity's own 10 calls and the note names no other.
    assert "side-by-side re-measurement (20 replays)" in text
    assert 'At large M best us can read several % below: README, "The phase bias"' in text
    assert "compile s" in text and "host s" in text  # GPU times: the whole split


def test_a_closed_pipe_is_no_traceback(tmp_path):
    import subprocess

    proc = subprocess.run(f"{sys.executable} -m searcher list | head -1", shell=True,
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() and "Traceback" not in proc.stderr, proc.stderr


def test_compare_on_a_storage_without_the_study_writes_nothing(tmp_path, capsys):
    db = ROOT / "examples" / "h200-e64-n1408-throughput" / "searcher.db"
    out = tmp_path / "cmp"
    assert main(["compare", "--study", "h100-e64-n1408", "--storage", f"sqlite:///{db}",
                 "--no-remeasure", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no search or grid of h100-e64-n1408" in err[0]
    assert not out.exists()


def test_export_says_when_every_entry_is_the_default(tmp_path, capsys):
    db = ROOT / "examples" / "h100-e64-n1408-extended" / "searcher.db"
    assert main(["export", "--study", "h100-e64-n1408-extended", "--storage",
                 f"sqlite:///{db}", "--out", str(tmp_path)]) == 0
    assert "every batch size of this file is vLLM's default config" in capsys.readouterr().err
    db = ROOT / "examples" / "h200-e64-n1408-extended" / "searcher.db"
    assert main(["export", "--study", "h200-e64-n1408-extended", "--storage",
                 f"sqlite:///{db}", "--out", str(tmp_path)]) == 0
    assert "vLLM's default config: vLLM runs the same" not in capsys.readouterr().err


def test_status_counts_trials_left_running_and_the_next_run_says_it_retries_them(
        capsys, in_tmp):
    """A run killed at once (a second Ctrl-C, SIGKILL) leaves trials RUNNING: ``status``
    counts them (the one being measured and the others), and the next run says that it
    failed them as interrupted and queues their configs again."""
    import optuna

    from searcher.store import record
    from searcher.store.storage import open_storage

    args = ["--study", "h100-e64-n1408", "--batch-sizes", "64"]
    assert main(["run", *args, "--synthetic", "--trials-per-m", "6", "--no-live"]) == 0
    storage = open_storage("sqlite:///searcher.db")
    name = next(s.study_name for s in optuna.study.get_all_study_summaries(storage)
                if s.user_attrs.get("kind") == "search")
    study = optuna.load_study(study_name=name, storage=storage)
    gone = {record.HOST: record.worker_identity()[record.HOST], record.PID: 2**22 + 7}
    measuring = study.ask({"log2_BLOCK_SIZE_M": optuna.distributions.IntDistribution(4, 8)})
    for key, value in {**gone, record.MEASURING: True}.items():
        measuring.set_user_attr(key, value)
    asked = study.ask()
    for key, value in gone.items():
        asked.set_user_attr(key, value)
    capsys.readouterr()
    assert main(["status", *args, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["batch_sizes"][0]
    assert (row["running"], row["unfinished"]) == (1, 1)
    assert main(["status", *args]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "trials still RUNNING: M=64: 1 being measured, 1 other" in text
    assert main(["run", *args, "--synthetic", "--trials-per-m", "6", "--no-live"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "M=64: 2 trials left running by a process that is gone failed as interrupted" in err
    assert main(["status", *args, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["batch_sizes"][0]
    assert (row["running"], row["unfinished"]) == (0, 0)


def test_status_of_a_replay_does_not_split_its_wall_time_by_the_recorded_costs(tmp_path,
                                                                                  capsys):
    # A replay charges the recorded GPU's costs without spending them: split against the
    # replay's own wall time they read as 280% of it, with negative host time.
    data = ROOT / "benchmarks" / "data" / "grid-h200-e64-n1408-vllm432.csv"
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["run", "--study", "h200-e64-n1408", "--replay", str(data), "--storage", url,
                 "--batch-sizes", "64", "--trials-per-m", "8", "--no-live"]) == 0
    capsys.readouterr()
    assert main(["status", "--study", "h200-e64-n1408", "--storage", url,
                 "--batch-sizes", "64"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "a replay charges the recorded GPU's costs without spending them" in text
    assert "host s" not in text and "host overhead" not in text
    assert main(["status", "--study", "h200-e64-n1408", "--storage", url,
                 "--batch-sizes", "64", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["batch_sizes"][0]
    assert {k for k, v in row["time_s"].items() if v is not None} == {"wall_s"}
