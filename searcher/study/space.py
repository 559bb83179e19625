"""Search spaces: the values each config key may take and named constraints on them.

A space is read from a TOML file (``spaces/*.toml``)::

    schema = 1
    description = "..."
    kernel = "fused_moe"                # optional: the kernel whose configs these are
    [params]                            # every config key of the kernel, no others
    BLOCK_SIZE_M = [16, 32, 64, 128]    # explicit values
    BLOCK_SIZE_K = { pow2 = [32, 256] } # 32, 64, 128, 256
    num_stages = { range = [1, 6] }     # 1, 2, ..., 6
    [constraints]                       # optional: name = boolean expression
    smem = "(BLOCK_SIZE_M + BLOCK_SIZE_N) * BLOCK_SIZE_K * dtype_bytes * num_stages <= smem_per_block"

One :class:`Space` serves both the exhaustive grid (:meth:`Space.enumerate`) and the
Optuna samplers (:meth:`Space.suggest`), so both search the same valid set. Loading and
enumerating a space import neither optuna nor torch.

A space belongs to one kernel (:class:`~searcher.kernels.base.Kernel`): its params are the
kernel's ``config_keys``, its constraints may use those and the kernel's
``context_names``, and its configs are the kernel's (``kernel.make_config``). The values
of the context names for one problem come from ``kernel.context(problem, M, gpu)``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from searcher.errors import SearcherError, SpaceError
from searcher.study.expr import Expression, compile_expression, did_you_mean
from searcher.kernels import DEFAULT_KERNEL, get_kernel

if TYPE_CHECKING:
    import optuna

    from searcher.kernels.base import Config, Kernel

__all__ = [
    "SCHEMA",
    "Param",
    "Constraint",
    "Space",
    "load_space",
    "space_from_dict",
]

#: The space file format version this code reads.
SCHEMA = 1

_TOP_LEVEL_KEYS = ("schema", "description", "kernel", "params", "constraints")
_RANGE_KINDS = ("pow2", "range")
_WARPS_KEY = "num_warps"  # Triton's launch option, in every kernel's configs
_MAX_WARPS = 32  # 1,024 threads per block
_MAX_VALUES = 1024  # per param; a longer list is a typo in a range, not a search space

_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}

_Report = Callable[[str], None]  # collects one problem of a file


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class Param:
    """The values one config key may take, sorted ascending.

    Optuna sees every param as an ordinal integer, so that TPE, GP and CMA-ES can use the
    order: a contiguous range ``lo..hi`` is suggested as itself (Optuna name = the key);
    consecutive powers of two as their exponent (``log2_<key>``); any other list as a
    position in the sorted list (``<key>_index``).
    """

    name: str
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        values = self.values
        if not values:
            raise SpaceError(f"param {self.name}: no values")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise SpaceError(f"param {self.name}: values {list(values)} must be positive integers")
        if list(values) != sorted(set(values)):
            raise SpaceError(
                f"param {self.name}: values {list(values)} must be sorted and distinct"
            )

    @functools.cached_property
    def encoding(self) -> str:
        """``"range"``, ``"log2"`` or ``"index"``: how values map to Optuna integers."""
        lo, hi = self.values[0], self.values[-1]
        if hi - lo + 1 == len(self.values):  # sorted and distinct, so contiguous
            return "range"
        if _is_power_of_two(lo) and all(b == 2 * a for a, b in itertools.pairwise(self.values)):
            return "log2"
        return "index"

    @property
    def optuna_name(self) -> str:
        encoding = self.encoding
        if encoding == "range":
            return self.name
        if encoding == "log2":
            return f"log2_{self.name}"
        return f"{self.name}_index"

    @property
    def low(self) -> int:
        """Smallest Optuna integer."""
        return self.encode(self.values[0])

    @property
    def high(self) -> int:
        """Largest Optuna integer."""
        return self.encode(self.values[-1])

    @property
    def distribution(self) -> optuna.distributions.IntDistribution:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high)

    def encode(self, value: int) -> int:
        """The Optuna integer for a value of this param.

        Raises:
            SpaceError: the value is not one of :attr:`values`.
        """
        if isinstance(value, bool) or not isinstance(value, int) or value not in self.values:
            raise SpaceError(f"{self.name} = {value!r} not in space (values: {_show(self.values)})")
        encoding = self.encoding
        if encoding == "range":
            return value
        if encoding == "log2":
            return value.bit_length() - 1
        return self.values.index(value)

    def decode(self, number: int) -> int:
        """The value for an Optuna integer of this param.

        Raises:
            SpaceError: the number is outside the param's Optuna range.
        """
        if isinstance(number, bool) or not isinstance(number, int):
            raise SpaceError(f"{self.optuna_name} = {number!r} must be an integer")
        if not self.low <= number <= self.high:
            raise SpaceError(
                f"{self.optuna_name} = {number} is outside {self.low}..{self.high}"
            )
        encoding = self.encoding
        if encoding == "range":
            return number
        if encoding == "log2":
            return 1 << number
        return self.values[number]


@dataclass(frozen=True)
class Constraint:
    """A named boolean expression that a valid config satisfies."""

    name: str
    expression: Expression


@dataclass(frozen=True)
class Space:
    """The configs a search may try: one param per config key of a kernel, and the
    constraints a config must meet.

    Attributes:
        name: the file stem, e.g. ``"extended"``.
        kernel: the kernel whose configs these are.
        params: one per config key, in ``kernel.config_keys`` order.
        constraints: in file order.
        path: the file it was read from, if any.
        description: free text from the file.
    """

    name: str
    kernel: Kernel
    params: tuple[Param, ...]
    constraints: tuple[Constraint, ...] = ()
    path: Path | None = None
    description: str = ""

    def __post_init__(self) -> None:
        names = tuple(p.name for p in self.params)
        keys = self.kernel.config_keys
        if names != keys:
            raise SpaceError(
                f"space {self.name}: params {', '.join(names)} must be {', '.join(keys)} "
                f"(the config keys of kernel {self.kernel.name})"
            )

    @property
    def context_names(self) -> frozenset[str]:
        """The context names (problem, M, GPU facts) the constraints use."""
        used: set[str] = set()
        for c in self.constraints:
            used |= c.expression.names
        return frozenset(used) - frozenset(self.kernel.config_keys)

    def raw_size(self) -> int:
        """Number of configs before constraints: the product of the params' sizes."""
        size = 1
        for p in self.params:
            size *= len(p.values)
        return size

    def _check_context(self, context: Mapping[str, int]) -> None:
        missing = sorted(self.context_names - context.keys())
        if missing:
            raise SpaceError(
                f"space {self.name}: its constraints need {', '.join(missing)}, "
                f"which the context does not give"
            )

    def violations(self, config: Config, context: Mapping[str, int]) -> list[str]:
        """Why a config is not in this space; empty when it is.

        Returns:
            ``"BLOCK_SIZE_M = 48 not in space"`` for each value outside its param's list,
            then the name of every constraint the config breaks.

        Raises:
            SpaceError: the context lacks a name the constraints use.
        """
        self._check_context(context)
        values = config.to_dict()
        problems = [
            f"{p.name} = {values[p.name]} not in space"
            for p in self.params
            if values[p.name] not in p.values
        ]
        env = {**context, **values}
        problems.extend(c.name for c in self.constraints if not _holds(c, env))
        return problems

    def is_valid(self, config: Config, context: Mapping[str, int]) -> bool:
        """True when every value is in its param's list and every constraint holds."""
        return not self.violations(config, context)

    def enumerate(self, context: Mapping[str, int]) -> list[Config]:
        """Every valid config, in ``itertools.product`` order over the params.

        Raises:
            SpaceError: the context lacks a name the constraints use.
        """
        self._check_context(context)
        env: dict[str, Any] = dict(context)
        keys = self.kernel.config_keys
        valid = []
        for values in itertools.product(*(p.values for p in self.params)):
            env.update(zip(keys, values))
            if all(_holds(c, env) for c in self.constraints):
                valid.append(self.kernel.make_config(values))
        return valid

    def any_valid(self, context: Mapping[str, int]) -> bool:
        """Whether some config meets every constraint (stops at the first that does).

        Raises:
            SpaceError: the context lacks a name the constraints use.
        """
        self._check_context(context)
        env: dict[str, Any] = dict(context)
        keys = self.kernel.config_keys
        for values in itertools.product(*(p.values for p in self.params)):
            env.update(zip(keys, values))
            if all(_holds(c, env) for c in self.constraints):
                return True
        return False

    def suggest(self, trial: optuna.trial.Trial) -> Config:
        """Ask an Optuna trial for a config of this space.

        Calls ``trial.suggest_int(p.optuna_name, low, high)`` once per param. The result
        may break a constraint: check :meth:`is_valid` and report it to the study.
        """
        return self.kernel.make_config(
            [p.decode(trial.suggest_int(p.optuna_name, p.low, p.high)) for p in self.params]
        )

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The Optuna distribution of each param, keyed by its Optuna name."""
        return {p.optuna_name: p.distribution for p in self.params}

    def to_params(self, config: Config) -> dict[str, int]:
        """Optuna params for a config, e.g. for ``study.enqueue_trial`` (warm start).

        Raises:
            SpaceError: a value of the config is not in this space.
        """
        values = config.to_dict()
        params = {}
        for p in self.params:
            try:
                params[p.optuna_name] = p.encode(values[p.name])
            except SpaceError as exc:
                raise SpaceError(f"space {self.name}: {config.short()}: {exc}") from None
        return params

    def from_params(self, params: Mapping[str, int]) -> Config:
        """The config for Optuna params (a trial's ``params``).

        Raises:
            SpaceError: a param is missing, unknown, or out of range.
        """
        expected = [p.optuna_name for p in self.params]
        for key in params:
            if key not in expected:
                raise SpaceError(
                    f"space {self.name}: unknown Optuna param {key!r}"
                    f"{did_you_mean(key, expected)}; expected {', '.join(expected)}"
                )
        missing = [key for key in expected if key not in params]
        if missing:
            raise SpaceError(f"space {self.name}: Optuna params lack {', '.join(missing)}")
        try:
            return self.kernel.make_config([p.decode(params[p.optuna_name]) for p in self.params])
        except SpaceError as exc:
            raise SpaceError(f"space {self.name}: {exc}") from None

    def fingerprint(self) -> str:
        """SHA-256 of what decides the valid set: values and constraints, not the file's
        bytes, comments, description or the order of constraints."""
        canonical = {
            "schema": SCHEMA,
            "params": {p.name: list(p.values) for p in self.params},
            "constraints": {c.name: c.expression.canonical for c in self.constraints},
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _holds(constraint: Constraint, env: Mapping[str, Any]) -> bool:
    result = constraint.expression(env)
    if not isinstance(result, bool):
        raise SpaceError(
            f"{constraint.expression.where}: gave {result!r}, not true or false"
        )
    return result


def _show(values: Iterable[int]) -> str:
    values = list(values)
    if len(values) > 12:
        return f"{values[:6]}...{values[-3:]}"
    return str(values)


def load_space(path: str | Path, kernel: Kernel | None = None) -> Space:
    """Read and validate a space file completely.

    Args:
        path: the space file.
        kernel: the kernel the space is for (a study's); None takes the kernel the file's
            ``kernel`` key names (``fused_moe`` when it has none).

    Raises:
        SpaceError: the file cannot be read, is not TOML, breaks a rule of the format, or
            names another kernel than ``kernel``; the message names the file, the key, the
            value and the rule.
    """
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpaceError(f"{where}: cannot read space file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpaceError(f"{where}: not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{where}: invalid TOML: {exc}") from None
    return space_from_dict(data, where=where, name=Path(path).stem, path=Path(path),
                           kernel=kernel)


def space_from_dict(
    data: Mapping[str, Any], where: str, name: str, path: Path | None = None,
    kernel: Kernel | None = None,
) -> Space:
    """Validate a parsed space file and build the space.

    Every problem in the file is collected; one :class:`SpaceError` lists them all, one
    per line.

    Args:
        data: the parsed TOML.
        where: how to name the source in messages (usually the file path).
        name: the space's name (usually the file stem).
        path: the file, if any.
        kernel: the kernel the space is for; None: the one ``data["kernel"]`` names
            (default ``fused_moe``).

    Raises:
        SpaceError: the data breaks a rule of the format, or names an unknown kernel or
            another one than ``kernel``.
    """
    problems: list[str] = []

    def problem(message: str) -> None:
        problems.append(f"{where}: {message}")

    if not isinstance(data, Mapping):
        raise SpaceError(f"{where}: a space must be a table, not {type(data).__name__}")

    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            problem(
                f"unknown key {key!r}{did_you_mean(key, _TOP_LEVEL_KEYS)}; "
                f"a space file holds {', '.join(_TOP_LEVEL_KEYS)}"
            )

    schema = data.get("schema")
    if "schema" not in data:
        problem(f"missing key 'schema'; write schema = {SCHEMA}")
    elif isinstance(schema, bool) or not isinstance(schema, int) or schema != SCHEMA:
        problem(f"schema = {schema!r} is not supported; this searcher reads schema = {SCHEMA}")

    description = data.get("description", "")
    if not isinstance(description, str):
        problem(f"description = {description!r} must be a string")
        description = ""

    kernel = _kernel_from(data.get("kernel", DEFAULT_KERNEL), kernel, problem)
    if kernel is None:
        raise SpaceError("; ".join(problems))
    params = _params_from(data.get("params"), "params" in data, kernel, problem)
    constraints = _constraints_from(data.get("constraints", {}), where, kernel, problem)

    if problems:
        raise SpaceError("; ".join(problems))
    return Space(
        name=name,
        kernel=kernel,
        params=tuple(params),
        constraints=tuple(constraints),
        path=path,
        description=description,
    )


def _kernel_from(named: Any, given: Kernel | None, problem: _Report) -> Kernel | None:
    """The kernel of a space file: ``given`` (a study's), which the file's ``kernel`` key
    must then not contradict, else the one the key names. None after reporting."""
    if not isinstance(named, str):
        problem(f"kernel = {named!r} must be a string naming a kernel")
        return None
    if given is not None:
        if named != given.name:
            problem(f"kernel = {named!r}: the space is for another kernel than the study's "
                    f"({given.name!r})")
            return None
        return given
    try:
        return get_kernel(named)
    except SearcherError as exc:
        problem(str(exc))
        return None


def _params_from(table: Any, present: bool, kernel: Kernel, problem: _Report) -> list[Param]:
    keys = kernel.config_keys
    if not present:
        problem(f"missing table [params]; a space gives values for {', '.join(keys)}")
        return []
    if not isinstance(table, Mapping):
        problem(f"params = {table!r} must be a table with the keys {', '.join(keys)}")
        return []
    for key in table:
        if key not in keys:
            problem(
                f"params.{key}: unknown param{did_you_mean(key, keys)}; "
                f"the params of kernel {kernel.name} are {', '.join(keys)}"
            )
    missing = [key for key in keys if key not in table]
    if missing:
        problem(
            f"params: missing {', '.join(missing)}; a space gives values for all "
            f"{_NUMBERS.get(len(keys), len(keys))} keys"
        )
    params = []
    for key in keys:
        if key in table:
            values = _param_values(key, table[key], kernel, problem)
            if values is not None:
                params.append(Param(key, values))
    return params


def _param_values(key: str, raw: Any, kernel: Kernel, problem: _Report) -> tuple[int, ...] | None:
    """The sorted values of one param, or None after reporting a problem."""
    label = f"params.{key}"
    if isinstance(raw, list):
        if not raw:
            problem(f"{label} = [] is empty; give at least one value")
            return None
        for value in raw:
            if isinstance(value, bool) or not isinstance(value, int):
                problem(f"{label} = {raw!r} holds {value!r}, which is not an integer")
                return None
            if value < 1:
                problem(f"{label} = {raw!r} holds {value}; values must be positive integers")
                return None
        duplicates = sorted({v for v in raw if raw.count(v) > 1})
        if duplicates:
            problem(
                f"{label} = {raw!r} lists {', '.join(map(str, duplicates))} more than once; "
                f"each value must appear once"
            )
            return None
        values = tuple(sorted(raw))
    elif isinstance(raw, Mapping):
        values = _range_values(label, raw, problem)
        if values is None:
            return None
    else:
        problem(
            f"{label} = {raw!r} must be a list of integers or a table "
            f"{{ pow2 = [lo, hi] }} or {{ range = [lo, hi] }}"
        )
        return None

    if len(values) > _MAX_VALUES:
        problem(f"{label} holds {len(values)} values; at most {_MAX_VALUES} are allowed")
        return None
    if key in kernel.power_of_two_keys:
        for value in values:
            if not _is_power_of_two(value):
                problem(
                    f"{label} = {value} is not a power of two "
                    f"(Triton needs power-of-two block sizes and warp counts)"
                )
                return None
    if key == _WARPS_KEY and values[-1] > _MAX_WARPS:
        problem(
            f"{label} = {values[-1]} is more than {_MAX_WARPS} "
            f"(a block has at most 1,024 threads)"
        )
        return None
    return values


def _range_values(label: str, raw: Mapping[str, Any], problem: _Report) -> tuple[int, ...] | None:
    kinds = [k for k in raw if k in _RANGE_KINDS]
    for k in raw:
        if k not in _RANGE_KINDS:
            problem(
                f"{label}.{k}: unknown key{did_you_mean(k, _RANGE_KINDS)}; "
                f"use exactly one of pow2 = [lo, hi], range = [lo, hi]"
            )
            return None
    if len(kinds) != 1:
        problem(
            f"{label} = {dict(raw)!r} must hold exactly one of pow2 = [lo, hi], range = [lo, hi]"
        )
        return None
    kind = kinds[0]
    bounds = raw[kind]
    full = f"{label}.{kind}"
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in bounds)
    ):
        problem(f"{full} = {bounds!r} must be [lo, hi], two positive integers")
        return None
    lo, hi = bounds
    if lo > hi:
        problem(f"{full} = {bounds!r}: lo {lo} is greater than hi {hi}")
        return None
    if kind == "range":
        if hi - lo + 1 > _MAX_VALUES:
            problem(
                f"{full} = {bounds!r} holds {hi - lo + 1} values; "
                f"at most {_MAX_VALUES} are allowed"
            )
            return None
        return tuple(range(lo, hi + 1))
    for end in (lo, hi):
        if not _is_power_of_two(end):
            problem(f"{full} = {bounds!r}: {end} is not a power of two")
            return None
    return tuple(1 << e for e in range(lo.bit_length() - 1, hi.bit_length()))


def _constraints_from(table: Any, where: str, kernel: Kernel,
                      problem: _Report) -> list[Constraint]:
    if not isinstance(table, Mapping):
        problem(f"constraints = {table!r} must be a table of name = \"expression\"")
        return []
    names = frozenset(kernel.config_keys) | frozenset(kernel.context_names)
    constraints = []
    for name, source in table.items():
        label = f"{where}: [constraints] {name}"
        if not isinstance(source, str):
            problem(f"[constraints] {name} = {source!r} must be a string holding an expression")
            continue
        try:
            expression = compile_expression(source, names, label)
        except SpaceError as exc:
            problem(str(exc).removeprefix(f"{where}: "))
            continue
        if expression.kind != "bool":
            problem(
                f"[constraints] {name} = {source!r} gives a number; "
                f"a constraint must be a comparison that is true or false"
            )
            continue
        constraints.append(Constraint(name, expression))
    return constraints
