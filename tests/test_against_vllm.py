"""``--against vllm``: the tuned file the installed vLLM would load for a study's layer and
GPU ($VLLM_TUNED_CONFIG_FOLDER first, then vLLM's own configs/), found without importing
vLLM. A fake vLLM package in a temporary folder stands in for the real one."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from searcher.cli import main
from searcher.errors import ConfigError
from searcher.kernels.fused_moe.vllm_file import installed_config_file

ROOT = Path(__file__).resolve().parent.parent
H100_FILE = ROOT / "examples" / "configs" / "E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json"
NAME = H100_FILE.name


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLLM_TUNED_CONFIG_FOLDER", raising=False)
    return tmp_path


@pytest.fixture
def vllm_configs(tmp_path, monkeypatch) -> Path:
    """An installed vLLM 0.33.0 whose import fails: searcher must find it without importing it."""
    site = tmp_path / "site"
    configs = site / "vllm" / "model_executor" / "layers" / "fused_moe" / "configs"
    configs.mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text("raise ImportError('searcher imported vLLM')\n")
    dist = site / "vllm-0.33.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.33.0\n")
    monkeypatch.syspath_prepend(str(site))
    return configs


@pytest.fixture
def no_vllm(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real(name, *a))


def test_finds_the_file_in_vllms_configs_folder(vllm_configs):
    shutil.copy(H100_FILE, vllm_configs / NAME)
    assert installed_config_file(NAME) == vllm_configs / NAME


def test_the_tuned_config_folder_comes_first_as_in_vllm(vllm_configs, tmp_path, monkeypatch):
    shutil.copy(H100_FILE, vllm_configs / NAME)
    folder = tmp_path / "tuned"
    folder.mkdir()
    monkeypatch.setenv("VLLM_TUNED_CONFIG_FOLDER", str(folder))
    assert installed_config_file(NAME) == vllm_configs / NAME  # not in the folder
    shutil.copy(H100_FILE, folder / NAME)
    assert installed_config_file(NAME) == folder / NAME


def test_a_file_vllm_does_not_ship_names_the_version_and_the_places(vllm_configs, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("VLLM_TUNED_CONFIG_FOLDER", str(tmp_path / "tuned"))
    with pytest.raises(ConfigError) as info:
        installed_config_file(NAME)
    message = str(info.value)
    assert f"vLLM 0.33.0 ships no {NAME}" in message
    assert "$VLLM_TUNED_CONFIG_FOLDER" in message and str(vllm_configs) in message
    assert "default config" in message and "without --against" in message


def test_no_vllm_installed(no_vllm, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="vLLM is not installed") as info:
        installed_config_file(NAME)
    assert NAME in str(info.value) and "vllm_shipped_configs.sh" in str(info.value)
    # The tuned-config folder alone serves (files copied from the serving machine) ...
    folder = tmp_path / "tuned"
    folder.mkdir()
    monkeypatch.setenv("VLLM_TUNED_CONFIG_FOLDER", str(folder))
    with pytest.raises(ConfigError) as info:
        installed_config_file(NAME)
    assert (f"vLLM is not installed in this Python and $VLLM_TUNED_CONFIG_FOLDER ({folder}) "
            f"holds no {NAME}") in str(info.value)
    shutil.copy(H100_FILE, folder / NAME)
    assert installed_config_file(NAME) == folder / NAME


def test_a_vllm_folder_without_init_is_not_vllm(tmp_path, monkeypatch):
    """A folder named vllm on the path (say, a checkout's subfolder) imports as a namespace
    package; it is not an installed vLLM."""
    site = tmp_path / "site"
    (site / "vllm" / "model_executor" / "layers" / "fused_moe" / "configs").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        installed_config_file(NAME)


def test_compare_looks_up_the_file_of_the_device_it_compares(vllm_configs, capsys):
    shutil.copy(H100_FILE, vllm_configs / NAME)
    assert main(["compare", "--study", "h100-e64-n1408", "--device", "NVIDIA_H200",
                 "--no-remeasure", "--against", "vllm"]) == 2
    err = capsys.readouterr().err
    assert "vLLM 0.33.0 ships no E=64,N=1408,device_name=NVIDIA_H200.json" in err


def test_run_against_vllm_races_the_installed_file(vllm_configs, in_tmp, capsys):
    shutil.copy(H100_FILE, vllm_configs / NAME)
    assert main(["run", "--study", "h100-e64-n1408", "--synthetic", "--batch-sizes", "1",
                 "--trials-per-m", "3", "--isolation", "none", "--no-live", "--json",
                 "--storage", f"sqlite:///{in_tmp / 's.db'}", "--against", "vllm"]) == 0
    captured = capsys.readouterr()
    assert f"--against vllm: {vllm_configs / NAME}" in captured.err
    (summary,) = json.loads(captured.out)["batch_sizes"]
    assert summary["against_us"] is not None
    # compare resolves it the same way and names the file
    assert main(["compare", "--study", "h100-e64-n1408", "--batch-sizes", "1",
                 "--storage", f"sqlite:///{in_tmp / 's.db'}", "--against", "vllm",
                 "--out", str(in_tmp / "cmp")]) == 0
    assert f"search against the default and {NAME}" in capsys.readouterr().out


def test_run_against_vllm_without_vllm_is_one_line_and_stores_nothing(no_vllm, in_tmp, capsys):
    assert main(["run", "--study", "h100-e64-n1408", "--synthetic", "--batch-sizes", "1",
                 "--trials-per-m", "3", "--isolation", "none", "--no-live",
                 "--storage", f"sqlite:///{in_tmp / 's.db'}", "--against", "vllm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vLLM is not installed" in err and NAME in err
    assert not (in_tmp / "s.db").exists()
