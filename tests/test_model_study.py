"""searcher/study/model_study.py and the CLI's --model / init, in-process, in a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from searcher.cli import main
from searcher.errors import SpecError
from searcher.kernels import FUSED_MOE
from searcher.study.model_study import find_model_config, model_spec
from searcher.study.spec import DEFAULT_BATCH_SIZES, load_spec

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "data" / "models"
DSV3 = MODELS / "deepseek-v3" / "config.json"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


_SAME = ("kernel", "gpu", "gpu_facts", "backend", "shape", "batch_sizes", "sampler", "pruner",
         "pruner_ratio", "trials_per_m", "time_limit_s", "startup_trials", "seed", "finalists")


def test_init_writes_the_shipped_deepseek_v3_study(in_tmp, capsys):
    assert main(["init", "--model", str(DSV3), "--tp", "8", "--gpu", "NVIDIA_H200"]) == 0
    out = capsys.readouterr()
    path = in_tmp / "studies" / "deepseek-v3-tp8-fp8-block128-NVIDIA_H200.toml"
    assert out.out.strip() == str(Path("studies") / path.name)
    assert "note:" in out.err and "shared experts" in out.err
    written = load_spec(path)
    shipped = load_spec(ROOT / "studies" / "h200-deepseek-v3-tp8-fp8.toml")
    for field in _SAME:
        assert getattr(written, field) == getattr(shipped, field), field
    assert written.space.name == shipped.space.name == "extended-quant"
    assert written.space.fingerprint() == shipped.space.fingerprint()
    assert written.batch_sizes == DEFAULT_BATCH_SIZES
    # run --model builds the very same study
    spec, made = model_spec(FUSED_MOE, str(DSV3), tp=8, gpu="NVIDIA_H200")
    assert made.text == path.read_text()
    for field in _SAME + ("name", "storage"):
        assert getattr(spec, field) == getattr(written, field), field
    # refuses to overwrite
    assert main(["init", "--model", str(DSV3), "--tp", "8", "--gpu", "NVIDIA_H200"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_init_writes_the_shipped_h100_deepseek_v3_tp16_study(in_tmp):
    assert main(["init", "--model", str(DSV3), "--tp", "16", "--gpu", "NVIDIA_H100_80GB_HBM3"]) == 0
    written = load_spec(in_tmp / "studies" / "deepseek-v3-tp16-fp8-block128-NVIDIA_H100_80GB_HBM3.toml")
    shipped = load_spec(ROOT / "studies" / "h100-deepseek-v3-tp16-fp8.toml")
    for field in _SAME:
        assert getattr(written, field) == getattr(shipped, field), field
    assert written.space.fingerprint() == shipped.space.fingerprint()


def test_run_model_synthetic_end_to_end_and_resume(in_tmp, capsys):
    argv = ["run", "--model", str(DSV3), "--tp", "8", "--gpu", "NVIDIA_H200", "--synthetic",
            "--batch-sizes", "1,64", "--trials-per-m", "5", "--isolation", "none", "--json"]
    assert main(argv) == 0
    import json

    first = json.loads(capsys.readouterr().out)
    assert first["study"] == "deepseek-v3-tp8-fp8-block128-NVIDIA_H200"
    assert [r["M"] for r in first["batch_sizes"]] == [1, 64]
    assert all(r["trials"] >= 5 for r in first["batch_sizes"])
    assert (in_tmp / "searcher.db").exists()
    assert main(argv) == 0  # resumes: nothing more to do
    again = json.loads(capsys.readouterr().out)
    assert [r["trials"] for r in again["batch_sizes"]] == [r["trials"] for r in first["batch_sizes"]]
    assert main(["status", "--model", str(DSV3), "--tp", "8", "--gpu", "NVIDIA_H200",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == first["study"]
    assert main(["export", "--model", str(DSV3), "--tp", "8", "--gpu", "NVIDIA_H200",
                 "--batch-sizes", "1,64", "--allow-unmeasured"]) == 0
    assert "block_shape=[128,128].json" in capsys.readouterr().out
    # Unfinished batch sizes: the hint repeats the model options (no study file exists).
    assert main(["export", "--model", str(DSV3), "--tp", "8", "--gpu", "NVIDIA_H200",
                 "--overwrite", "--allow-unmeasured"]) == 2
    assert f"`searcher run --model {DSV3} --tp 8 --gpu NVIDIA_H200`" in capsys.readouterr().err


def test_expert_parallel_study_runs(in_tmp, capsys):
    model = MODELS / "kimi-k2-instruct"
    assert main(["run", "--model", str(model), "--ep", "64", "--tp", "8", "--gpu",
                 "NVIDIA_H200", "--synthetic", "--batch-sizes", "16", "--trials-per-m", "3",
                 "--isolation", "none"]) == 0
    err = capsys.readouterr().err
    assert "top_k 8 > 6 local experts" in err


def test_hf_cache_lookup(in_tmp):
    repo = in_tmp / "hf" / "hub" / "models--deepseek-ai--DeepSeek-V3"
    for rev in ("old", "main1"):
        (repo / "snapshots" / rev).mkdir(parents=True)
        shutil.copy(DSV3, repo / "snapshots" / rev / "config.json")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("main1\n")
    path, name = find_model_config("deepseek-ai/DeepSeek-V3")
    assert path == repo / "snapshots" / "main1" / "config.json" and name == "DeepSeek-V3"
    assert find_model_config(str(path.parent))[1] == "DeepSeek-V3"
    spec, made = model_spec(FUSED_MOE, "deepseek-ai/DeepSeek-V3", tp=8, gpu="NVIDIA_H200")
    assert made.name == "deepseek-v3-tp8-fp8-block128-NVIDIA_H200"


@pytest.mark.parametrize("argv,words", [
    (["--model", "org/missing"], ["not in the Hugging Face cache", "models--org--missing",
                                  "never downloads"]),
    (["--model", "nowhere/config.json"], ["no such file or folder"]),
    (["--model", str(DSV3), "--tp", "3"], ["--tp 3", "2048"]),
    (["--model", str(DSV3), "--ep", "7"], ["--ep 7", "256 experts"]),
    (["--model", str(DSV3), "--gpu", "NVIDIA H200"], ["NVIDIA_H200"]),
    (["--study", "h200-e64-n1408", "--tp", "2"], ["--tp", "only with --model"]),
])
def test_bad_model_inputs_are_one_line(argv, words, capsys):
    if "--gpu" not in argv and "--study" not in argv:
        argv = argv + ["--gpu", "NVIDIA_H200"]
    assert main(["run", *argv, "--synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err


def test_malformed_json_and_unknown_architecture(in_tmp, capsys):
    bad = in_tmp / "bad" / "config.json"
    bad.parent.mkdir()
    bad.write_text('{"model_type": "x",')
    assert main(["init", "--model", str(bad.parent), "--gpu", "NVIDIA_H200"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    bad.write_text('{"model_type": "llama", "hidden_size": 4096}')
    assert main(["init", "--model", str(bad), "--gpu", "NVIDIA_H200"]) == 2
    err = capsys.readouterr().err
    assert "no mixture-of-experts settings" in err and "hidden_size" in err


def test_no_gpu_and_no_gpu_flag_says_pass_gpu(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "--model", str(DSV3), "--tp", "8", "--synthetic"]) == 2
    err = capsys.readouterr().err
    assert "--gpu" in err and "--synthetic" in err


def test_model_and_study_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--model", str(DSV3), "--study", "h200-e64-n1408"])
    with pytest.raises(SpecError):
        find_model_config("./nothing-here")


@pytest.mark.parametrize("gpu, words", [
    ("H200", "--gpu H200: not spelled the way vLLM names devices; write NVIDIA_H200"),
    ("NVIDIA_H20", "--gpu NVIDIA_H20: not a GPU searcher knows (did you mean 'NVIDIA_H200'?)"),
])
def test_a_bad_gpu_is_named_as_the_option(gpu, words, in_tmp, capsys):
    assert main(["init", "--model", str(DSV3), "--tp", "8", "--gpu", gpu]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
