"""Tests for searcher.study.spec: loading, validating and finding study specs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import searcher
from searcher.measure.device import KNOWN_GPUS, GpuFacts
from searcher.errors import SpecError
from searcher.kernels import get_kernel
from searcher.study.spec import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_STORAGE,
    StudySpec,
    find_space,
    find_spec,
    list_specs,
    load_spec,
    spaces_dirs,
    studies_dirs,
)

PROJECT = Path(searcher.__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "studies"
SHIPPED = sorted((PROJECT / "studies").glob("*.toml"))

# A valid spec; each error case below edits one line of it.
BASE = """\
schema = 1
kernel = "fused_moe"
gpu = "NVIDIA_H100_80GB_HBM3"

[shape]
E = 64
N = 1408
hidden = 2048
top_k = 6
dtype = "bf16"

[search]
space = "vllm-432"
trials_per_m = 40
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def edited(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_base_spec_is_valid(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.name == "study"
    assert spec.shape.E == 64 and spec.shape.top_k == 6


# (old line, new line, substrings the message must hold)
ERRORS = [
    # TOML itself
    ("E = 64", "E = = 64", ["not valid TOML", "line 6"]),
    ("E = 64", "E = 64\nE = 65", ["not valid TOML"]),
    # schema
    ("schema = 1", "schema = 2", ["schema = 2", "not supported", "schema = 1"]),
    ("schema = 1", "schema = '1'", ["schema = '1' must be an integer"]),
    ("schema = 1\n", "", ["missing required key 'schema'"]),
    # unknown keys, at every level
    ("kernel =", "gpus = 1\nkernel =", ["unknown key 'gpus'", "did you mean 'gpu'?"]),
    ("[search]", "[serch]\nx = 1\n[search]", ["unknown key 'serch'", "did you mean 'search'?"]),
    ("top_k = 6", "top_k = 6\ntopk = 6",
     ["unknown key 'shape.topk'", "did you mean 'top_k'?", "[shape] takes"]),
    ("trials_per_m = 40", "trials_per_m = 40\ntrails_per_m = 3",
     ["unknown key 'search.trails_per_m'", "did you mean 'trials_per_m'?"]),
    ("trials_per_m = 40", "trials_per_m = 40\n[storage]\nurl = 'sqlite:///x.db'\npath = 'x'",
     ["unknown key 'storage.path'", "[storage] takes: url"]),
    ("trials_per_m = 40",
     "trials_per_m = 40\n[gpu_facts]\nsm_count = 1\nshared_mem_per_block = 1\nsmem = 3",
     ["unknown key 'gpu_facts.smem'"]),
    # types; bools are not integers
    ("E = 64", 'E = "64"', ["shape.E = '64' must be an integer"]),
    ("E = 64", "E = true", ["shape.E = true must be an integer"]),
    ("N = 1408", "N = 1408.0", ["shape.N = 1408.0 must be an integer"]),
    ("E = 64", "E = 0", ["shape.E = 0 must be a positive integer"]),
    ("hidden = 2048", "hidden = -2048", ["shape.hidden = -2048 must be a positive integer"]),
    ("top_k = 6", "top_k = 65", ["[shape] top_k = 65 must not exceed E = 64"]),
    ('dtype = "bf16"', 'dtype = "fp8"', ["dtype = 'fp8' must be one of: bf16, fp16, fp32"]),
    ('dtype = "bf16"', "dtype = 16", ["shape.dtype = 16 must be a string"]),
    ('kernel = "fused_moe"', "kernel = 'fused_mo'",
     ["kernel = 'fused_mo' must be one of: fused_moe", "did you mean 'fused_moe'?"]),
    ('kernel = "fused_moe"', "description = 3\nkernel = 'fused_moe'",
     ["description = 3 must be a string"]),
    ('kernel = "fused_moe"', "backend = 'triton'\nkernel = 'fused_moe'",
     ["backend = 'triton' must be one of: builtin, vllm"]),
    # missing required keys and tables
    ("E = 64\n", "", ["missing required key 'shape.E' in [shape]"]),
    ('gpu = "NVIDIA_H100_80GB_HBM3"\n', "", ["missing required key 'gpu'"]),
    ('kernel = "fused_moe"\n', "", ["missing required key 'kernel'"]),
    ('space = "vllm-432"\n', "", ["missing required key 'search.space'"]),
    ("[shape]\nE = 64\nN = 1408\nhidden = 2048\ntop_k = 6\ndtype = \"bf16\"\n", "",
     ["missing required table [shape]"]),
    # the GPU
    ('gpu = "NVIDIA_H100_80GB_HBM3"', 'gpu = "NVIDIA H100 80GB HBM3"',
     ["gpu = 'NVIDIA H100 80GB HBM3'", "write 'NVIDIA_H100_80GB_HBM3'"]),
    ('gpu = "NVIDIA_H100_80GB_HBM3"', 'gpu = "NVIDIA_H100_80GB_HMB3"',
     ["gpu = 'NVIDIA_H100_80GB_HMB3' is not a GPU searcher knows",
      "did you mean 'NVIDIA_H100_80GB_HBM3'?", "[gpu_facts]"]),
    ('gpu = "NVIDIA_H100_80GB_HBM3"', 'gpu = ""', ["gpu = '' must not be empty"]),
    ('gpu = "NVIDIA_H100_80GB_HBM3"', 'gpu = "NVIDIA_B300"\n[gpu_facts]\nsm_count = 148',
     ["missing required key 'gpu_facts.shared_mem_per_block'"]),
    ("trials_per_m = 40",
     "trials_per_m = 40\n[gpu_facts]\nsm_count = 0\nshared_mem_per_block = 1",
     ["gpu_facts.sm_count = 0 must be a positive integer"]),
    # the space
    ('space = "vllm-432"', 'space = "vllm-43"',
     ["search.space = 'vllm-43'", "unknown space 'vllm-43'", "did you mean 'vllm-432'?",
      "looked for vllm-43.toml in", str(PROJECT / "spaces")]),
    ('space = "vllm-432"', 'space = "nowhere/none.toml"',
     ["search.space = 'nowhere/none.toml'", "no file", "none.toml"]),
    ('space = "vllm-432"', "space = 432", ["search.space = 432 must be a string"]),
    # batch sizes
    ("trials_per_m = 40", "trials_per_m = 40\nbatch_sizes = []",
     ["search.batch_sizes = [] must list at least one batch size"]),
    ("trials_per_m = 40", "trials_per_m = 40\nbatch_sizes = [1, 0, 4]",
     ["search.batch_sizes[1] = 0 must be a positive integer"]),
    ("trials_per_m = 40", "trials_per_m = 40\nbatch_sizes = [1, 100000000000]",
     ["search.batch_sizes[1] = 100000000000 is above", "M <= 1,048,576 (2**20)"]),
    ("trials_per_m = 40", "trials_per_m = 40\nbatch_sizes = [1, -8]",
     ["search.batch_sizes[1] = -8 must be a positive integer"]),
    ("trials_per_m = 40", "trials_per_m = 40\nbatch_sizes = [1, 2, 4, 2]",
     ["search.batch_sizes = [1, 2, 4, 2]", "M = 2 twice", "must appear once"]),
    ("trials_per_m = 40", "trials_per_m = 40\nbatch_sizes = [1, '2']",
     ["search.batch_sizes[1] = '2' must be a positive integer"]),
    ("trials_per_m = 40", "trials_per_m = 40\nbatch_sizes = [1, true]",
     ["search.batch_sizes[1] = true must be a positive integer"]),
    ("trials_per_m = 40", "trials_per_m = 40\nbatch_sizes = 64",
     ["search.batch_sizes = 64 must be a list of integers"]),
    # sampler and pruner
    ("trials_per_m = 40", "trials_per_m = 40\nsampler = 'tpx'",
     ["search.sampler", "unknown sampler 'tpx'", "must be one of: cmaes, gp, grid, random, tpe",
      "did you mean 'tpe'?"]),
    ("trials_per_m = 40", "trials_per_m = 40\npruner = 'medain'",
     ["search.pruner", "unknown pruner 'medain'", "did you mean 'median'?"]),
    ("trials_per_m = 40", "trials_per_m = 40\npruner_ratio = 1.0",
     ["search.pruner_ratio = 1.0 must be greater than 1"]),
    ("trials_per_m = 40", "trials_per_m = 40\npruner_ratio = 'x'",
     ["search.pruner_ratio = 'x' must be a finite number"]),
    ("trials_per_m = 40", "trials_per_m = 40\npruner = 'median'\npruner_ratio = 1.2",
     ["search.pruner_ratio = 1.2 only applies to pruner = 'ratio', not 'median'"]),
    # budget
    ("trials_per_m = 40", "trials_per_m = 0",
     ["search.trials_per_m = 0 must be a positive integer"]),
    ("trials_per_m = 40", "trials_per_m = -3",
     ["search.trials_per_m = -3 must be a positive integer"]),
    ("trials_per_m = 40", "trials_per_m = 2.5", ["search.trials_per_m = 2.5 must be an integer"]),
    ("trials_per_m = 40", "", ["[search] has no budget", "trials_per_m", "time_limit_s"]),
    ("trials_per_m = 40", "time_limit_s = 0", ["search.time_limit_s = 0 must be greater than 0"]),
    ("trials_per_m = 40", "time_limit_s = inf",
     ["search.time_limit_s = inf must be a finite number"]),
    ("trials_per_m = 40", "trials_per_m = 40\nstartup_trials = -1",
     ["search.startup_trials = -1 must be an integer >= 0"]),
    ("trials_per_m = 40", "trials_per_m = 40\nseed = -1",
     ["search.seed = -1 must be an integer >= 0"]),
    ("trials_per_m = 40", "trials_per_m = 40\nseed = 4294967296",
     ["search.seed = 4294967296 must be below 4294967296"]),
    ("trials_per_m = 40", "trials_per_m = 40\nseed = false",
     ["search.seed = false must be an integer"]),
    ("trials_per_m = 40", "trials_per_m = 40\nfinalists = -2",
     ["search.finalists = -2 must be an integer >= 0"]),
    # storage
    ("trials_per_m = 40", "trials_per_m = 40\n[storage]\nurl = 'searcher.db'",
     ["storage.url = 'searcher.db' is not a database URL", DEFAULT_STORAGE]),
    ("schema = 1", "schema = 1\nstorage = 'sqlite:///x.db'",
     ["storage = 'sqlite:///x.db' must be a table"]),
]


@pytest.mark.parametrize(("old", "new", "expected"), ERRORS,
                         ids=[f"{i}:{e[0]}" for i, e in enumerate(ERRORS)])
def test_invalid_spec_names_file_key_value_and_rule(
    tmp_path: Path, old: str, new: str, expected: list[str]
) -> None:
    message = load_error(tmp_path, edited(old, new))
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_table_given_as_a_value(tmp_path: Path) -> None:
    text = BASE.replace('[shape]\nE = 64\nN = 1408\nhidden = 2048\ntop_k = 6\ndtype = "bf16"\n', "")
    message = load_error(tmp_path, "shape = 3\n" + text)
    assert "shape = 3 must be a table ([shape])" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such study file"):
        load_spec(tmp_path / "absent.toml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"schema = 1\ndescription = '\xff'\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)


def test_malformed_space_file_is_wrapped_with_the_spec_path(tmp_path: Path) -> None:
    space = tmp_path / "broken.toml"
    space.write_text("schema = 1\n[params]\nBLOCK_SIZE_M = [48]\n")
    message = load_error(tmp_path, edited('space = "vllm-432"', 'space = "broken.toml"'))
    assert "search.space = 'broken.toml'" in message
    assert str(space) in message  # the space loader names its own file too
    assert "BLOCK_SIZE_M" in message


def test_minimal_spec_gets_the_defaults() -> None:
    spec = load_spec(DATA / "minimal.toml")
    assert isinstance(spec, StudySpec)
    assert spec.name == "minimal"
    assert spec.path == DATA / "minimal.toml"
    assert spec.description == ""
    assert spec.kernel is get_kernel("fused_moe")
    assert spec.backend == "builtin"
    assert spec.gpu == "NVIDIA_H100_80GB_HBM3"
    assert spec.gpu_facts == KNOWN_GPUS["NVIDIA_H100_80GB_HBM3"]
    assert spec.shape.dtype == "bf16"
    assert spec.batch_sizes == DEFAULT_BATCH_SIZES
    assert len(spec.batch_sizes) == 18 and spec.batch_sizes[0] == 1 and spec.batch_sizes[-1] == 4096
    assert spec.sampler == "tpe"
    assert spec.pruner == "ratio"
    assert spec.pruner_ratio == pytest.approx(1.10)
    assert spec.pruner_options() == {"ratio": pytest.approx(1.10)}
    assert spec.trials_per_m == 40
    assert spec.time_limit_s is None
    assert spec.startup_trials == 8
    assert spec.seed == 0
    assert spec.finalists == 4
    assert spec.storage == "sqlite:///searcher.db"
    assert spec.space.name == "vllm-432"
    assert len(spec.space.enumerate(_context(spec))) == 432


def _context(spec: StudySpec) -> dict[str, int]:
    
    return spec.kernel.context(spec.shape, spec.batch_sizes[0], spec.gpu_facts)


def test_full_spec_reads_every_key() -> None:
    spec = load_spec(DATA / "full.toml")
    assert spec.description == "every key"
    assert spec.gpu == "NVIDIA_H200"
    # Given facts win over the known ones.
    assert spec.gpu_facts == GpuFacts(shared_mem_per_block=100000, sm_count=100)
    assert spec.backend == "vllm"
    assert (spec.shape.E, spec.shape.N, spec.shape.hidden, spec.shape.top_k, spec.shape.dtype) \
        == (8, 14336, 4096, 2, "fp16")
    assert spec.space.name == "vllm-1920"
    assert spec.batch_sizes == (4096, 1, 64)  # the given order is kept
    assert spec.sampler == "random"
    assert spec.pruner_ratio == 1.25
    assert spec.trials_per_m == 12
    assert spec.time_limit_s == 90.5
    assert spec.startup_trials == 0
    assert spec.seed == 7
    assert spec.finalists == 0
    assert spec.storage == "sqlite:////tmp/elsewhere.db"


def test_unknown_gpu_with_facts() -> None:
    spec = load_spec(DATA / "custom-gpu.toml")
    assert spec.gpu == "NVIDIA_L40S"
    assert spec.gpu_facts == GpuFacts(shared_mem_per_block=101376, sm_count=142)
    assert spec.trials_per_m is None and spec.time_limit_s == 600.0


def test_space_path_is_relative_to_the_spec() -> None:
    spec = load_spec(DATA / "relative-space.toml")
    assert spec.space.path is not None
    assert spec.space.path.resolve() == (PROJECT / "spaces" / "vllm-432.toml").resolve()


def test_pruner_options_for_other_pruners(tmp_path: Path) -> None:
    text = edited("trials_per_m = 40", "trials_per_m = 40\npruner = 'none'")
    spec = load_spec(write(tmp_path, text))
    assert spec.pruner == "none"
    assert spec.pruner_options() == {}


def test_spec_is_frozen() -> None:
    spec = load_spec(DATA / "minimal.toml")
    with pytest.raises(AttributeError):
        spec.seed = 3  # type: ignore[misc]


# --- shipped studies -------------------------------------------------------------------

def test_the_project_ships_the_five_studies() -> None:
    assert {p.stem for p in SHIPPED} >= {
        "a100-e64-n1408", "h100-e64-n1408", "h200-e64-n1408",
        "h100-mixtral-8x7b", "h100-qwen3-30b-a3b",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_study_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.gpu in KNOWN_GPUS
    # 40 trials per M; the extended space (about 15x the 432 space's configs) gets 80.
    assert spec.trials_per_m == (80 if spec.space.name == "extended" and "e64" in path.name else 40)
    assert spec.description
    configs = spec.space.enumerate(_context(spec))
    assert configs, f"{path.name}: no valid config at M={spec.batch_sizes[0]}"


def test_e64_studies_match_the_issue_shape() -> None:
    for gpu in ("a100", "h100", "h200"):
        spec = load_spec(PROJECT / "studies" / f"{gpu}-e64-n1408.toml")
        s = spec.shape
        assert (s.E, s.N, s.hidden, s.top_k, s.dtype) == (64, 1408, 2048, 6, "bf16")
        assert spec.space.name == "vllm-432"


# --- finding studies and spaces --------------------------------------------------------

def test_find_spec_by_name_and_by_path() -> None:
    assert find_spec("minimal", [DATA]) == DATA / "minimal.toml"
    assert find_spec(DATA / "full.toml") == DATA / "full.toml"
    assert find_spec(str(DATA / "full.toml")) == DATA / "full.toml"


def test_find_spec_unknown_name_lists_the_studies() -> None:
    with pytest.raises(SpecError) as info:
        find_spec("minimel", [DATA])
    message = str(info.value)
    assert "unknown study 'minimel'" in message
    assert "did you mean 'minimal'?" in message
    assert "available: custom-gpu, full, minimal, relative-space" in message
    assert str(DATA) in message


def test_find_spec_missing_path() -> None:
    with pytest.raises(SpecError, match="nowhere.toml: no such study file"):
        find_spec("nowhere.toml", [DATA])


def test_shipped_study_found_by_name_from_anywhere(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEARCHER_STUDIES", raising=False)
    shipped = PROJECT / "studies" / "h100-e64-n1408.toml"
    assert find_spec("h100-e64-n1408").resolve() == shipped.resolve()
    assert "h100-mixtral-8x7b" in list_specs()


def test_search_order_env_then_cwd_then_project(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir, cwd = tmp_path / "env", tmp_path / "cwd"
    (env_dir).mkdir()
    (cwd / "studies").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("SEARCHER_STUDIES", str(env_dir))
    assert studies_dirs() == [env_dir, cwd / "studies", PROJECT / "studies"]

    write(cwd / "studies", BASE, "h100-e64-n1408.toml")  # shadows the shipped one
    assert find_spec("h100-e64-n1408") == cwd / "studies" / "h100-e64-n1408.toml"
    write(env_dir, BASE, "h100-e64-n1408.toml")  # and the environment shadows both
    assert find_spec("h100-e64-n1408") == env_dir / "h100-e64-n1408.toml"
    assert list_specs()["h100-e64-n1408"] == env_dir / "h100-e64-n1408.toml"


def test_search_dirs_are_deduplicated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT)
    monkeypatch.setenv("SEARCHER_SPACES", os.pathsep.join([str(PROJECT / "spaces"), "spaces"]))
    assert [d.resolve() for d in spaces_dirs()] == [(PROJECT / "spaces").resolve()]


def test_space_names_come_from_searcher_spaces(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spaces = tmp_path / "my-spaces"
    spaces.mkdir()
    (spaces / "tiny.toml").write_text(
        "schema = 1\n[params]\nBLOCK_SIZE_M = [16]\nBLOCK_SIZE_N = [32, 64]\n"
        "BLOCK_SIZE_K = [64]\nGROUP_SIZE_M = [1]\nnum_warps = [4]\nnum_stages = [2, 3]\n"
    )
    monkeypatch.setenv("SEARCHER_SPACES", str(spaces))
    assert find_space("tiny") == spaces / "tiny.toml"
    spec = load_spec(write(tmp_path, edited('space = "vllm-432"', 'space = "tiny"')))
    assert spec.space.name == "tiny"
    assert len(spec.space.enumerate(_context(spec))) == 4


def test_find_space_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    target = tmp_path / "sub" / "s.toml"
    target.write_text("")
    assert find_space("sub/s.toml", relative_to=tmp_path / "study.toml") == target
    assert find_space("sub/s.toml", relative_to=tmp_path) == target
    with pytest.raises(SpecError, match="no file"):
        find_space("sub/t.toml", relative_to=tmp_path)


def test_validating_a_spec_imports_neither_optuna_nor_torch() -> None:
    code = (
        "import sys; from searcher.study.spec import load_spec; "
        f"load_spec({str(DATA / 'minimal.toml')!r}); "
        "print(sorted(m for m in ('optuna', 'torch', 'triton') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


NO_CONFIG_SPACE = """\
schema = 1
[params]
BLOCK_SIZE_M = [16, 32]
BLOCK_SIZE_N = [64]
BLOCK_SIZE_K = [64]
GROUP_SIZE_M = [1]
num_warps = [4]
num_stages = [3]
[constraints]
only_big_batches = "M >= 1024"
"""


def test_a_space_empty_for_a_batch_size_is_refused_naming_it(tmp_path: Path) -> None:
    from searcher.errors import SpaceError
    from searcher.study.spec import check_configs_exist

    write(tmp_path, NO_CONFIG_SPACE, "none.toml")
    spec = load_spec(write(tmp_path, edited('space = "vllm-432"', 'space = "none.toml"')
                           + "batch_sizes = [1024, 64]\n"))
    check_configs_exist(spec, [1024])
    with pytest.raises(SpaceError, match=(
            r"none.toml: no config is valid for M=64 of shape E=64,N=1408,H=2048,top_k=6,bf16 "
            r"on NVIDIA_H100_80GB_HBM3: its constraints reject all 2 configs")):
        check_configs_exist(spec)
