"""Safe arithmetic expressions for space constraints, parsed once and never ``eval``-ed.

An expression is parsed with :func:`ast.parse` in ``eval`` mode, every node is checked
against a whitelist, and the tree is compiled into nested Python closures. Allowed:
int and float literals, ``True``/``False``, the names given by the caller,
``+ - * / // % **``, unary ``-``/``+``/``not``, comparisons (chained too), ``and``/``or``,
``a if c else b`` and calls to :data:`FUNCTIONS`. Everything else is a
:class:`~searcher.errors.SpaceError` naming the construct.

Each sub-expression has a kind, ``"number"`` or ``"bool"``, checked when compiling:
arithmetic and comparisons take numbers, ``and``/``or``/``not`` and the test of
``a if c else b`` take booleans. So ``M and 3`` or ``(a < b) + 1`` are rejected before
anything runs, and a constraint can be required to give a boolean at load time.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field
from typing import Callable, Collection, Literal, Mapping

from searcher.errors import SpaceError, did_you_mean

__all__ = ["Expression", "compile_expression", "did_you_mean", "FUNCTIONS"]

Kind = Literal["number", "bool"]
_Evaluator = Callable[[Mapping[str, float]], object]

# Largest integer exponent allowed, so that ``2 ** 10 ** 9`` cannot hang the process.
_MAX_EXPONENT = 1024


def _cdiv(a: float, b: float) -> float:
    """Ceiling division, as Triton's ``cdiv``."""
    return -(-a // b)


@dataclass(frozen=True)
class _Function:
    min_args: int
    max_args: int | None  # None: any number from min_args up
    impl: Callable[..., float]


#: Functions an expression may call, with their argument counts.
FUNCTIONS: dict[str, _Function] = {
    "min": _Function(2, None, min),
    "max": _Function(2, None, max),
    "abs": _Function(1, 1, abs),
    "ceil": _Function(1, 1, math.ceil),
    "floor": _Function(1, 1, math.floor),
    "log2": _Function(1, 1, math.log2),
    "cdiv": _Function(2, 2, _cdiv),
}


def _pow(base: float, exponent: float) -> float:
    if abs(exponent) > _MAX_EXPONENT:
        raise OverflowError(f"exponent {exponent} is larger than {_MAX_EXPONENT}")
    result = base**exponent
    if isinstance(result, complex):
        raise ValueError(f"{base} ** {exponent} is not a real number")
    return result


_BINARY: dict[type[ast.operator], tuple[str, Callable[[float, float], float]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", _pow),
}

_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}

# How to name rejected constructs in messages.
_REJECTED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.List: "list",
    ast.Tuple: "tuple",
    ast.Set: "set",
    ast.Dict: "dict",
    ast.JoinedStr: "f-string",
    ast.NamedExpr: "assignment expression (:=)",
    ast.Starred: "starred argument",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.Slice: "slice",
}

_OPERATOR_SYMBOLS: dict[type[ast.AST], str] = {
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.Invert: "~",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


@dataclass(frozen=True)
class Expression:
    """A compiled expression. Call it with a mapping of names to numbers.

    Attributes:
        source: the text as written.
        names: the variable names it uses (function names excluded).
        kind: ``"bool"`` for a comparison or logic, ``"number"`` for arithmetic.
        canonical: the text normalised by :func:`ast.unparse`, so that spacing and
            redundant parentheses do not change it.
        where: how error messages name it (a file and key).
    """

    source: str
    names: frozenset[str]
    kind: Kind
    canonical: str
    where: str
    _evaluate: _Evaluator = field(repr=False, compare=False)

    def __call__(self, env: Mapping[str, float]) -> object:
        """Evaluate with ``env`` giving a value for every name in :attr:`names`.

        Raises:
            SpaceError: a name is missing from ``env``, or the arithmetic fails
                (division by zero, ``log2`` of zero, overflow).
        """
        try:
            return self._evaluate(env)
        except KeyError as exc:
            raise SpaceError(
                f"{self.where}: {self.source!r} needs a value for {exc.args[0]!r}"
            ) from None
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise SpaceError(f"{self.where}: cannot evaluate {self.source!r}: {exc}") from None


def compile_expression(source: str, names: Collection[str], where: str) -> Expression:
    """Parse, check and compile an expression.

    Args:
        source: the expression text, e.g. ``"BLOCK_SIZE_M * BLOCK_SIZE_N >= 4096"``.
        names: the variable names it may use.
        where: how to name it in error messages, e.g. ``"spaces/x.toml: [constraints] smem"``.

    Raises:
        SpaceError: a syntax error, a construct outside the whitelist, an unknown name or
            function, a wrong number of arguments, or operands of the wrong kind.
    """
    if not isinstance(source, str):
        raise SpaceError(f"{where}: {source!r} must be a string holding an expression")
    if not source.strip():
        raise SpaceError(f"{where}: the expression is empty")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpaceError(
            f"{where}: {source!r} is not a valid expression: {exc.msg} (column {exc.offset})"
        ) from None
    compiler = _Compiler(source, frozenset(names), where)
    evaluate, kind = compiler.compile(tree.body)
    return Expression(
        source=source,
        names=frozenset(compiler.used),
        kind=kind,
        canonical=ast.unparse(tree),
        where=where,
        _evaluate=evaluate,
    )


class _Compiler:
    """Walks a parsed tree once, checking nodes and building closures."""

    def __init__(self, source: str, names: frozenset[str], where: str) -> None:
        self.source = source
        self.names = names
        self.where = where
        self.used: set[str] = set()

    def fail(self, message: str) -> SpaceError:
        return SpaceError(f"{self.where}: {message} (in {self.source!r})")

    def compile(self, node: ast.AST) -> tuple[_Evaluator, Kind]:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(f"{self._describe(node)} is not allowed in an expression")
        return method(node)

    def expect(self, node: ast.AST, kind: Kind, role: str) -> _Evaluator:
        evaluate, got = self.compile(node)
        if got != kind:
            wanted = "a number" if kind == "number" else "a comparison or true/false"
            raise self.fail(f"{role} {ast.unparse(node)!r} must be {wanted}")
        return evaluate

    def _describe(self, node: ast.AST) -> str:
        if type(node) in _REJECTED:
            return f"{_REJECTED[type(node)]} {ast.unparse(node)!r}"
        if type(node) in _OPERATOR_SYMBOLS:
            return f"operator {_OPERATOR_SYMBOLS[type(node)]!r}"
        return f"{type(node).__name__} {ast.unparse(node)!r}"

    # -- leaves -----------------------------------------------------------------------

    def _Constant(self, node: ast.Constant) -> tuple[_Evaluator, Kind]:
        value = node.value
        if isinstance(value, bool):
            return (lambda env: value), "bool"
        if isinstance(value, (int, float)):
            return (lambda env: value), "number"
        label = "string" if isinstance(value, str) else type(value).__name__
        raise self.fail(f"{label} literal {ast.unparse(node)} is not allowed in an expression")

    def _Name(self, node: ast.Name) -> tuple[_Evaluator, Kind]:
        name = node.id
        if name in FUNCTIONS and name not in self.names:
            raise self.fail(f"function {name!r} must be called, as {name}(...)")
        if name not in self.names:
            hint = did_you_mean(name, self.names)
            if not hint:
                hint = f"; known names: {', '.join(sorted(self.names))}"
            raise SpaceError(f"{self.where}: unknown name {name!r}{hint}")
        self.used.add(name)
        return (lambda env: env[name]), "number"

    # -- operators --------------------------------------------------------------------

    def _BinOp(self, node: ast.BinOp) -> tuple[_Evaluator, Kind]:
        if type(node.op) not in _BINARY:
            raise self.fail(f"{self._describe(node.op)} is not allowed in an expression")
        symbol, op = _BINARY[type(node.op)]
        left = self.expect(node.left, "number", f"the left side of {symbol!r}")
        right = self.expect(node.right, "number", f"the right side of {symbol!r}")
        return (lambda env: op(left(env), right(env))), "number"

    def _UnaryOp(self, node: ast.UnaryOp) -> tuple[_Evaluator, Kind]:
        if isinstance(node.op, ast.Not):
            operand = self.expect(node.operand, "bool", "the operand of 'not'")
            return (lambda env: not operand(env)), "bool"
        if isinstance(node.op, ast.USub):
            operand = self.expect(node.operand, "number", "the operand of '-'")
            return (lambda env: -operand(env)), "number"
        if isinstance(node.op, ast.UAdd):
            operand = self.expect(node.operand, "number", "the operand of '+'")
            return (lambda env: +operand(env)), "number"
        raise self.fail(f"{self._describe(node.op)} is not allowed in an expression")

    def _Compare(self, node: ast.Compare) -> tuple[_Evaluator, Kind]:
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise self.fail(f"{self._describe(op)} is not allowed in an expression")
        ops = [_COMPARE[type(op)] for op in node.ops]
        first = self.expect(node.left, "number", "a compared value")
        rest = [self.expect(c, "number", "a compared value") for c in node.comparators]
        if len(ops) == 1:  # the common case, without the loop
            (op,), (second,) = ops, rest
            return (lambda env: op(first(env), second(env))), "bool"
        steps = list(zip(ops, rest))

        def compare(env: Mapping[str, float]) -> bool:
            left = first(env)
            for op, right_of in steps:  # chained: a < b < c is a < b and b < c
                right = right_of(env)
                if not op(left, right):
                    return False
                left = right
            return True

        return compare, "bool"

    def _BoolOp(self, node: ast.BoolOp) -> tuple[_Evaluator, Kind]:
        word = "and" if isinstance(node.op, ast.And) else "or"
        parts = [self.expect(v, "bool", f"an operand of {word!r}") for v in node.values]
        if len(parts) == 2:
            a, b = parts
            if word == "and":
                return (lambda env: a(env) and b(env)), "bool"
            return (lambda env: a(env) or b(env)), "bool"
        if word == "and":
            return (lambda env: all(p(env) for p in parts)), "bool"
        return (lambda env: any(p(env) for p in parts)), "bool"

    def _IfExp(self, node: ast.IfExp) -> tuple[_Evaluator, Kind]:
        test = self.expect(node.test, "bool", "the condition of 'if'")
        body, body_kind = self.compile(node.body)
        orelse = self.expect(node.orelse, body_kind, "the 'else' branch, like the 'if' one,")
        return (lambda env: body(env) if test(env) else orelse(env)), body_kind

    def _Call(self, node: ast.Call) -> tuple[_Evaluator, Kind]:
        if not isinstance(node.func, ast.Name):
            raise self.fail(
                f"call of {ast.unparse(node.func)!r} is not allowed; "
                f"allowed functions: {', '.join(sorted(FUNCTIONS))}"
            )
        name = node.func.id
        if name not in FUNCTIONS:
            hint = did_you_mean(name, FUNCTIONS)
            raise self.fail(
                f"call of {name!r} is not allowed{hint}; "
                f"allowed functions: {', '.join(sorted(FUNCTIONS))}"
            )
        if node.keywords:
            raise self.fail(f"{name}() takes no keyword arguments")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(f"{self._describe(arg)} is not allowed in an expression")
        spec = FUNCTIONS[name]
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            if spec.max_args is None:
                wanted = f"at least {spec.min_args}"
            elif spec.min_args == spec.max_args:
                wanted = str(spec.min_args)
            else:
                wanted = f"{spec.min_args} to {spec.max_args}"
            raise self.fail(f"{name}() takes {wanted} argument(s), got {count}")
        args = [self.expect(a, "number", f"an argument of {name}()") for a in node.args]
        impl = spec.impl
        if len(args) == 1:
            (only,) = args
            return (lambda env: impl(only(env))), "number"
        return (lambda env: impl(*(a(env) for a in args))), "number"
