"""Rewrite assert-style check code (MBPP ``test_list``, HumanEval ``check(candidate)``) into structured tests.

``assert f(x) == y`` becomes a call test: the sandbox evaluates ``f(x)`` and returns the value; the trusted side
compares it with ``y``. Only the side that involves the program runs in the sandbox; the other side must be a
literal (see ``values.py``), so it never needs to run at all. Recognised shapes:

* ``E == L`` / ``L == E`` / ``E != L``; ``E is None|True|False``
* ``math.isclose(E, L, rel_tol=.., abs_tol=..)`` and ``abs(E - L) < tol`` (also ``<=``, either order)
* ``assert E`` / ``assert not E`` where ``E`` is a call, name, attribute or subscript (truthiness is decided on
  the trusted side from the returned plain value)
* a HumanEval-style ``def check(candidate):`` whose body is only such asserts (``candidate`` → the entry point)

Anything else (comparisons like ``<``, ``and``/``or``, non-literal expected values, loops in ``check``) stays as
a ``code`` test, counted in ``RewriteReport.unrewritten``: it runs in the sandbox's proxy harness, in a test
process of its own that reaches the program only through literal-encoded calls (``worker.py``), so the program
cannot forge its verdict; a value that cannot cross leaves it unverified.
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from dataclasses import dataclass, field

from trl_unittest.code import parse, rename_names
from trl_unittest.execution.values import MAX_LITERAL_CHARS, LiteralError, decode_value, literal_value
from trl_unittest.execution.worker import Unencodable, encode_value
from trl_unittest.tasks import Test


@dataclass
class RewriteReport:
    tests: list[Test] = field(default_factory=list)
    setup: str = ""  # non-assert top-level statements (imports, helpers): run them before the tests
    rewritten: int = 0
    unrewritten: int = 0
    skipped_trivial: int = 0  # `assert True, ...` lines
    reasons: Counter = field(default_factory=Counter)  # why each unrewritten assert stayed code


def rewrite_asserts(test_code: str | list[str], entry_point: str = "", candidate: str = "candidate") -> RewriteReport:
    if isinstance(test_code, (list, tuple)):
        test_code = "\n".join(test_code)
    report = RewriteReport()
    try:
        tree = parse(test_code)
    except SyntaxError as e:
        raise ValueError(f"test code does not parse: {e}") from None
    setup = []
    has_check = any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body)
    for node in tree.body:
        if isinstance(node, ast.Assert):
            _add(report, node, {})
        elif isinstance(node, ast.FunctionDef) and node.name == "check":
            _add_check(report, node, entry_point, candidate)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "METADATA" for t in node.targets):
            continue
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or a stray literal
        elif has_check and _calls_check(node):
            continue  # the harness's own `check(candidate)`: check() became the tests above
        elif isinstance(node, _SETUP_NODES):
            setup.append(ast.unparse(node))
        else:
            # statements that run checks (a loop of asserts, a call to a helper that asserts): set-up code would
            # run them before any test and count nothing; as a code test they are run and counted
            report.tests.append(Test(kind="code", code=_source(node, {})))
            report.unrewritten += 1
            report.reasons["check code outside check()"] += 1
    report.setup = "\n".join(setup)
    return report


# what set-up code is: definitions, imports and assignments (it prepares names; it checks nothing)
_SETUP_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Assign,
                ast.AnnAssign, ast.AugAssign, ast.Pass)


def _calls_check(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
        isinstance(node.value.func, ast.Name) and node.value.func.id == "check"


def _add_check(report: RewriteReport, node: ast.FunctionDef, entry_point: str, candidate: str) -> None:
    params = [a.arg for a in node.args.args]
    name = params[0] if params else candidate
    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if entry_point and all(isinstance(s, ast.Assert) for s in body):
        for stmt in body:
            _add(report, stmt, {name: entry_point})
        return
    reason = "check() has statements other than asserts" if entry_point else "no entry point to call check() with"
    report.tests.append(Test(kind="code", code=ast.unparse(node) + f"\ncheck({entry_point or name})"))
    report.unrewritten += 1
    report.reasons[reason] += 1


def _add(report: RewriteReport, node: ast.Assert, renames: dict[str, str]) -> None:
    if isinstance(node.test, ast.Constant) and node.test.value is True:
        report.skipped_trivial += 1
        return
    test, reason = _rewrite(node.test, renames)
    if test is None:
        report.tests.append(Test(kind="code", code=_source(ast.Assert(test=node.test, msg=None), renames)))
        report.unrewritten += 1
        report.reasons[reason] += 1
    else:
        report.tests.append(test)
        report.rewritten += 1


def _literal(node: ast.AST) -> str | None:
    """The node's value as literal text, or None when it is not a literal. The text is the sandbox's own
    encoding of that value (``[1, 2]`` for ``[1,2]``), so a right answer usually matches without decoding."""
    try:
        value = literal_value(node)
    except LiteralError:
        return None
    try:
        return encode_value(value)
    except Unencodable:
        text = ast.unparse(node)  # e.g. a complex number with an infinite part
        return text if len(text) <= MAX_LITERAL_CHARS else None


def _source(node: ast.AST, renames: dict[str, str]) -> str:
    """Source text of `node` with names renamed (in place: the tree was parsed here for this purpose only).
    Only the side that runs gets renamed; the literal side is never walked."""
    return ast.unparse(rename_names(node, renames) if renames else node)


def _is_value_expr(node: ast.AST) -> bool:
    return isinstance(node, (ast.Call, ast.Name, ast.Attribute, ast.Subscript))


def _rewrite(expr: ast.AST, renames: dict[str, str]) -> tuple[Test | None, str]:
    if isinstance(expr, ast.Compare) and len(expr.ops) == 1:
        left, op, right = expr.left, expr.ops[0], expr.comparators[0]
        if isinstance(op, (ast.Eq, ast.NotEq)):
            lit_r, lit_l = _literal(right), _literal(left)
            if lit_r is not None and lit_l is None:
                value_side, expected = left, lit_r
            elif lit_l is not None and lit_r is None:
                value_side, expected = right, lit_l
            elif lit_l is not None:
                return None, "compares two literals"
            else:
                return None, "expected value is not a literal"
            return Test(kind="call", expr=_source(value_side, renames), op="eq" if isinstance(op, ast.Eq) else "ne",
                        expected=expected), ""
        if isinstance(op, (ast.Is, ast.IsNot)) and isinstance(right, ast.Constant) and right.value in (None, True, False):
            if isinstance(op, ast.IsNot):
                return None, "`is not` comparison"
            return Test(kind="call", expr=_source(left, renames), op="is", expected=repr(right.value)), ""
        if isinstance(op, (ast.Lt, ast.LtE)):
            approx = _abs_diff(left, renames)
            tol = _literal(right)
            if approx is not None and tol is not None and type(decode_value(tol)) in (int, float):
                value_side, expected = approx
                tol = float(decode_value(tol))
                if not (math.isfinite(tol) and tol > 0):
                    return None, "abs() difference with a tolerance that is not a positive number"
                # `|a - b| < tol` is `|a - b| <= the float just below tol`; no relative tolerance
                return Test(kind="call", expr=value_side, op="approx", expected=expected, rel_tol=0.0,
                            abs_tol=math.nextafter(tol, 0.0) if isinstance(op, ast.Lt) else tol), ""
        return None, f"comparison {type(op).__name__}"
    if isinstance(expr, ast.Call) and _is_isclose(expr.func):
        if len(expr.args) != 2:
            return None, "isclose() with unusual arguments"
        kw = {k.arg: _literal(k.value) for k in expr.keywords}
        if any(v is None for v in kw.values()) or set(kw) - {"rel_tol", "abs_tol"}:
            return None, "isclose() with unusual arguments"
        a, b = expr.args
        lit_a, lit_b = _literal(a), _literal(b)
        if (lit_a is None) == (lit_b is None):
            return None, "isclose() needs exactly one literal side"
        value_side, expected = (a, lit_b) if lit_b is not None else (b, lit_a)
        return Test(kind="call", expr=_source(value_side, renames), op="approx", expected=expected,
                    rel_tol=float(decode_value(kw.get("rel_tol") or "1e-09")),
                    abs_tol=float(decode_value(kw.get("abs_tol") or "0.0"))), ""
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not) and _is_value_expr(expr.operand):
        return Test(kind="call", expr=_source(expr.operand, renames), op="falsy"), ""
    if _is_value_expr(expr):
        return Test(kind="call", expr=_source(expr, renames), op="truthy"), ""
    return None, f"assert on {type(expr).__name__}"


def _is_isclose(func: ast.AST) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "isclose") or (isinstance(func, ast.Name) and func.id == "isclose")


def _abs_diff(node: ast.AST, renames: dict[str, str]) -> tuple[str, str] | None:
    """`abs(E - L)` or `abs(L - E)` -> (E source, L literal)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "abs"
            and len(node.args) == 1 and isinstance(node.args[0], ast.BinOp) and isinstance(node.args[0].op, ast.Sub)):
        return None
    a, b = node.args[0].left, node.args[0].right
    lit_a, lit_b = _literal(a), _literal(b)
    if lit_b is not None and lit_a is None:
        return _source(a, renames), lit_b
    if lit_a is not None and lit_b is None:
        return _source(b, renames), lit_a
    return None
