"""Strict value encoding: Python literals in, Python literals out, and nothing that can run code.

Values cross the sandbox boundary as Python literal source text built by a strict encoder inside the sandbox
(``worker.encode_value``: exact built-in types only, no subclasses, no user ``__repr__``) and are read back here
by :func:`decode_value`, which walks the parse tree and accepts only literals. Decoded values are plain built-in
objects, so comparing them with ``==`` on the trusted side cannot call code the program defined: an object whose
``__eq__`` always says True never leaves the sandbox as such.

A few standard types that compare with plain values have tagged encodings (``Decimal('1.5')``, ``Fraction(1, 2)``,
``deque([1], None)``, ``dict_keys([1])``, ``Match((0, 1), 'a')``, ``numpy(3)``, ``ndarray([1, 2], '<i8')``):
they are rebuilt here as that standard type (``worker.make_tagged``), never as anything the program defined,
and then compare as Python compares them with the expected value.

The same format stores expected values in task records, so that a dataset stays readable (``[1, 2]``,
``{'a': (1.5, None)}``, ``frozenset({1})``, ``float('nan')``).

The commonest short texts (small numbers, plain strings, flat lists of those...) are read without a parse, to
exactly the values the parse gives (see ``_decode_fast``): the builder decodes every result of every mutant.

``ast.literal_eval`` is close but not enough: it rejects ``float('nan')``/``inf`` and ``frozenset(...)``, accepts
arbitrary ``+``/``-`` between numbers, and has no depth or size limit; hence this small walker.
"""

from __future__ import annotations

import ast
import cmath
import functools
import math
import re
from typing import Any

from trl_unittest.code import parse
from trl_unittest.execution.worker import TAGS, make_tagged
from trl_unittest.execution.worker import LiteralError as _TagError

MAX_LITERAL_CHARS = 4 * 1024 * 1024
MAX_DEPTH = 100


class LiteralError(ValueError):
    """The text is not a value in the strict literal format."""


_SPECIAL_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "+inf": math.inf, "infinity": math.inf,
                   "-infinity": -math.inf}


# The commonest texts the encoder sends, read without a parse: a small int, a plain float, None/True/False, a
# short str or bytes without quotes, backslashes or unprintable characters, an empty container, a flat list,
# tuple or set of those. The builder decodes ~100k values a run and a parse costs 10-30 us under the parse lock.
# Each form is one whose value is exactly what the parse gives (int()/float() convert as the compiler does; an
# unescaped string's value is its text; an item of a flat container cannot hold the ", " it is split on, since
# a string item that holds a quote is not in the fast form); anything else, a leading zero or a surrounding
# space included, takes the parse.
_FAST_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(\.[0-9]{1,17}(?:e[-+][0-9]{1,3})?)?")
_FAST_NAMES = {"None": None, "True": True, "False": False}
_FAST_EMPTY = {"[]": list, "()": tuple, "{}": dict, "set()": set, "frozenset()": frozenset}
_FAST_BRACKETS = {"[": "]", "(": ")", "{": "}"}
_SLOW = object()


def _scalar_fast(text: str) -> Any:
    if text in _FAST_NAMES:
        return _FAST_NAMES[text]
    m = _FAST_NUMBER.fullmatch(text)
    if m:
        return float(text) if m.group(1) else int(text)
    if len(text) >= 2 and text[-1] == "'":
        if text[0] == "'":
            body = text[1:-1]
        elif text[0] == "b" and text[1:2] == "'" and len(text) >= 3:
            body = text[2:-1]
        else:
            return _SLOW
        if "'" in body or "\\" in body or not body.isprintable():
            return _SLOW
        if text[0] == "b":  # a bytes literal holds ASCII characters only
            return body.encode("ascii") if body.isascii() else _SLOW
        return body
    return _SLOW


def _decode_fast(text: str) -> Any:
    """The value of a text in one of the fast forms above, else the marker ``_SLOW``."""
    if len(text) > 1024:
        return _SLOW
    if text in _FAST_EMPTY:
        return _FAST_EMPTY[text]()
    close = _FAST_BRACKETS.get(text[:1])
    if close is None:
        return _scalar_fast(text)
    if text[-1] != close or len(text) < 3:
        return _SLOW
    parts = text[1:-1].split(", ")
    if close == ")" and len(parts) == 1:  # one item: only `(x,)` is a tuple
        if not parts[0].endswith(","):
            return _SLOW
        parts[0] = parts[0][:-1]
    items = []
    for part in parts:
        item = _scalar_fast(part)
        if item is _SLOW:
            return _SLOW
        items.append(item)
    return items if close == "]" else (tuple(items) if close == ")" else set(items))


def decode_value(text: str) -> Any:
    if type(text) is str:
        value = _decode_fast(text)
        if value is not _SLOW:
            return value
    if not isinstance(text, str):
        raise LiteralError(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_LITERAL_CHARS:
        raise LiteralError(f"literal of {len(text)} characters exceeds the limit of {MAX_LITERAL_CHARS}")
    try:
        tree = parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise LiteralError(f"cannot parse {text[:80]!r}: {type(e).__name__}") from None
    try:
        return _build(tree.body, 0)
    except RecursionError:
        raise LiteralError("literal nested too deeply") from None


@functools.lru_cache(maxsize=8192)
def decode_shared(text: str) -> Any:
    """:func:`decode_value`, once per text: for values decoded again and again (a task's expected values, graded
    for every completion; a reference's values, compared with every mutant). Callers only compare the value,
    never change it, so sharing one object is safe."""
    return decode_value(text)


def literal_value(node: ast.AST) -> Any:
    """The value of an already parsed expression node in the strict literal format; LiteralError otherwise."""
    try:
        return _build(node, 0)
    except RecursionError:
        raise LiteralError("literal nested too deeply") from None


def _build(node: ast.AST, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise LiteralError(f"literal nested deeper than {MAX_DEPTH}")
    d = depth + 1
    if isinstance(node, ast.Constant):
        if node.value is Ellipsis:
            raise LiteralError("Ellipsis is not a supported value")
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_build(e, d) for e in node.elts)
    if isinstance(node, ast.List):
        return [_build(e, d) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_hashable(_build(e, d)) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise LiteralError("dict unpacking (**) is not a literal")
        return {_hashable(_build(k, d)): _build(v, d) for k, v in zip(node.keys, node.values)}
    # a sign, a complex sum and a call's argument are the same level of the value (as the encoder counts them)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _build(node.operand, depth)
        if type(operand) not in (int, float, complex):
            raise LiteralError("unary +/- applies only to numbers")
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        # only the complex-number form `a + bj` / `a - bj`
        left, right = _build(node.left, depth), _build(node.right, depth)
        if type(left) in (int, float) and type(right) is complex and right.real == 0:
            return left + right if isinstance(node.op, ast.Add) else left - right
        raise LiteralError("+/- between values is allowed only in complex literals like 1+2j")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name, args = node.func.id, node.args
        if name == "float" and len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            key = args[0].value.strip().lower()
            if key in _SPECIAL_FLOATS:
                return _SPECIAL_FLOATS[key]
            raise LiteralError(f"float({args[0].value!r}) is not nan or inf")
        if name in ("set", "frozenset", "tuple", "list") and len(args) <= 1:
            items = _build(args[0], depth) if args else ()
            if type(items) not in (list, tuple, set, frozenset, str):
                raise LiteralError(f"{name}() of a {type(items).__name__}")
            if name in ("set", "frozenset"):
                items = [_hashable(i) for i in items]
            return {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list}[name](items)
        if name == "dict" and not args:
            return {}
        if name == "bytearray" and len(args) == 1:
            raw = _build(args[0], depth)
            if type(raw) is not bytes:
                raise LiteralError("bytearray() takes a bytes literal")
            return bytearray(raw)
        if name in TAGS:  # tagged encodings of standard types (see worker.encode_value)
            try:
                return make_tagged(name, [_build(a, depth) for a in args])
            except _TagError as e:
                raise LiteralError(str(e)) from None
        raise LiteralError(f"call to {name}() is not a literal")
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return _SPECIAL_FLOATS[node.id]
    raise LiteralError(f"{type(node).__name__} is not a literal")


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise LiteralError(f"unhashable {type(value).__name__} inside a set or as a dict key") from None
    return value


def is_literal(text: str) -> bool:
    try:
        decode_value(text)
    except LiteralError:
        return False
    return True


def values_equal(expected: Any, actual: Any) -> bool:
    """Python ``==`` on decoded built-in values, except that NaN equals NaN (a function returning nan is right
    when nan was recorded). Both sides are plain literals, so no user code runs."""
    if type(expected) is float and type(actual) is float and math.isnan(expected) and math.isnan(actual):
        return True
    if isinstance(expected, (list, tuple)) and type(expected) is type(actual):
        return len(expected) == len(actual) and all(values_equal(e, a) for e, a in zip(expected, actual))
    if isinstance(expected, dict) and type(actual) is dict:
        return expected.keys() == actual.keys() and all(values_equal(v, actual[k]) for k, v in expected.items())
    try:
        return bool(expected == actual)
    except Exception:
        return False


_NUMBERS = (int, float, complex)


def values_close(expected: Any, actual: Any, rel_tol: float, abs_tol: float) -> bool:
    """``math.isclose`` element-wise over numbers nested in lists/tuples and dict values (``cmath.isclose`` where one
    is complex: an FFT's ``6.1e-17-1j`` is ``-1j`` computed another way); other values must be equal. With no
    tolerance at all (both 0), ``math.isclose``'s default ``rel_tol=1e-9``; an explicit ``rel_tol=0`` beside an
    ``abs_tol`` stays 0. An int too large for a float is close to nothing it differs from."""
    if type(expected) in _NUMBERS and type(actual) in _NUMBERS:
        isnan, isclose = (cmath.isnan, cmath.isclose) if complex in (type(expected), type(actual)) else \
            (math.isnan, math.isclose)
        try:
            if isnan(expected) or isnan(actual):
                return isnan(expected) and isnan(actual)
            return isclose(expected, actual, rel_tol=rel_tol if (rel_tol or abs_tol) else 1e-9, abs_tol=abs_tol)
        except (OverflowError, ValueError):  # an int beyond float range (isnan and isclose convert)
            return expected == actual
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(expected) == len(actual) and all(
            values_close(e, a, rel_tol, abs_tol) for e, a in zip(expected, actual))
    if type(expected) is dict and type(actual) is dict:  # the same keys, each value within tolerance
        return len(expected) == len(actual) and all(
            k in actual and values_close(v, actual[k], rel_tol, abs_tol) for k, v in expected.items())
    return values_equal(expected, actual)
