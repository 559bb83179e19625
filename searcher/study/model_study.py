"""A study made from a model: ``searcher run --model PATH`` and ``searcher init --model``.

``--model`` is a ``config.json``, a model folder holding one, or a model id
(``ORG/NAME``) already in the local Hugging Face cache (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``; layout
``models--ORG--NAME/snapshots/<rev>/config.json``, the snapshot ``refs/main`` names, else
the newest). searcher never downloads.

The kernel maps the config to its problem (:meth:`Kernel.study_from_model`); this module
adds what is not the kernel's: the GPU (``--gpu``, else the current one), a stable name
(``{model}-{tp8|ep8}-{dtype tag}-{GPU}``, e.g. ``deepseek-v3-tp8-fp8-block128-NVIDIA_H200``),
vLLM's 18 batch sizes and the budget, rendered as a study TOML. ``init`` writes that text;
``run --model`` loads the very same text with :func:`searcher.study.spec.spec_from_toml`, so the
two are one study by construction, and rerunning the same command resumes it (studies are
stored under the problem's label, device and M, in ``sqlite:///searcher.db`` unless
``--storage``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searcher.errors import ConfigError, did_you_mean, NoGPUError, SpecError

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Kernel
    from searcher.study.spec import StudySpec

__all__ = ["ModelStudyText", "find_model_config", "read_model_config", "hub_dir",
           "resolve_gpu", "model_study_text", "model_spec", "TRIALS_PER_M"]

#: The budget of a study made from a model (see the comment written into the TOML).
TRIALS_PER_M = 40
_BUDGET_COMMENT = (
    "# Budget: 40 measured trials per batch size. On the H200 E=64 study, searcher's default\n"
    "# setup (TPE, ratio pruner, warm start) came within 1% of the exhaustive 432 grid's best\n"
    "# in a median of 2 full trials (p90 16; benchmarks/results/sampler-efficiency-*), so 40\n"
    "# leaves room for a larger space; it is 2% of vLLM's 1,920-config grid (6% of its 640\n"
    "# block-fp8 configs) per batch size.\n"
)


@dataclass(frozen=True)
class ModelStudyText:
    """A study made from a model: its name, its TOML text and notes for the user."""

    name: str
    text: str
    notes: tuple[str, ...]
    config_path: Path


def hub_dir() -> Path:
    """The Hugging Face hub cache folder searcher looks model ids up in."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _cache_name(path: Path) -> str | None:
    """``NAME`` when ``path`` is inside ``models--ORG--NAME/snapshots/<rev>``."""
    parts = path.resolve().parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            return part.split("--")[-1]
    return None


def _from_cache(model_id: str) -> Path:
    hub = hub_dir()
    folder = hub / ("models--" + model_id.replace("/", "--"))
    how = ("searcher never downloads: pass a config.json or a model folder with --model "
           f"PATH, or fetch it first (huggingface-cli download {model_id} config.json)")
    if not folder.is_dir():
        raise SpecError(f"--model {model_id}: no such file or folder, and not in the Hugging "
                        f"Face cache (looked for {folder}); {how}")
    snapshots = folder / "snapshots"
    ref = folder / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip() / "config.json"
        if candidate.is_file():
            return candidate
    found = sorted((p for p in snapshots.glob("*/config.json") if p.is_file()),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        raise SpecError(f"--model {model_id}: {folder} holds no snapshot with a config.json; "
                        f"{how}")
    return found[-1]


def find_model_config(model: str) -> tuple[Path, str]:
    """The ``config.json`` of ``--model`` and the model's name (for the study's name).

    Raises:
        SpecError: no such file or folder, a folder without config.json, or a model id
            not in the local Hugging Face cache (naming where it looked).
    """
    path = Path(model).expanduser()
    if path.is_file():
        return path, _cache_name(path.parent) or path.resolve().parent.name
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise SpecError(f"--model {model}: folder has no config.json")
        return config, _cache_name(path) or path.resolve().name
    looks_like_id = (model.count("/") == 1 and not model.startswith((".", "/", "~"))
                     and not model.endswith(".json"))
    if not looks_like_id:
        raise SpecError(f"--model {model}: no such file or folder (give a config.json, a "
                        "model folder holding one, or a model id ORG/NAME in the local "
                        "Hugging Face cache)")
    return _from_cache(model), model.split("/")[-1]


def read_model_config(path: Path) -> dict[str, Any]:
    """A ``config.json``, parsed.

    Raises:
        SpecError: unreadable, not JSON, or not a JSON object (naming the file).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column "
                        f"{exc.colno})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a model config must be a JSON object, not "
                        f"{type(data).__name__}")
    return data


def resolve_gpu(gpu: str | None) -> tuple[str, dict[str, int] | None]:
    """The study's GPU: ``gpu`` as given, else this machine's current CUDA GPU, and its
    facts when searcher does not know that GPU (for the study's ``[gpu_facts]``).

    Raises:
        NoGPUError: no ``gpu`` and no CUDA GPU here (the message says to pass --gpu).
        ConfigError: ``gpu`` is not spelled as vLLM names devices, or is a GPU searcher
            does not know (its facts cannot be planned without it).
    """
    from searcher.measure.device import KNOWN_GPUS, cuda_available, current_device, vllm_device_name

    if gpu:
        spelled = vllm_device_name(gpu)
        if spelled != gpu:
            raise ConfigError(f"--gpu {gpu}: not spelled the way vLLM names devices; "
                              f"write {spelled}")
        if gpu not in KNOWN_GPUS:
            raise ConfigError(f"--gpu {gpu}: not a GPU searcher knows{did_you_mean(gpu, KNOWN_GPUS)} "
                              f"(known: {', '.join(KNOWN_GPUS)}); on that GPU itself leave "
                              "--gpu out and its facts are read from the device")
        return gpu, None

    if not cuda_available():
        raise NoGPUError("no CUDA GPU here to plan the study for: pass --gpu NAME (vLLM's "
                         "spelling, e.g. NVIDIA_H200); --synthetic and --replay runs need it "
                         "too")
    device = current_device()
    facts = None
    if device.vllm_name not in KNOWN_GPUS:
        facts = {"shared_mem_per_block": device.shared_mem_per_block,
                 "sm_count": device.sm_count}
    return device.vllm_name, facts


def _slug(name: str) -> str:
    from searcher.kernels.fused_moe.model import slug

    return slug(name)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    return str(value)


def model_study_text(kernel: Kernel, model: str, *, tp: int = 1, ep: int = 1,
                     dtype: str = "auto", gpu: str | None = None,
                     storage: str | None = None) -> ModelStudyText:
    """The study TOML for ``model`` on ``gpu`` (this GPU when None).

    Raises:
        SpecError: the model cannot be found, read or mapped (see the kernel's
            ``study_from_model``).
        NoGPUError: no ``gpu`` and no CUDA GPU here.
    """
    from searcher.study.spec import DEFAULT_BATCH_SIZES

    config_path, model_name = find_model_config(model)
    config = read_model_config(config_path)
    try:
        made = kernel.study_from_model(config, tp=tp, ep=ep, dtype=dtype)
    except SpecError as exc:
        raise SpecError(f"{config_path}: {exc}") from None
    gpu_name, facts = resolve_gpu(gpu)
    name = f"{_slug(model_name)}-{made.name}-{gpu_name}"
    command = ["searcher init --model", model]
    command += [f"--tp {tp}"] if tp != 1 else []
    command += [f"--ep {ep}"] if ep != 1 else []
    command += [f"--dtype {dtype}", f"--gpu {gpu_name}"]
    lines = [f"# {model_name}: {made.summary}, on {gpu_name}.",
             f"# Made by `{' '.join(command)}` from {config_path}:"]
    lines += [f"#   {fact}" for fact in made.facts]
    lines += [f"# Note: {note}" for note in made.notes]
    lines += [f"# vLLM file: {kernel.file_name(made.problem, gpu_name)}", "#"]
    text = "\n".join(lines) + "\n" + _BUDGET_COMMENT
    text += (f"schema = 1\n"
             f"description = {_toml_value(f'{model_name} {made.summary}, on {gpu_name}, {made.space} space')}\n"
             f"kernel = {_toml_value(kernel.name)}\n"
             f"gpu = {_toml_value(gpu_name)}\n")
    if facts:
        text += "\n[gpu_facts]\n" + "".join(f"{k} = {v}\n" for k, v in facts.items())
    text += "\n[shape]\n" + "".join(f"{k} = {_toml_value(v)}\n"
                                    for k, v in kernel.problem_table(made.problem).items())
    text += (f"\n[search]\nspace = {_toml_value(made.space)}\n"
             f"# vLLM's tuner's 18 batch sizes (benchmark_moe.py)\n"
             f"batch_sizes = {_toml_value(list(DEFAULT_BATCH_SIZES))}\n"
             f"trials_per_m = {TRIALS_PER_M}\n")
    if storage:
        text += f"\n[storage]\nurl = {_toml_value(storage)}\n"
    return ModelStudyText(name=name, text=text, notes=made.notes, config_path=config_path)


def model_spec(kernel: Kernel, model: str, **options: Any) -> tuple[StudySpec, ModelStudyText]:
    """The spec ``searcher init`` would write for ``model``, loaded without writing it
    (options as :func:`model_study_text`)."""
    from searcher.study.spec import spec_from_toml

    made = model_study_text(kernel, model, **options)
    return spec_from_toml(made.text, Path(f"{made.name}.toml")), made
