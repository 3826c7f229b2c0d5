"""Launch expressions of a kernel model: small arithmetic over tensor shapes.

Config parameters such as ``grid``, ``threadgroup_size``, an output's shape or a
scalar constant hold expressions like ``INPUT0.size``, ``ceil_div(INPUT0.shape[1], 32)``
or ``(INPUT0.shape[0], INPUT0.shape[1])``. They are parsed with Python's ``ast``
module and evaluated by walking the tree: only the constructs below exist, so no
user text is ever run as Python.

| construct | meaning |
|---|---|
| ``12``, ``0.5`` | a number |
| ``T.shape[i]`` | dimension ``i`` of tensor ``T`` (negative ``i`` counts from the end) |
| ``T.size`` / ``T.ndim`` | element count / rank of ``T`` |
| ``+ - * / // %``, unary ``-``, ``( )`` | arithmetic (``/`` gives a float) |
| ``min(a, b, ...)``, ``max(...)``, ``ceil_div(a, b)`` | functions |
| ``(a, b, c)`` | a tuple, at the top level only (grid sizes) |
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from triton_core.errors import TritonError

Number = int | float

_BINARY: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def _ceil_div(a: Number, b: Number) -> Number:
    return -(-a // b)


_FUNCTIONS: dict[str, tuple[Callable[..., Number], int | None]] = {
    "min": (min, None),
    "max": (max, None),
    "ceil_div": (_ceil_div, 2),
}

MAX_LENGTH = 500


class ExpressionError(ValueError):
    """An expression that cannot be parsed, uses what is not allowed, or fails to evaluate."""


@dataclass(frozen=True)
class Expression:
    """A parsed launch expression; ``tensors`` are the tensor names it reads."""

    text: str
    tree: ast.expr
    tensors: frozenset[str]

    @property
    def arity(self) -> int:
        """How many values it gives: the length of a top-level tuple, else 1."""
        return len(self.tree.elts) if isinstance(self.tree, ast.Tuple) else 1

    def evaluate(self, shapes: Mapping[str, Sequence[int]]) -> tuple[Number, ...]:
        items = self.tree.elts if isinstance(self.tree, ast.Tuple) else [self.tree]
        try:
            return tuple(_eval(node, shapes) for node in items)
        except ZeroDivisionError:
            raise ExpressionError(f"'{self.text}': division by zero") from None
        except (IndexError, KeyError) as e:
            raise ExpressionError(f"'{self.text}': {e}") from None


def _shape_ref(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    raise ExpressionError("only a tensor name may come before .shape, .size or .ndim")


def _check(node: ast.expr, tensors: set[str], top: bool) -> None:
    if isinstance(node, ast.Tuple):
        if not top:
            raise ExpressionError("a tuple is allowed only as the whole expression")
        if not 1 <= len(node.elts) <= 3:
            raise ExpressionError("a tuple has 1 to 3 items")
        for e in node.elts:
            _check(e, tensors, False)
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"'{node.value!r}' is not a number")
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
        _check(node.left, tensors, False)
        _check(node.right, tensors, False)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check(node.operand, tensors, False)
        return
    if isinstance(node, ast.Attribute):
        if node.attr not in ("size", "ndim"):
            raise ExpressionError(f"'.{node.attr}' is not allowed (use .shape[i], .size or .ndim)")
        tensors.add(_shape_ref(node.value))
        return
    if isinstance(node, ast.Subscript):
        target = node.value
        if not (isinstance(target, ast.Attribute) and target.attr == "shape"):
            raise ExpressionError("only T.shape[i] may be indexed")
        tensors.add(_shape_ref(target.value))
        index = node.slice
        if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
            index = index.operand
        if not (isinstance(index, ast.Constant) and type(index.value) is int):
            raise ExpressionError("T.shape[i] needs a whole number i")
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise ExpressionError(f"only {', '.join(_FUNCTIONS)} may be called")
        _, nargs = _FUNCTIONS[node.func.id]
        if (nargs is not None and len(node.args) != nargs) or not node.args:
            raise ExpressionError(f"{node.func.id}() takes {nargs or 'one or more'} arguments")
        for a in node.args:
            _check(a, tensors, False)
        return
    if isinstance(node, ast.Name):
        raise ExpressionError(f"'{node.id}' alone is not a value (use {node.id}.shape[i] or {node.id}.size)")
    raise ExpressionError(f"{type(node).__name__} is not allowed")


def _index(node: ast.expr) -> int:
    if isinstance(node, ast.UnaryOp):
        return -int(node.operand.value)  # type: ignore[attr-defined]
    return int(node.value)  # type: ignore[attr-defined]


def _eval(node: ast.expr, shapes: Mapping[str, Sequence[int]]) -> Number:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, shapes), _eval(node.right, shapes))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, shapes)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Attribute):
        shape = shapes[node.value.id]  # type: ignore[attr-defined]
        if node.attr == "ndim":
            return len(shape)
        n = 1
        for d in shape:
            n *= d
        return n
    if isinstance(node, ast.Subscript):
        name = node.value.value.id  # type: ignore[attr-defined]
        shape = shapes[name]
        i = _index(node.slice)
        if not -len(shape) <= i < len(shape):
            raise IndexError(f"{name} has {len(shape)} dimensions, no shape[{i}]")
        return shape[i]
    if isinstance(node, ast.Call):
        fn, _ = _FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return fn(*(_eval(a, shapes) for a in node.args))
    raise ExpressionError(f"{type(node).__name__} is not allowed")  # pragma: no cover - checked


def parse(text: str, known: Sequence[str]) -> Expression:
    """Parse and check ``text``; ``known`` are the tensor names it may read."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ExpressionError(f"'{text}' is not an expression: {e.msg}") from None
    tensors: set[str] = set()
    _check(tree, tensors, True)
    unknown = sorted(tensors.difference(known))
    if unknown:
        raise ExpressionError(f"'{text}' reads unknown tensor '{unknown[0]}' (known: {', '.join(known)})")
    return Expression(text, tree, frozenset(tensors))


def parse_param(text: str, known: Sequence[str], model: str, key: str) -> Expression:
    """``parse`` with a load error naming the model and the parameter."""
    try:
        return parse(text, known)
    except ExpressionError as e:
        raise TritonError.invalid_arg(f"model '{model}', parameter '{key}': {e}") from None
