"""Tests for searcher.study.expr: the safe expression language of space constraints."""

from __future__ import annotations

import builtins
import math

import pytest

from searcher.errors import SpaceError
from searcher.study.expr import compile_expression, did_you_mean

NAMES = ("M", "E", "top_k", "smem_per_block", "BLOCK_SIZE_M")
WHERE = "spaces/x.toml: [constraints] c"
ENV = {"M": 6, "E": 64, "top_k": 6, "smem_per_block": 232448, "BLOCK_SIZE_M": 32}


def value(source: str, **env: float) -> object:
    return compile_expression(source, NAMES, WHERE)({**ENV, **env})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("M - 10", -4),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("-M + +3", -3),
        ("M * top_k / E", 36 / 64),
        ("1.5 * 2", 3.0),
        ("min(M, E, 3)", 3),
        ("max(M, E)", 64),
        ("abs(M - E)", 58),
        ("ceil(2.1)", 3),
        ("floor(2.9)", 2),
        ("log2(1024)", 10.0),
        ("cdiv(7, 2)", 4),
        ("cdiv(8, 2)", 4),
        ("cdiv(M * top_k, E)", 1),
        ("2 ** ceil(log2(cdiv(M * top_k, E) * 4))", 4),
        ("M if M > 2 else E", 6),
        ("M if M > 10 else E", 64),
    ],
)
def test_arithmetic(source: str, expected: float) -> None:
    result = value(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "m", "expected"),
    [
        ("M < 8", 6, True),
        ("M < 8", 8, False),
        ("M <= 8", 8, True),
        ("M > 8", 9, True),
        ("M >= 9", 8, False),
        ("M == 6", 6, True),
        ("M != 6", 6, False),
        ("1 < M <= 4", 2, True),
        ("1 < M <= 4", 5, False),
        ("1 < M <= 4", 1, False),
        ("1 < M < 10 < E", 5, True),
        ("M > 1 and M < 4", 3, True),
        ("M > 1 and M < 4", 4, False),
        ("M < 2 or M > 4", 3, False),
        ("M < 2 or M > 4", 5, True),
        ("not M > 4", 5, False),
        ("True", 5, True),
        ("False or M == 5", 5, True),
        ("(M > 4) if M > 2 else (M < 1)", 1, False),
        ("(M > 4) if M > 2 else (M < 2)", 1, True),
    ],
)
def test_comparisons_and_logic(source: str, m: int, expected: bool) -> None:
    assert value(source, M=m) is expected


def test_and_or_short_circuit() -> None:
    assert value("M > 0 or 1 // (M - M) > 0") is True
    assert value("M < 0 and 1 // (M - M) > 0") is False
    assert value("M if M > 0 else 1 // (M - M)") == 6


def test_kind_names_and_canonical() -> None:
    number = compile_expression("min(M, E) + 1", NAMES, WHERE)
    assert number.kind == "number"
    assert number.names == frozenset({"M", "E"})
    assert number.source == "min(M, E) + 1"
    boolean = compile_expression("M>1", NAMES, WHERE)
    assert boolean.kind == "bool"
    assert boolean.names == frozenset({"M"})
    # Spacing and redundant parentheses do not change the canonical form.
    assert compile_expression("((M+1))>  2", NAMES, WHERE).canonical == "M + 1 > 2"
    assert compile_expression("(M + 1) > 2", NAMES, WHERE).canonical == "M + 1 > 2"


def test_never_calls_eval_or_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert compile_expression("max(M, 2) * 2 == 12", NAMES, WHERE)(ENV) is True


@pytest.mark.parametrize(
    ("source", "construct"),
    [
        ("__import__('os')", "call of '__import__' is not allowed"),
        ("__import__('os').system('true')", "call of \"__import__('os').system\" is not allowed"),
        ("M.real", "attribute access 'M.real'"),
        ("(M).__class__", "attribute access"),
        ("E[0]", "subscript 'E[0]'"),
        ("'a' == 'a'", "string literal 'a'"),
        ("b'a'", "bytes literal"),
        ("None", "NoneType literal"),
        ("lambda: 1", "lambda"),
        ("[M for M in E]", "list comprehension"),
        ("{M: 1}", "dict"),
        ("(M, E)", "tuple"),
        ("[M]", "list"),
        ("f'{M}'", "f-string"),
        ("(M := 3)", "assignment expression"),
        ("M & 1", "operator '&'"),
        ("M << 1", "operator '<<'"),
        ("~M", "operator '~'"),
        ("M @ E", "operator '@'"),
        ("M in E", "operator 'in'"),
        ("M is E", "operator 'is'"),
        ("sqrt(M)", "call of 'sqrt' is not allowed"),
        ("getattr(M, 'real')", "call of 'getattr' is not allowed"),
        ("M(1)", "call of 'M' is not allowed"),
        ("min", "function 'min' must be called"),
        ("min(M)", "min() takes at least 2 argument(s), got 1"),
        ("abs(M, E)", "abs() takes 1 argument(s), got 2"),
        ("cdiv(M)", "cdiv() takes 2 argument(s), got 1"),
        ("max(M, E, key=abs)", "takes no keyword arguments"),
        ("max(*E)", "starred"),
        ("M and E", "an operand of 'and' 'M' must be a comparison"),
        ("not M", "the operand of 'not' 'M' must be a comparison"),
        ("M if E else 1", "the condition of 'if' 'E' must be a comparison"),
        ("(M > 1) + 1", "the left side of '+' 'M > 1' must be a number"),
        ("(M > 1) < 2", "a compared value 'M > 1' must be a number"),
        ("M if M > 1 else M > 2", "'else' branch"),
        ("-(M > 1)", "the operand of '-'"),
        ("min(M > 1, 2)", "an argument of min()"),
    ],
)
def test_rejected_constructs(source: str, construct: str) -> None:
    with pytest.raises(SpaceError) as info:
        compile_expression(source, NAMES, WHERE)
    message = str(info.value)
    assert message.startswith(WHERE + ": ")
    assert construct in message


@pytest.mark.parametrize("source", ["M +", "M = 1", "import os", "M > 1; E", ""])
def test_syntax_errors(source: str) -> None:
    with pytest.raises(SpaceError, match=r"^spaces/x\.toml: \[constraints\] c: "):
        compile_expression(source, NAMES, WHERE)


def test_not_a_string() -> None:
    with pytest.raises(SpaceError, match="must be a string"):
        compile_expression(3, NAMES, WHERE)  # type: ignore[arg-type]


def test_unknown_name_did_you_mean() -> None:
    with pytest.raises(SpaceError) as info:
        compile_expression("smem_per_blok >= 1", NAMES, WHERE)
    assert str(info.value) == (
        "spaces/x.toml: [constraints] c: unknown name 'smem_per_blok' "
        "(did you mean 'smem_per_block'?)"
    )
    with pytest.raises(SpaceError, match=r"did you mean 'BLOCK_SIZE_M'\?"):
        compile_expression("block_size_m >= 1", NAMES, WHERE)
    with pytest.raises(SpaceError, match="unknown name 'zzz'; known names: BLOCK_SIZE_M, E, M"):
        compile_expression("zzz >= 1", NAMES, WHERE)


def test_unknown_function_did_you_mean() -> None:
    hint = r"call of 'ceiling' is not allowed \(did you mean 'ceil'\?\)"
    with pytest.raises(SpaceError, match=hint):
        compile_expression("ceiling(M) > 1", NAMES, WHERE)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("1 / (M - 6) > 0", "division by zero"),
        ("M % (M - 6) > 0", "modulo"),
        ("log2(M - 6) > 0", "math domain error"),
        ("2 ** 100000 > 1", "exponent"),
        ("(-8) ** 0.5 > 1", "not a real number"),
        ("ceil(10.0 ** 400) > 1", ""),
    ],
)
def test_runtime_errors_are_space_errors(source: str, reason: str) -> None:
    expression = compile_expression(source, NAMES, WHERE)
    with pytest.raises(SpaceError) as info:
        expression(ENV)
    assert str(info.value).startswith(f"{WHERE}: cannot evaluate {source!r}")
    assert reason in str(info.value)


def test_missing_name_in_env() -> None:
    expression = compile_expression("M + E > 1", NAMES, WHERE)
    with pytest.raises(SpaceError, match="needs a value for 'E'"):
        expression({"M": 1})


def test_float_results() -> None:
    assert math.isclose(value("M / 4"), 1.5)


def test_did_you_mean() -> None:
    assert did_you_mean("parms", ["schema", "params"]) == " (did you mean 'params'?)"
    assert did_you_mean("NUM_WARPS", ["num_warps", "num_stages"]) == " (did you mean 'num_warps'?)"
    assert did_you_mean("xyz", ["schema", "params"]) == ""
