"""Name, render and read vLLM's fused-MoE config files, byte for byte in vLLM's layout.

A file is named ``E={E},N={N},device_name={DEV}{dtype}{block}.json`` and holds a JSON
object: ``"triton_version"`` first, then one key per batch size M (a decimal string) mapping
to the six config keys in vLLM's order, written with ``indent=4`` and a trailing newline.
Writing one (atomically, merging into an existing file) and vLLM's nearest-key lookup are
the same for every kernel's files: :mod:`searcher.results.export`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from searcher.kernels.fused_moe.config import KernelConfig
from searcher.measure.device import vllm_device_name
from searcher.errors import ConfigError, ExportError

__all__ = [
    "check_file_name",
    "installed_config_file",
    "DTYPE_SUFFIXES",
    "config_file_name",
    "render_config_file",
    "read_config_file",
]

#: searcher's dtype names -> the ``dtype=`` selector vLLM puts in the file name (None: no
#: selector). vLLM shares one file between bf16 and fp16 and names fp32 ``float32``.
DTYPE_SUFFIXES: dict[str, str | None] = {
    "bf16": None,
    "fp16": None,
    "fp32": "float32",
    "fp8_w8a8": "fp8_w8a8",
    "int8_w8a8": "int8_w8a8",
    "int8_w8a16": "int8_w8a16",
    "int4_w4a16": "int4_w4a16",
    "int4_w4a8": "int4_w4a8",
    "mxfp4_w4a4": "mxfp4_w4a4",
}

_TRITON_VERSION_KEY = "triton_version"
# Batch-size keys as vLLM writes them: positive decimal integers without sign or padding,
# so that reading and writing a file is an exact round trip.
_BATCH_KEY = re.compile(r"[1-9][0-9]*")


def config_file_name(
    E: int,
    N: int,
    device_name: str,
    dtype: str = "bf16",
    block_shape: tuple[int, int] | None = None,
) -> str:
    """The file name vLLM looks for, e.g. ``E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json``.

    Args:
        E: number of experts.
        N: intermediate size per partition (the N of ``w2``'s ``[E, H, N]``).
        device_name: the GPU's name, raw (``"NVIDIA H100 80GB HBM3"``) or already in vLLM's
            form; normalised with :func:`searcher.measure.device.vllm_device_name`, which is
            idempotent.
        dtype: one of :data:`DTYPE_SUFFIXES`; bf16 and fp16 add no selector.
        block_shape: ``(n, k)`` of block-quantised weights; adds ``,block_shape=[n,k]``.

    Raises:
        ExportError: E or N is not a positive integer, the device name is empty, the dtype
            is unknown, or the block shape is not two positive integers.
    """
    for name, value in (("E", E), ("N", N)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExportError(f"{name} = {value!r} must be a positive integer")
    device = vllm_device_name(device_name)
    if not device.strip("_"):
        raise ExportError(f"device_name = {device_name!r} must name a GPU")
    if dtype not in DTYPE_SUFFIXES:
        raise ExportError(f"dtype = {dtype!r} must be one of: {', '.join(DTYPE_SUFFIXES)}")
    suffix = DTYPE_SUFFIXES[dtype]
    dtype_part = f",dtype={suffix}" if suffix else ""
    block_part = ""
    if block_shape is not None:
        shape = tuple(block_shape)
        if len(shape) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape
        ):
            raise ExportError(
                f"block_shape = {block_shape!r} must be two positive integers, like (128, 128)"
            )
        block_part = f",block_shape=[{shape[0]},{shape[1]}]"
    return f"E={E},N={N},device_name={device}{dtype_part}{block_part}.json"


#: vLLM's file name: E, N, the device, then the dtype and block selectors.
_NAME = re.compile(r"^E=(\d+),N=(\d+),device_name=(.+?)((?:,dtype=[^,]+)?(?:,block_shape=\[\d+, ?\d+\])?)\.json$")


def check_file_name(path: str | Path, expected: str) -> None:
    """Refuse a vLLM config file whose name says another layer than ``expected`` (the
    study's file name): another E, N or dtype/block selector. The device may differ
    (comparing with another GPU's file is allowed), and a file named otherwise (a
    renamed copy) is accepted: only vLLM's own pattern is read.

    Raises:
        ConfigError: naming both file names.
    """
    given = _NAME.match(Path(path).name)
    want = _NAME.match(expected)
    if given is None or want is None:
        return
    if (given[1], given[2], given[4].replace(" ", "")) != (want[1], want[2], want[4]):
        def says(m: re.Match) -> str:
            return f"E={m[1]},N={m[2]}{m[4].replace(' ', '') or ' (bf16/fp16)'}"

        raise ConfigError(
            f"--against {path}: its name says {says(given)}, but this study's layer is "
            f"{says(want)}; compare a file of the study's layer (of any GPU), or rename a copy "
            "if the name is wrong")


def render_config_file(triton_version: str, configs: Mapping[int, KernelConfig]) -> str:
    """The text of a config file, exactly as vLLM's tuner writes it.

    Batch sizes keep the order of ``configs`` (the tuning order); they are not re-sorted.

    Args:
        triton_version: the Triton version that tuned the configs, e.g. ``"3.6.0"``.
        configs: batch size M -> config.

    Raises:
        ExportError: the version is not a non-empty string, there are no configs, or a key
            is not a positive integer or a value not a :class:`KernelConfig`.
    """
    if not isinstance(triton_version, str) or not triton_version.strip():
        raise ExportError(f"triton_version = {triton_version!r} must be a non-empty string")
    if not configs:
        raise ExportError("no configs to write: a vLLM config file needs at least one batch size")
    body: dict[str, Any] = {_TRITON_VERSION_KEY: triton_version}
    for M, config in configs.items():
        if isinstance(M, bool) or not isinstance(M, int) or M < 1:
            raise ExportError(f"batch size {M!r} must be a positive integer")
        if not isinstance(config, KernelConfig):
            raise ExportError(f"batch size {M}: {config!r} is not a KernelConfig")
        body[str(M)] = config.to_dict()
    return json.dumps(body, indent=4) + "\n"


def _reject_duplicates(where: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ExportError(f"{where}: key {key!r} appears more than once")
            result[key] = value
        return result

    return hook


def read_config_file(path: str | os.PathLike[str]) -> tuple[str | None, dict[int, KernelConfig]]:
    """Parse a vLLM config file.

    Args:
        path: the file.

    Returns:
        ``(triton_version, configs)``: the version, or None when the file has none (older
        vLLM files), and batch size -> config in file order.

    Raises:
        ExportError: the file cannot be read, is not JSON, is not an object, has a key
            that is not a positive decimal integer (besides ``triton_version``), repeats
            a key, holds no batch sizes, or holds a config that is malformed. The message
            names the file, the key and the rule.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ExportError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ExportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicates(str(path)))
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: must hold a JSON object, not {type(data).__name__}")

    triton_version: str | None = None
    configs: dict[int, KernelConfig] = {}
    for key, value in data.items():
        if key == _TRITON_VERSION_KEY:
            if not isinstance(value, str):
                raise ExportError(f"{path}: key {key!r} = {value!r} must be a string")
            triton_version = value
            continue
        if not _BATCH_KEY.fullmatch(key):
            raise ExportError(
                f"{path}: key {key!r} is not a batch size; keys other than "
                f"{_TRITON_VERSION_KEY!r} must be positive integers like \"64\""
            )
        if not isinstance(value, dict):
            raise ExportError(
                f"{path}: key {key!r} must map to an object of config keys, "
                f"not {type(value).__name__}"
            )
        try:
            configs[int(key)] = KernelConfig.from_dict(value, where=f"{path}: key {key!r}")
        except ConfigError as exc:
            raise ExportError(str(exc)) from None
    if not configs:
        raise ExportError(f"{path}: holds no batch-size keys")
    return triton_version, configs


#: The folder of vLLM's package that holds its tuned fused-MoE files (vLLM 0.33.0).
VLLM_CONFIGS_DIR = ("model_executor", "layers", "fused_moe", "configs")
#: The environment variable whose folder vLLM 0.33.0 searches before its own.
TUNED_FOLDER_ENV = "VLLM_TUNED_CONFIG_FOLDER"


def installed_config_file(name: str) -> Path:
    """The tuned file called ``name`` that vLLM would load here, found where vLLM 0.33.0
    looks (``get_moe_configs``): first in ``$VLLM_TUNED_CONFIG_FOLDER`` (used even where
    vLLM itself is not installed, e.g. a folder of files copied from the serving machine),
    then in the installed vLLM package's ``model_executor/layers/fused_moe/configs/``. The
    package is found without importing it (importing vLLM starts CUDA and takes seconds);
    a ``vllm`` folder without ``__init__.py`` (a namespace package) is not vLLM.

    Raises:
        ConfigError: neither place has the file (the message names the places searched,
            and what vLLM does then: its default config, which every search races), or
            vLLM is not installed and the folder variable names no such file.
    """
    searched = []
    folder = os.environ.get(TUNED_FOLDER_ENV)
    if folder:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
        searched.append(f"${TUNED_FOLDER_ENV} ({folder})")
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        spec = None
    # A regular package's origin is its __init__.py; a namespace package has none, and a
    # module vllm.py is no package.
    if spec is None or spec.origin is None or Path(spec.origin).name != "__init__.py":
        where = f" and {searched[0]} holds no {name}" if searched else ""
        raise ConfigError(
            f"--against vllm: vLLM is not installed in this Python{where}, so there is no "
            f"{name} to compare with; install vLLM, set ${TUNED_FOLDER_ENV} to a folder "
            "holding the file, or give the file's path (benchmarks/vllm_shipped_configs.sh "
            "takes it from vLLM's wheel)")
    package = Path(spec.origin).parent
    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        version = "of unknown version"
    candidate = package.joinpath(*VLLM_CONFIGS_DIR, name)
    if candidate.is_file():
        return candidate
    searched.append(str(candidate.parent))
    raise ConfigError(
        f"--against vllm: vLLM {version} ships no {name} (searched {' and '.join(searched)}): "
        "vLLM runs this layer with its default config, which every search already races; "
        "run without --against")
