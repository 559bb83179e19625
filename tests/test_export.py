"""Tests for searcher.results.export and searcher.kernels.fused_moe.vllm_file: vLLM config file
names, layout, reading, writing, lookup."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.errors import ExportError, SearcherError
from searcher.results.export import nearest_config, write_config_file
from searcher.kernels.fused_moe.vllm_file import (
    DTYPE_SUFFIXES,
    config_file_name,
    read_config_file,
    render_config_file,
)
from searcher.kernels.fused_moe import FUSED_MOE

DATA = Path(__file__).parent / "data" / "export"
GOLDEN_NAME = "E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json"
GOLDEN = DATA / GOLDEN_NAME


def cfg(m: int, n: int, k: int, g: int, w: int, s: int) -> KernelConfig:
    return KernelConfig(
        BLOCK_SIZE_M=m, BLOCK_SIZE_N=n, BLOCK_SIZE_K=k, GROUP_SIZE_M=g, num_warps=w, num_stages=s
    )


# The configs the hand-written golden file holds, in its order.
GOLDEN_CONFIGS: dict[int, KernelConfig] = {
    1: cfg(16, 64, 128, 1, 4, 4),
    2: cfg(16, 64, 128, 1, 4, 3),
    4: cfg(16, 128, 128, 1, 4, 3),
    8: cfg(16, 128, 64, 16, 4, 4),
    16: cfg(16, 128, 64, 1, 4, 3),
    32: cfg(32, 128, 64, 16, 4, 3),
    64: cfg(64, 128, 64, 1, 4, 3),
    128: cfg(64, 128, 64, 16, 8, 3),
    256: cfg(128, 128, 64, 32, 8, 4),
    1024: cfg(128, 256, 64, 16, 8, 4),
    4096: cfg(128, 256, 64, 64, 8, 4),
}

A = cfg(16, 64, 64, 1, 4, 3)
B = cfg(32, 128, 64, 8, 4, 4)
C = cfg(64, 128, 128, 16, 8, 3)
D = cfg(128, 256, 64, 32, 8, 4)

VALID_ENTRY = {
    "BLOCK_SIZE_M": 16,
    "BLOCK_SIZE_N": 64,
    "BLOCK_SIZE_K": 64,
    "GROUP_SIZE_M": 1,
    "num_warps": 4,
    "num_stages": 3,
}


# --- file names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device, expected",
    [
        ("NVIDIA H100 80GB HBM3", "E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json"),
        ("NVIDIA_H100_80GB_HBM3", "E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json"),
        ("NVIDIA A100-SXM4-80GB", "E=64,N=1408,device_name=NVIDIA_A100-SXM4-80GB.json"),
        ("NVIDIA H200", "E=64,N=1408,device_name=NVIDIA_H200.json"),
        ("NVIDIA H200 NVL", "E=64,N=1408,device_name=NVIDIA_H200.json"),
        ("NVIDIA_H200", "E=64,N=1408,device_name=NVIDIA_H200.json"),
        ("NVIDIA  RTX 6000/Ada\tGen", "E=64,N=1408,device_name=NVIDIA_RTX_6000_Ada_Gen.json"),
    ],
)
def test_file_name_normalises_device(device: str, expected: str) -> None:
    assert config_file_name(64, 1408, device) == expected


def test_file_name_of_golden_matches_golden() -> None:
    assert config_file_name(64, 1408, "NVIDIA H100 80GB HBM3") == GOLDEN_NAME
    assert GOLDEN.is_file()


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_file_name_has_no_dtype_for_half_types(dtype: str) -> None:
    assert config_file_name(8, 7168, "NVIDIA H200", dtype) == "E=8,N=7168,device_name=NVIDIA_H200.json"


@pytest.mark.parametrize(
    "dtype, suffix",
    [
        ("fp8_w8a8", ",dtype=fp8_w8a8"),
        ("int8_w8a16", ",dtype=int8_w8a16"),
        ("int4_w4a16", ",dtype=int4_w4a16"),
        ("fp32", ",dtype=float32"),
    ],
)
def test_file_name_dtype_suffix(dtype: str, suffix: str) -> None:
    name = config_file_name(256, 128, "NVIDIA H100 80GB HBM3", dtype)
    assert name == f"E=256,N=128,device_name=NVIDIA_H100_80GB_HBM3{suffix}.json"


def test_file_name_block_shape_after_dtype() -> None:
    name = config_file_name(256, 128, "NVIDIA H100 80GB HBM3", "fp8_w8a8", (128, 128))
    assert name == "E=256,N=128,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128,128].json"


def test_file_name_block_shape_without_dtype() -> None:
    name = config_file_name(64, 1408, "NVIDIA H200", block_shape=(64, 128))
    assert name == "E=64,N=1408,device_name=NVIDIA_H200,block_shape=[64,128].json"


def test_file_name_unknown_dtype_lists_known_ones() -> None:
    with pytest.raises(ExportError) as info:
        config_file_name(64, 1408, "NVIDIA H200", "fp4")
    message = str(info.value)
    assert "'fp4'" in message
    for known in DTYPE_SUFFIXES:
        assert known in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"E": 0, "N": 1408},
        {"E": 64, "N": -1},
        {"E": 64, "N": 1408, "block_shape": (128,)},
        {"E": 64, "N": 1408, "block_shape": (128, 0)},
    ],
)
def test_file_name_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ExportError):
        config_file_name(device_name="NVIDIA H200", **kwargs)


# --- rendering --------------------------------------------------------------------------


def test_render_matches_hand_written_golden_byte_for_byte() -> None:
    assert render_config_file("3.6.0", GOLDEN_CONFIGS).encode("utf-8") == GOLDEN.read_bytes()


def test_render_keeps_tuning_order_and_puts_version_first() -> None:
    text = render_config_file("3.6.0", {64: C, 1: A, 16: B})
    assert list(json.loads(text)) == ["triton_version", "64", "1", "16"]
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert list(json.loads(text)["64"]) == [
        "BLOCK_SIZE_M",
        "BLOCK_SIZE_N",
        "BLOCK_SIZE_K",
        "GROUP_SIZE_M",
        "num_warps",
        "num_stages",
    ]


@pytest.mark.parametrize(
    "version, configs",
    [
        ("", {1: A}),
        ("3.6.0", {}),
        ("3.6.0", {0: A}),
        ("3.6.0", {"1": A}),
        ("3.6.0", {1: VALID_ENTRY}),
    ],
)
def test_render_rejects_bad_input(version, configs) -> None:
    with pytest.raises(ExportError):
        render_config_file(version, configs)


# --- reading ----------------------------------------------------------------------------


def test_read_golden() -> None:
    version, configs = read_config_file(GOLDEN)
    assert version == "3.6.0"
    assert configs == GOLDEN_CONFIGS
    assert list(configs) == list(GOLDEN_CONFIGS)


def test_round_trip_keeps_configs_and_order(tmp_path: Path) -> None:
    ours = {2048: D, 1: A, 64: C, 8: B}
    path = write_config_file(tmp_path / GOLDEN_NAME, FUSED_MOE, "3.5.1", ours)
    version, configs = read_config_file(path)
    assert version == "3.5.1"
    assert configs == ours
    assert list(configs) == [2048, 1, 64, 8]


def test_read_tolerates_split_k_one_and_missing_version(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"1": {**VALID_ENTRY, "SPLIT_K": 1}, "2": VALID_ENTRY}, indent=4))
    version, configs = read_config_file(path)
    assert version is None
    assert configs == {1: A, 2: A}


@pytest.mark.parametrize(
    "body, key, rule",
    [
        ({"triton_version": "3.6.0", "abc": VALID_ENTRY}, "'abc'", "batch size"),
        ({"1": VALID_ENTRY, "-4": VALID_ENTRY}, "'-4'", "positive integer"),
        ({"1": VALID_ENTRY, "2": {k: v for k, v in VALID_ENTRY.items() if k != "num_warps"}}, "'2'", "missing key(s) num_warps"),
        ({"1": {**VALID_ENTRY, "BLOCK_SIZE_N": "64"}}, "'1'", "BLOCK_SIZE_N = '64' must be an integer"),
        ({"1": {**VALID_ENTRY, "num_stages": 2.5}}, "'1'", "must be an integer"),
        ({"8": {**VALID_ENTRY, "BLOCK_SIZE_Q": 16}}, "'8'", "unknown key 'BLOCK_SIZE_Q'"),
        ({"8": {**VALID_ENTRY, "SPLIT_K": 2}}, "'8'", "unknown key 'SPLIT_K'"),
        ({"8": [16, 64, 64, 1, 4, 3]}, "'8'", "object"),
        ({"triton_version": 3.6, "1": VALID_ENTRY}, "'triton_version'", "string"),
    ],
)
def test_read_rejects_bad_file_naming_file_and_key(tmp_path: Path, body, key, rule) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(body, indent=4))
    with pytest.raises(ExportError) as info:
        read_config_file(path)
    message = str(info.value)
    assert str(path) in message
    assert f"key {key}" in message
    assert rule in message


def test_read_rejects_non_json_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n    "triton_version": "3.6.0",\n    "1": {,\n}\n')
    with pytest.raises(ExportError) as info:
        read_config_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid JSON" in message
    assert "line 3, column 11" in message


def test_read_rejects_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    entry = json.dumps(VALID_ENTRY)
    path.write_text(f'{{"1": {entry}, "2": {entry}, "1": {entry}}}')
    with pytest.raises(ExportError, match=r"key '1' appears more than once"):
        read_config_file(path)


@pytest.mark.parametrize("text", ["[1, 2]", '{"triton_version": "3.6.0"}'])
def test_read_rejects_file_without_batch_sizes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.json"
    path.write_text(text)
    with pytest.raises(ExportError, match="empty.json"):
        read_config_file(path)


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such file"):
        read_config_file(tmp_path / "absent.json")


def test_export_error_is_a_searcher_error() -> None:
    assert issubclass(ExportError, SearcherError)


# --- writing ----------------------------------------------------------------------------


def test_write_refuses_existing_file(tmp_path: Path) -> None:
    path = tmp_path / GOLDEN_NAME
    path.write_bytes(b"original")
    with pytest.raises(ExportError) as info:
        write_config_file(path, FUSED_MOE, "3.6.0", {1: A})
    assert str(info.value) == (
        f"{path} exists; pass --overwrite to replace it or --merge to update its batch sizes"
    )
    assert path.read_bytes() == b"original"


def test_write_overwrite_replaces(tmp_path: Path) -> None:
    path = tmp_path / GOLDEN_NAME
    write_config_file(path, FUSED_MOE, "3.5.0", {1: A, 2: B})
    write_config_file(path, FUSED_MOE, "3.6.0", {64: C}, overwrite=True)
    assert read_config_file(path) == ("3.6.0", {64: C})
    assert path.read_text() == render_config_file("3.6.0", {64: C})


def test_write_merge_keeps_other_keys_and_sorts(tmp_path: Path) -> None:
    path = tmp_path / GOLDEN_NAME
    write_config_file(path, FUSED_MOE, "3.5.0", {256: A, 1: A, 64: A})
    write_config_file(path, FUSED_MOE, "3.6.0", {64: B, 8: C, 4096: D}, merge=True)
    version, configs = read_config_file(path)
    assert version == "3.6.0"
    assert list(configs) == [1, 8, 64, 256, 4096]
    assert configs == {1: A, 8: C, 64: B, 256: A, 4096: D}


def test_write_merge_without_existing_file_sorts(tmp_path: Path) -> None:
    path = tmp_path / GOLDEN_NAME
    write_config_file(path, FUSED_MOE, "3.6.0", {64: B, 8: C}, merge=True)
    assert list(read_config_file(path)[1]) == [8, 64]


def test_write_merge_refuses_invalid_existing_file(tmp_path: Path) -> None:
    path = tmp_path / GOLDEN_NAME
    path.write_text("not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        write_config_file(path, FUSED_MOE, "3.6.0", {1: A}, merge=True)
    assert path.read_text() == "not json"


def test_write_refuses_both_flags(tmp_path: Path) -> None:
    with pytest.raises(ExportError):
        write_config_file(tmp_path / "x.json", FUSED_MOE, "3.6.0", {1: A}, overwrite=True, merge=True)


def test_write_new_file_is_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_config_file(tmp_path / GOLDEN_NAME, FUSED_MOE, "3.6.0", {1: A})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def _fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_write_failure_leaves_original_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    path = tmp_path / GOLDEN_NAME
    write_config_file(path, FUSED_MOE, "3.5.0", {1: A, 2: B})
    before = path.read_bytes()
    monkeypatch.setattr(os, target, _fail)
    with pytest.raises(ExportError, match="No space left on device"):
        write_config_file(path, FUSED_MOE, "3.6.0", {1: C}, overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [GOLDEN_NAME]


def test_write_interrupted_leaves_original_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / GOLDEN_NAME
    write_config_file(path, FUSED_MOE, "3.5.0", {1: A})
    before = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_config_file(path, FUSED_MOE, "3.6.0", {4: D}, merge=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [GOLDEN_NAME]


def test_write_into_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ExportError, match=f"directory {missing} does not exist"):
        write_config_file(missing / GOLDEN_NAME, FUSED_MOE, "3.6.0", {1: A})
    assert not missing.exists()


def test_write_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "configs"
    blocker.write_text("I am a file")
    with pytest.raises(ExportError, match=f"{blocker} is not a directory"):
        write_config_file(blocker / GOLDEN_NAME, FUSED_MOE, "3.6.0", {1: A})
    assert blocker.read_text() == "I am a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_write_into_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ExportError, match=f"directory {locked} is not writable"):
            write_config_file(locked / GOLDEN_NAME, FUSED_MOE, "3.6.0", {1: A})
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_write_refuses_directory_as_path(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is a directory"):
        write_config_file(tmp_path, FUSED_MOE, "3.6.0", {1: A}, overwrite=True)


def test_write_bad_configs_touch_nothing(tmp_path: Path) -> None:
    path = tmp_path / GOLDEN_NAME
    path.write_bytes(b"original")
    with pytest.raises(ExportError):
        write_config_file(path, FUSED_MOE, "3.6.0", {}, overwrite=True)
    assert path.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == [GOLDEN_NAME]


# --- lookup -----------------------------------------------------------------------------

LOOKUP = {1: A, 8: B, 16: C, 64: D}


def test_nearest_exact_hit() -> None:
    assert nearest_config(LOOKUP, 16) is C
    assert nearest_config(LOOKUP, 1) is A


def test_nearest_between_keys() -> None:
    assert nearest_config(LOOKUP, 6) is B  # |6-8| = 2 < |6-1| = 5
    assert nearest_config(LOOKUP, 30) is C  # |30-16| = 14 < |30-64| = 34
    assert nearest_config(LOOKUP, 50) is D


def test_nearest_tie_takes_first_in_file_order() -> None:
    assert nearest_config({8: A, 16: B}, 12) is A
    assert nearest_config({16: B, 8: A}, 12) is B
    assert nearest_config(LOOKUP, 40) is C  # 24 from 16 and from 64


def test_nearest_beyond_the_ends() -> None:
    assert nearest_config({8: B, 16: C, 64: D}, 1) is B
    assert nearest_config(LOOKUP, 100_000) is D


def test_nearest_empty() -> None:
    with pytest.raises(ExportError):
        nearest_config({}, 4)


@pytest.mark.parametrize(("name", "says"), [
    ("E=128,N=1408,device_name=NVIDIA_H200.json", "its name says E=128,N=1408 (bf16/fp16)"),
    ("E=64,N=704,device_name=NVIDIA_H200.json", "its name says E=64,N=704 (bf16/fp16)"),
    ("E=64,N=1408,device_name=NVIDIA_H200,dtype=fp8_w8a8.json",
     "its name says E=64,N=1408,dtype=fp8_w8a8"),
])
def test_a_file_named_for_another_layer_is_refused_naming_both(name: str, says: str) -> None:
    from searcher.errors import ConfigError
    from searcher.kernels.fused_moe.vllm_file import check_file_name

    with pytest.raises(ConfigError, match=re.escape(says) + ".*this study's layer is "
                       + re.escape("E=64,N=1408 (bf16/fp16)")):
        check_file_name(f"x/{name}", "E=64,N=1408,device_name=DEVICE.json")


@pytest.mark.parametrize("name", ["E=64,N=1408,device_name=NVIDIA_A100.json", "mine.json",
                                  "E=64,N=1408,device_name=NVIDIA_H200,backup.json.bak"])
def test_a_file_of_the_layer_or_named_otherwise_is_accepted(name: str) -> None:
    from searcher.kernels.fused_moe.vllm_file import check_file_name

    check_file_name(name, "E=64,N=1408,device_name=DEVICE.json")
