"""Doctest examples in a docstring -> structured call tests.

Parsing uses the standard library's ``doctest.DocTestParser``. The conversion (binding ``x = ...`` set-up lines
into later expressions, rewriting ``module.func(...)`` to ``func(...)``, reading the expected output as a strict
literal or an exception type) is specific to our test schema, so it is hand-written here.

A converted example is still only a claim: the builder runs it against the reference in the sandbox and keeps
it as a doctest test only when the reference agrees.
"""

from __future__ import annotations

import ast

from trl_unittest.data.extract import parse as _parse  # noqa: E402
import doctest
from dataclasses import dataclass

from trl_unittest.execution.values import LiteralError, decode_value


@dataclass
class DoctestCase:
    expr: str  # the expression to evaluate (names bound by earlier examples inlined)
    expected: str | None  # the expected value as literal text; None when the output is not a literal
    exception: str | None  # the expected exception type name, when the example raises
    line: int  # line of the example inside the docstring (0-based, as doctest reports it)


class _Inline(ast.NodeTransformer):
    def __init__(self, env: dict[str, ast.expr], entry_point: str, known: set[str]):
        self.env, self.entry_point, self.known = env, entry_point, known

    def visit_Name(self, node):  # noqa: N802
        if isinstance(node.ctx, ast.Load) and node.id in self.env:
            return ast.copy_location(self.env[node.id], node)
        return node

    def visit_Attribute(self, node):  # noqa: N802
        # module.func / Class.func -> func, when the prefix is not a name the program knows
        if node.attr == self.entry_point and isinstance(node.ctx, ast.Load):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id not in self.known and root.id not in self.env:
                return ast.copy_location(ast.Name(self.entry_point, ast.Load()), node)
        self.generic_visit(node)
        return node


def _free_names(expr: str) -> set[str]:
    from trl_unittest.data.extract import _refs_of

    refs, _ = _refs_of("__value__ = (" + expr + "\n)")
    refs.discard("__value__")
    return refs


def doctest_cases(docstring: str, entry_point: str, known_names: set[str] | frozenset[str]) -> list[DoctestCase]:
    """Structured cases from the docstring's examples.

    ``known_names``: names the test expression may use besides the entry point (builtins and the names the
    carried context defines). Examples that need anything else (other functions of the module, objects built by
    statements we cannot inline) are skipped.
    """
    try:
        examples = doctest.DocTestParser().get_examples(docstring or "")
    except ValueError:
        return []
    known = set(known_names) | {entry_point}
    env: dict[str, ast.expr] = {}
    out: list[DoctestCase] = []
    for ex in examples:
        if ex.options.get(doctest.SKIP):
            continue
        try:
            tree = _parse(ex.source)
        except (SyntaxError, ValueError):
            continue
        if len(tree.body) != 1:
            continue
        stmt = tree.body[0]
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and not ex.want:
            value = _Inline(env, entry_point, known).visit(stmt.value)
            env[stmt.targets[0].id] = value
            continue
        if not isinstance(stmt, ast.Expr):
            continue
        node = _Inline(env, entry_point, known).visit(stmt.value)
        is_print = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
        if is_print:  # printed output is not a repr; keep the argument as an input only
            if len(node.args) != 1 or node.keywords:
                continue
            node = node.args[0]
        try:
            expr = ast.unparse(node)
        except Exception:  # noqa: BLE001 - unparse of odd trees
            continue
        try:
            names = _free_names(expr)
        except (SyntaxError, ValueError):
            continue
        if entry_point not in names or not names <= known:
            continue
        expected = exception = None
        if ex.exc_msg is not None:
            exception = ex.exc_msg.split(":", 1)[0].strip().split(".")[-1] or None
        elif not is_print:
            want = ex.want.strip()
            if not want:
                expected = "None"
            elif _is_literal(want):
                expected = ast.unparse(_parse(want, mode="eval"))  # one line, canonical spacing
        out.append(DoctestCase(expr=expr, expected=expected, exception=exception, line=ex.lineno))
    return out


def _is_literal(text: str) -> bool:
    try:
        decode_value(text)
    except LiteralError:
        return False
    return True
