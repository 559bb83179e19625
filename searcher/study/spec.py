"""Study specs: what to tune, on which GPU, over which space, with what budget.

A spec is a TOML file under ``studies/`` (its stem is the study's name)::

    schema = 1
    description = "DeepSeek-V2-Lite style MoE on one H100"   # optional
    kernel = "fused_moe"               # a kernel of searcher.kernels.KERNELS
    gpu = "NVIDIA_H100_80GB_HBM3"      # vLLM's spelling of the device name
    backend = "builtin"                # optional: one of the kernel's backends, default builtin

    [shape]                            # the kernel's problem (Kernel.parse_problem)
    E = 64
    N = 1408
    hidden = 2048
    top_k = 6
    dtype = "bf16"                     # optional, default bf16

    [search]
    space = "vllm-432"                 # a space name, or a path ending in .toml
    batch_sizes = [1, 2, 4]            # optional, default vLLM's 18
    sampler = "tpe"                    # optional
    pruner = "ratio"                   # optional
    pruner_ratio = 1.10                # optional, only with pruner = "ratio"
    trials_per_m = 40                  # a budget: this and/or time_limit_s
    time_limit_s = 3600                # optional
    startup_trials = 8                 # optional
    seed = 0                           # optional
    finalists = 4                      # optional

    [storage]
    url = "sqlite:///searcher.db"      # optional

    [gpu_facts]                        # only for GPUs not in device.KNOWN_GPUS
    shared_mem_per_block = 232448
    sm_count = 132

:func:`load_spec` validates all of it before anything runs and loads the space it names.
Every problem is a :class:`SpecError` whose message starts with the spec's path and names
the key, the value and the rule it broke.

Decisions:
    * ``gpu`` may be any GPU, but it must be spelled the way vLLM spells device names in its
      config files (``NVIDIA_H100_80GB_HBM3``, not ``NVIDIA H100 80GB HBM3``), since that
      name ends up in storage and file names. A GPU outside ``KNOWN_GPUS`` needs a
      ``[gpu_facts]`` table (what space constraints ask of a GPU without having it); one
      inside may have the table too, which then wins.
    * ``time_limit_s = 0`` is an error, not "no limit": leave the key out for no limit.
    * ``pruner_ratio`` with a pruner other than ``ratio`` is an error rather than silently
      unused.
    * ``startup_trials`` and ``finalists`` may be 0; ``seed`` must fit numpy's seeds
      (0 <= seed < 2**32).
    * ``storage.url`` must look like a database URL (hold ``://``); a relative SQLite path
      is relative to the directory searcher runs in, not to the spec.
    * Space names are looked up in :func:`spaces_dirs` only; a value ending in ``.toml`` is
      a path, read relative to the spec file.
"""

from __future__ import annotations

import math
import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, cast

from searcher.measure.device import KNOWN_GPUS, GpuFacts, vllm_device_name
from searcher.errors import SpaceError, SpecError, did_you_mean
from searcher.kernels import KERNELS, get_kernel
from searcher.strategies.pruners import DEFAULT_PRUNER, DEFAULT_RATIO, check_pruner_name
from searcher.strategies.samplers import DEFAULT_SAMPLER, DEFAULT_STARTUP_TRIALS, check_sampler_name

if TYPE_CHECKING:  # pragma: no cover - typing only
    from searcher.kernels.base import Kernel, Problem
    from searcher.study.space import Space

__all__ = [
    "StudySpec",
    "check_configs_exist",
    "load_spec",
    "spec_from_toml",
    "find_spec",
    "find_space",
    "list_specs",
    "studies_dirs",
    "spaces_dirs",
    "SCHEMA_VERSION",
    "DEFAULT_BACKEND",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_STORAGE",
    "DEFAULT_SEED",
    "DEFAULT_FINALISTS",
]

#: The spec format this code reads.
SCHEMA_VERSION = 1

#: Who runs the kernel unless the spec says: searcher's own Triton copy (a kernel's
#: ``backends()`` name the others, e.g. vLLM's installed one).
DEFAULT_BACKEND = "builtin"

#: vLLM's tuner's batch sizes (benchmarks/kernels/benchmark_moe.py).
DEFAULT_BATCH_SIZES: tuple[int, ...] = (
    1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096,
)

#: Where studies are stored unless the spec says otherwise (relative to the working dir).
DEFAULT_STORAGE = "sqlite:///searcher.db"
DEFAULT_SEED = 0
#: The largest batch size a study may list: 2**20 tokens. vLLM's own tuned files stop at
#: 4096 (some at 16384); a million tokens' activations (hidden x top_k x 2 bytes each, plus
#: the intermediate) already fill an H200, so a larger M is a typo, not a workload.
MAX_BATCH_SIZE = 2**20
#: Top candidates re-measured at the long fidelity at the end of each batch size.
DEFAULT_FINALISTS = 4

_PROJECT_ROOT = Path(__file__).resolve().parents[2]

_TOP_KEYS = ("schema", "description", "kernel", "gpu", "backend",
             "shape", "search", "storage", "gpu_facts")
_SEARCH_KEYS = ("space", "batch_sizes", "sampler", "pruner", "pruner_ratio", "trials_per_m",
                "time_limit_s", "startup_trials", "seed", "finalists")
_STORAGE_KEYS = ("url",)
_GPU_FACTS_KEYS = ("shared_mem_per_block", "sm_count")
_SEED_LIMIT = 2**32


@dataclass(frozen=True)
class StudySpec:
    """A validated study spec, with its kernel, problem and space loaded.

    ``kernel`` is the :class:`~searcher.kernels.base.Kernel` the spec's ``kernel`` key
    names; ``shape`` is that kernel's problem (the ``[shape]`` table, parsed by the
    kernel). ``trials_per_m`` and ``time_limit_s`` are the budget; at least one is set.
    """

    name: str
    path: Path
    description: str
    kernel: Kernel
    gpu: str
    gpu_facts: GpuFacts
    backend: str
    shape: Problem
    space: Space
    batch_sizes: tuple[int, ...]
    sampler: str
    pruner: str
    pruner_ratio: float
    trials_per_m: int | None
    time_limit_s: float | None
    startup_trials: int
    seed: int
    finalists: int
    storage: str
    #: How the command line names this study (``--study NAME``, or the ``--model ...``
    #: options it was made from), for messages that suggest a command.
    selector: str | None = None

    @property
    def cli_selector(self) -> str:
        return self.selector or f"--study {self.name}"

    def command(self, verb: str, storage_url: str | None = None) -> str:
        """The searcher command that runs ``verb`` on this study, with ``--storage`` when
        ``storage_url`` is not the study's own (for messages that suggest a command)."""
        flag = f" --storage {shlex.quote(storage_url)}" \
            if storage_url and storage_url != self.storage else ""
        return f"searcher {verb} {self.cli_selector}{flag}"

    def pruner_options(self) -> dict[str, Any]:
        """Keyword options for :func:`searcher.strategies.pruners.make_pruner` for this
        spec's pruner."""
        return {"ratio": self.pruner_ratio} if self.pruner == "ratio" else {}


def check_configs_exist(spec: StudySpec, batch_sizes: Sequence[int] | None = None) -> None:
    """Refuse a study whose space holds no valid config for one of its batch sizes
    (its constraints reject them all there), before anything is stored or measured.

    Raises:
        SpaceError: naming the space, the batch size, the shape and the GPU.
    """
    for M in batch_sizes or spec.batch_sizes:
        if not spec.space.any_valid(spec.kernel.context(spec.shape, M, spec.gpu_facts)):
            where = spec.space.path or spec.space.name
            raise SpaceError(
                f"space {where}: no config is valid for M={M} of shape {spec.shape.label()} "
                f"on {spec.gpu}: its constraints reject all {spec.space.raw_size():,} configs")


# --- where specs and spaces live -------------------------------------------------------

def _search_dirs(env_var: str, folder: str) -> list[Path]:
    candidates: list[Path] = []
    env = os.environ.get(env_var, "")
    candidates += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    candidates.append(Path.cwd() / folder)
    candidates.append(_PROJECT_ROOT / folder)
    unique: list[Path] = []
    seen: set[Path] = set()
    for d in candidates:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def studies_dirs() -> list[Path]:
    """Where study names are looked up, first match wins: each folder in
    ``$SEARCHER_STUDIES`` (``os.pathsep``-separated), ``./studies``, then the project's own
    ``studies/``. Duplicates are dropped; folders that do not exist are kept (and skipped
    when searching) so error messages can say where they looked."""
    return _search_dirs("SEARCHER_STUDIES", "studies")


def spaces_dirs() -> list[Path]:
    """Where space names are looked up: ``$SEARCHER_SPACES``, ``./spaces``, then the
    project's own ``spaces/`` (same rules as :func:`studies_dirs`)."""
    return _search_dirs("SEARCHER_SPACES", "spaces")


def _available(dirs: Iterable[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, p)
    return dict(sorted(found.items()))


def list_specs(dirs: Sequence[Path] | None = None) -> dict[str, Path]:
    """Every study reachable by name, sorted by name, mapped to its file.

    Args:
        dirs: folders to look in; :func:`studies_dirs` when None. A name in an earlier
            folder hides the same name in a later one.
    """
    return _available(studies_dirs() if dirs is None else dirs)



def _not_found(kind: str, name: str, dirs: Sequence[Path]) -> SpecError:
    available = _available(dirs)
    listed = ", ".join(available) if available else "none"
    where = ", ".join(str(d) for d in dirs)
    return SpecError(
        f"unknown {kind} {name!r}{did_you_mean(name, available)}; "
        f"available: {listed}; looked for {name}.toml in: {where}"
    )


def _is_path(name: str) -> bool:
    return name.endswith(".toml") or "/" in name or os.sep in name


def find_spec(name_or_path: str | os.PathLike[str],
              studies_dirs: Sequence[Path] | None = None) -> Path:
    """The file of a study given by name (``h100-e64-n1408``) or path.

    A value ending in ``.toml`` or holding a path separator is a path; anything else is a
    name looked up in ``studies_dirs`` (default: :func:`studies_dirs`).

    Raises:
        SpecError: no such file, or no study of that name; the message lists the studies
            there are and suggests the closest.
    """
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or _is_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise SpecError(f"{text}: no such study file")
        return path
    dirs = list(studies_dirs) if studies_dirs is not None else _search_dirs(
        "SEARCHER_STUDIES", "studies")
    for d in dirs:
        candidate = d / f"{text}.toml"
        if candidate.is_file():
            return candidate
    raise _not_found("study", text, dirs)


def find_space(name: str, relative_to: str | os.PathLike[str] | None = None,
               dirs: Sequence[Path] | None = None) -> Path:
    """The file of a search space given by name (``vllm-432``) or ``.toml`` path.

    Args:
        name: a space name, looked up as ``{name}.toml`` in ``dirs``; or a path ending in
            ``.toml``, read relative to ``relative_to``.
        relative_to: the spec file (or a folder) that relative space paths start from;
            the working directory when None.
        dirs: folders to look names up in; :func:`spaces_dirs` when None.

    Raises:
        SpecError: the file does not exist; the message says where it looked.
    """
    if name.endswith(".toml"):
        path = Path(name).expanduser()
        if not path.is_absolute():
            base = Path.cwd() if relative_to is None else Path(relative_to)
            if base.suffix == ".toml" or base.is_file():
                base = base.parent
            path = base / path
        if not path.is_file():
            raise SpecError(f"space file {name!r} not found: no file {path}")
        return path
    dirs = list(dirs) if dirs is not None else spaces_dirs()
    for d in dirs:
        candidate = d / f"{name}.toml"
        if candidate.is_file():
            return candidate
    raise _not_found("space", name, dirs)


# --- reading and checking a spec -------------------------------------------------------

def _show(value: Any) -> str:
    """A value as the user wrote it in TOML, near enough."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """Reads one spec's tables, turning every problem into a SpecError naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, message: str) -> SpecError:
        return SpecError(f"{self.path}: {message}")

    def keys(self, table: Mapping[str, Any], allowed: Sequence[str], section: str) -> None:
        for key in table:
            if key not in allowed:
                where = f"{section}.{key}" if section else key
                scope = f"[{section}]" if section else "the top level"
                raise self.error(
                    f"unknown key {where!r}{did_you_mean(key, allowed)}; "
                    f"{scope} takes: {', '.join(allowed)}"
                )

    def table(self, data: Mapping[str, Any], key: str, required: bool) -> dict[str, Any] | None:
        if key not in data:
            if required:
                raise self.error(f"missing required table [{key}]")
            return None
        value = data[key]
        if not isinstance(value, dict):
            raise self.error(f"{key} = {_show(value)} must be a table ([{key}])")
        return value

    def present(self, table: Mapping[str, Any], key: str, section: str, required: bool) -> bool:
        if key in table:
            return True
        if required:
            where = f"in [{section}]" if section else "at the top level"
            raise self.error(f"missing required key {self.name(section, key)!r} {where}")
        return False

    @staticmethod
    def name(section: str, key: str) -> str:
        return f"{section}.{key}" if section else key

    def integer(self, table: Mapping[str, Any], key: str, section: str = "", *,
                required: bool = False, default: int | None = None, minimum: int | None = None,
                below: int | None = None) -> int | None:
        if not self.present(table, key, section, required):
            return default
        value = table[key]
        shown = f"{self.name(section, key)} = {_show(value)}"
        if not _is_int(value):
            raise self.error(f"{shown} must be an integer")
        if minimum is not None and value < minimum:
            rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.error(f"{shown} must be {rule}")
        if below is not None and value >= below:
            raise self.error(f"{shown} must be below {below}")
        return value

    def number(self, table: Mapping[str, Any], key: str, section: str, *,
               default: float | None, above: float) -> float | None:
        if not self.present(table, key, section, False):
            return default
        value = table[key]
        shown = f"{self.name(section, key)} = {_show(value)}"
        if not _is_number(value) or not math.isfinite(value):
            raise self.error(f"{shown} must be a finite number")
        if value <= above:
            raise self.error(f"{shown} must be greater than {above:g}")
        return float(value)

    def string(self, table: Mapping[str, Any], key: str, section: str = "", *,
               required: bool = False, default: str | None = None,
               choices: Sequence[str] | None = None, nonempty: bool = True) -> str | None:
        if not self.present(table, key, section, required):
            return default
        value = table[key]
        shown = f"{self.name(section, key)} = {_show(value)}"
        if not isinstance(value, str):
            raise self.error(f"{shown} must be a string")
        if nonempty and not value.strip():
            raise self.error(f"{shown} must not be empty")
        if choices is not None and value not in choices:
            raise self.error(
                f"{shown} must be one of: {', '.join(choices)}{did_you_mean(value, choices)}"
            )
        return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such study file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None


def _gpu(check: _Checker, data: Mapping[str, Any]) -> tuple[str, GpuFacts]:
    gpu = cast(str, check.string(data, "gpu", required=True))
    spelled = vllm_device_name(gpu)
    if spelled != gpu:
        raise check.error(
            f"gpu = {gpu!r} is not spelled the way vLLM names devices; write {spelled!r}"
        )
    table = check.table(data, "gpu_facts", required=False)
    if table is None:
        if gpu not in KNOWN_GPUS:
            raise check.error(
                f"gpu = {gpu!r} is not a GPU searcher knows{did_you_mean(gpu, KNOWN_GPUS)} "
                f"(known: {', '.join(KNOWN_GPUS)}); for another GPU add a [gpu_facts] table "
                f"with {' and '.join(_GPU_FACTS_KEYS)}"
            )
        return gpu, KNOWN_GPUS[gpu]
    check.keys(table, _GPU_FACTS_KEYS, "gpu_facts")
    values = {k: cast(int, check.integer(table, k, "gpu_facts", required=True, minimum=1))
              for k in _GPU_FACTS_KEYS}
    return gpu, GpuFacts(**values)


def _problem(check: _Checker, data: Mapping[str, Any], kernel: Kernel) -> Problem:
    table = cast(dict, check.table(data, "shape", required=True))
    try:
        return kernel.parse_problem(table)
    except SpecError as exc:
        raise check.error(str(exc)) from None


def _batch_sizes(check: _Checker, table: Mapping[str, Any]) -> tuple[int, ...]:
    if "batch_sizes" not in table:
        return DEFAULT_BATCH_SIZES
    value = table["batch_sizes"]
    if not isinstance(value, list):
        raise check.error(f"search.batch_sizes = {_show(value)} must be a list of integers")
    if not value:
        raise check.error("search.batch_sizes = [] must list at least one batch size")
    seen: set[int] = set()
    for i, m in enumerate(value):
        if not _is_int(m) or m < 1:
            raise check.error(
                f"search.batch_sizes[{i}] = {_show(m)} must be a positive integer (a batch size M)"
            )
        if m > MAX_BATCH_SIZE:
            raise check.error(
                f"search.batch_sizes[{i}] = {m} is above the largest batch size searcher "
                f"tunes, M <= {MAX_BATCH_SIZE:,} (2**20)")
        if m in seen:
            raise check.error(
                f"search.batch_sizes = {value} lists M = {m} twice; each batch size must "
                "appear once"
            )
        seen.add(m)
    return tuple(value)


def _load_space(check: _Checker, name: str, kernel: Kernel) -> Space:
    from searcher.study.space import load_space

    try:
        space_path = find_space(name, relative_to=check.path)
    except SpecError as exc:
        raise check.error(f"search.space = {name!r}: {exc}") from None
    try:
        return load_space(space_path, kernel)
    except SpaceError as exc:
        raise check.error(f"search.space = {name!r}: {exc}") from exc


def load_spec(path: str | os.PathLike[str]) -> StudySpec:
    """Read, validate and resolve a study spec, space included.

    Args:
        path: the spec file. Its stem is the study's name.

    Raises:
        SpecError: anything wrong with the file or the space it names (a SpaceError from
            the space is wrapped, prefixed with the spec's path); the message starts with
            the spec's path and names the key, the value and the rule.
    """
    path = Path(path)
    return _spec_from_data(_read_toml(path), path)


def spec_from_toml(text: str, path: str | os.PathLike[str]) -> StudySpec:
    """A spec from TOML text as if read from ``path`` (which need not exist; its stem is
    the study's name, and relative space paths start from its folder): what a study made
    from a model (:mod:`searcher.study.model_study`) runs without being written.

    Raises:
        SpecError: as :func:`load_spec`.
    """
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return _spec_from_data(data, path)


def _spec_from_data(data: dict[str, Any], path: Path) -> StudySpec:
    check = _Checker(path)

    schema = check.integer(data, "schema", required=True)
    if schema != SCHEMA_VERSION:
        raise check.error(f"schema = {schema} is not supported; this searcher reads "
                          f"schema = {SCHEMA_VERSION}")
    check.keys(data, _TOP_KEYS, "")
    description = cast(str, check.string(data, "description", default="", nonempty=False))
    kernel = get_kernel(cast(str, check.string(data, "kernel", required=True,
                                               choices=tuple(KERNELS))))
    gpu, facts = _gpu(check, data)
    backend = cast(str, check.string(data, "backend", default=DEFAULT_BACKEND,
                                     choices=kernel.backends()))
    shape = _problem(check, data, kernel)

    search = cast(dict, check.table(data, "search", required=True))
    check.keys(search, _SEARCH_KEYS, "search")
    space_name = cast(str, check.string(search, "space", "search", required=True))
    batch_sizes = _batch_sizes(check, search)
    sampler = cast(str, check.string(search, "sampler", "search", default=DEFAULT_SAMPLER))
    try:
        check_sampler_name(sampler)
    except SpecError as exc:
        raise check.error(f"search.sampler: {exc}") from None
    pruner = cast(str, check.string(search, "pruner", "search", default=DEFAULT_PRUNER))
    try:
        check_pruner_name(pruner)
    except SpecError as exc:
        raise check.error(f"search.pruner: {exc}") from None
    if "pruner_ratio" in search and pruner != "ratio":
        raise check.error(
            f"search.pruner_ratio = {_show(search['pruner_ratio'])} only applies to "
            f"pruner = 'ratio', not {pruner!r}; remove it or use the ratio pruner"
        )
    pruner_ratio = cast(float, check.number(search, "pruner_ratio", "search",
                                            default=DEFAULT_RATIO, above=1.0))
    trials_per_m = check.integer(search, "trials_per_m", "search", minimum=1)
    time_limit_s = check.number(search, "time_limit_s", "search", default=None, above=0.0)
    if trials_per_m is None and time_limit_s is None:
        raise check.error(
            "[search] has no budget: set trials_per_m (benchmarked trials per batch size), "
            "time_limit_s (wall-clock seconds per run), or both"
        )
    startup_trials = cast(int, check.integer(search, "startup_trials", "search",
                                             default=DEFAULT_STARTUP_TRIALS, minimum=0))
    seed = cast(int, check.integer(search, "seed", "search", default=DEFAULT_SEED, minimum=0,
                                   below=_SEED_LIMIT))
    finalists = cast(int, check.integer(search, "finalists", "search",
                                        default=DEFAULT_FINALISTS, minimum=0))

    storage_table = check.table(data, "storage", required=False) or {}
    check.keys(storage_table, _STORAGE_KEYS, "storage")
    storage = cast(str, check.string(storage_table, "url", "storage", default=DEFAULT_STORAGE))
    if "://" not in storage:
        raise check.error(
            f"storage.url = {storage!r} is not a database URL; write e.g. {DEFAULT_STORAGE!r}"
        )

    space = _load_space(check, space_name, kernel)

    return StudySpec(
        name=path.stem,
        path=path,
        description=description,
        kernel=kernel,
        gpu=gpu,
        gpu_facts=facts,
        backend=backend,
        shape=shape,
        space=space,
        batch_sizes=batch_sizes,
        sampler=sampler,
        pruner=pruner,
        pruner_ratio=pruner_ratio,
        trials_per_m=trials_per_m,
        time_limit_s=time_limit_s,
        startup_trials=startup_trials,
        seed=seed,
        finalists=finalists,
        storage=storage,
    )
