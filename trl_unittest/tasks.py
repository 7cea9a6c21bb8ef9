"""The task record: the one data type that flows from the builder through the reward and trainer to evaluation.

A task is a programming problem with executable unit tests. Its schema lives here and nowhere else; loaders
(MBPP, HumanEval), the dataset builder, the reward and the evaluator all read and write these fields.

Columns of a task dataset (``datasets.Dataset``):

=================  ==========================================================================================
``task_id``        unique id, e.g. ``"mbpp/11"`` or ``"stdlib/textwrap.dedent"``
``prompt``         what the model sees: for completion-style tasks the signature + docstring (and any context
                   the function needs); a completion is appended to it to form the program
``entry_point``    name of the function under test (empty for stdin/stdout tasks)
``tests``          list of structured tests (see :class:`Test`); expected values stay on the trusted side
``test_code``      the same tests rendered as ``assert`` statements, for people and for other tools
``reference``      a reference solution: a complete program (context + function) that passes the tests
``context``        code run before the program (imports, constants, helper functions it relies on)
``test_setup``     code run after the program and before the tests (fixtures the tests use, e.g. MBPP's
                   ``test_setup_code``, imports of the test code)
``reference_runtime``  seconds the reference took on all tests, or ``None``; per-test time budgets scale with it
``provenance``     ``{"source", "path", "qualname", "line", "license"}`` — where the task came from
``mutation_score`` fraction of reference mutants the tests kill, or ``None`` if not measured
``coverage``       fraction of the reference's lines the tests execute, or ``None`` if not measured
=================  ==========================================================================================

A :class:`Test` has a ``kind``:

* ``"call"`` — evaluate ``expr`` (e.g. ``"add(1, 2)"``) inside the sandbox in the program's namespace; the
  sandbox returns the value, strictly encoded, and the trusted side checks it with ``op`` against ``expected``
  (a Python literal, see :mod:`trl_unittest.execution.values`) or checks that ``exception`` was raised.
* ``"io"`` — run the program as ``__main__`` with ``stdin``; its standard output, whitespace-normalised, must
  equal ``expected`` (a plain string).
* ``"code"`` — arbitrary check code (an ``assert`` that could not be rewritten into a call test). It passes if
  it raises nothing. It runs in a test process of its own inside the sandbox, which no program code touches, and
  reaches the program only through a call proxy (arguments and return values cross as strict literals; see
  ``execution/worker.py``). A value that cannot cross (a callable, an object) leaves the test *unverified*: no
  verdict, never a pass (``UnitTestReward(unverified=...)`` decides what it is worth).
"""

from __future__ import annotations

import ast
import cmath
import dataclasses
import json
import keyword
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from trl_unittest.code import parse

TEST_KINDS = ("call", "io", "code")
CALL_OPS = ("eq", "ne", "approx", "truthy", "falsy", "is", "raises")


class TaskValidationError(ValueError):
    """A task record or one of its tests is malformed; the message names the task and the field."""


@dataclass
class Test:
    """One unit test. Fields that do not apply to the test's kind are left at their empty defaults."""

    __test__ = False  # not a pytest test class

    kind: str = "call"
    expr: str = ""  # call: the expression evaluated in the sandbox
    op: str = "eq"  # call: how the value is checked, one of CALL_OPS
    expected: str = ""  # call: Python literal of the expected value; io: expected stdout
    exception: str = ""  # call with op="raises": the exception type name expected
    rel_tol: float = 0.0  # call with op="approx"
    abs_tol: float = 0.0  # call with op="approx"
    stdin: str = ""  # io: standard input
    code: str = ""  # code: check code run in the program's namespace

    def validate(self, where: str = "test") -> "Test":
        for name in ("kind", "expr", "op", "expected", "exception", "stdin", "code"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TaskValidationError(f"{where}: `{name}` must be a string, got {type(value).__name__} "
                                          f"({value!r:.60})")
        for name in ("rel_tol", "abs_tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise TaskValidationError(f"{where}: `{name}` must be a finite number >= 0, got {value!r}")
        if self.kind not in TEST_KINDS:
            raise TaskValidationError(f"{where}: kind must be one of {TEST_KINDS}, got {self.kind!r}")
        if self.kind == "call":
            if not self.expr.strip():
                raise TaskValidationError(f"{where}: a call test needs a non-empty `expr`")
            if self.op not in CALL_OPS:
                raise TaskValidationError(f"{where}: op must be one of {CALL_OPS}, got {self.op!r}")
            if self.op == "raises" and not self.exception:
                raise TaskValidationError(f"{where}: op='raises' needs `exception` (an exception type name)")
            if self.op in ("eq", "ne", "approx", "is"):
                from trl_unittest.execution.values import LiteralError, decode_value

                try:
                    decode_value(self.expected)
                except LiteralError as e:
                    raise TaskValidationError(f"{where}: `expected` is not a supported literal: {e}") from None
        elif self.kind == "code" and not self.code.strip():
            raise TaskValidationError(f"{where}: a code test needs non-empty `code`")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Test":
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TaskValidationError(f"test has unknown fields {sorted(unknown)}")
        values = {k: v for k, v in data.items() if v is not None}
        return cls(**values)

    def render(self, entry_point: str = "") -> str:
        """The test as plain Python check code (an ``assert``), for people and other tools."""
        if self.kind == "code":
            return self.code
        if self.kind == "io":
            return f"# stdin: {self.stdin!r}\n# expected stdout: {self.expected!r}"
        expr, expected = _operand(self.expr), _operand(self.expected)
        if self.op == "eq":
            return f"assert {expr} == {expected}"
        if self.op == "ne":
            return f"assert {expr} != {expected}"
        if self.op == "is":
            return f"assert {expr} is {expected}"
        if self.op == "truthy":
            return f"assert {self.expr}"
        if self.op == "falsy":
            return f"assert not {expr}"
        if self.op == "approx":
            return self._render_approx()
        # a module's exception is named by its module's path (`xml.parsers.expat.ExpatError`): importing the top
        # package binds the name the clause reads (the module itself was loaded by the run that raised it)
        top = self.exception.split(".")[0] if "." in self.exception else ""
        head = f"import {top}\n" if top.isidentifier() and not keyword.iskeyword(top) else ""
        return (f"{head}try:\n    {self.expr}\nexcept {self.exception}:\n    pass\nelse:\n"
                f"    raise AssertionError('expected {self.exception}')")

    def _render_approx(self) -> str:
        """``math.isclose`` for a number (``cmath.isclose`` for a complex one); for a list, tuple or dict (what
        ``values_close`` compares element-wise) one ``isclose`` per number at its place and ``==`` for the rest:
        ``math.isclose`` of a list raises."""
        from trl_unittest.execution.values import LiteralError, decode_value  # (execution imports this module)

        tol = f"rel_tol={self.rel_tol!r}, abs_tol={self.abs_tol!r}"
        plain = f"assert math.isclose({self.expr}, {self.expected}, {tol})"
        try:
            expected = decode_value(self.expected)
        except LiteralError:
            return plain
        if type(expected) is complex:  # (math.isclose refuses complex numbers)
            return f"import cmath\nassert cmath.isclose({self.expr}, {self.expected}, {tol})"
        if not isinstance(expected, (list, tuple, dict)):  # one number: as it always was, but NaN (isclose says no)
            return f"assert math.isnan({self.expr})" if type(expected) is float and math.isnan(expected) else plain
        checks: list[str] = []

        def visit(value: Any, at: str) -> bool:
            if isinstance(value, (list, tuple)):
                checks.append(f"isinstance({at}, (list, tuple)) and len({at}) == {len(value)}")
                return all(visit(item, f"{at}[{i}]") for i, item in enumerate(value))
            if type(value) is dict:
                if not all(type(k) in (str, int, bool) or k is None for k in value):
                    return False  # a key with no plain literal
                checks.append(f"isinstance({at}, dict) and len({at}) == {len(value)}")
                checks.extend(f"{k!r} in {at}" for k in value)
                return all(visit(item, f"{at}[{k!r}]") for k, item in value.items())
            if type(value) is float and math.isnan(value):
                checks.append(f"math.isnan({at})")
            elif type(value) is complex and not cmath.isnan(value) and cmath.isfinite(value):
                checks.append(f"cmath.isclose({at}, {value!r}, {tol})")
            elif type(value) in (int, float):
                number = repr(value) if math.isfinite(value) else f"float('{value!r}')"
                checks.append(f"math.isclose({at}, {number}, {tol})")
            elif value is None or type(value) in (bool, str, bytes):
                checks.append(f"{at} == {value!r}")
            else:
                return False  # no plain literal for it here
            return True

        if not visit(expected, "_v"):
            return plain
        # the first check (the container's own) computes the value once, as `_v`
        checks[0] = checks[0].replace("_v", f"_v := ({self.expr})", 1)
        head = "import cmath\n" if any(c.startswith("cmath.") for c in checks) else ""
        return head + "assert " + " and ".join(checks)


def _operand(source: str) -> str:
    """``source`` ready to stand on one side of a comparison: parenthesised unless it binds tighter than one
    (``a or b``, ``not a``, ``a < b``, ``x if c else y``, ``a, b`` would change what the assert checks)."""
    try:
        node = parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return f"({source})"
    loose = (ast.BoolOp, ast.Compare, ast.IfExp, ast.Lambda, ast.NamedExpr, ast.Tuple, ast.Yield, ast.YieldFrom,
             ast.Await)
    if isinstance(node, loose) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return f"({source.strip()})"
    return source


PROVENANCE_KEYS = ("source", "path", "qualname", "line", "license")


@dataclass
class Task:
    task_id: str
    prompt: str
    entry_point: str
    tests: list[Test]
    reference: str = ""
    context: str = ""
    test_setup: str = ""
    reference_runtime: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    mutation_score: float | None = None
    coverage: float | None = None

    @property
    def test_code(self) -> str:
        return "\n".join(t.render(self.entry_point) for t in self.tests)

    def validate(self) -> "Task":
        where = f"task {self.task_id!r}"
        if not isinstance(self.task_id, str) or not self.task_id:
            raise TaskValidationError("task_id must be a non-empty string")
        if not isinstance(self.prompt, str):
            raise TaskValidationError(f"{where}: prompt must be a string")
        if not self.tests:
            raise TaskValidationError(f"{where}: has no tests")
        for i, t in enumerate(self.tests):
            if not isinstance(t, Test):
                raise TaskValidationError(f"{where}: tests[{i}] is {type(t).__name__}, not Test")
            t.validate(f"{where}, tests[{i}]")
        if any(t.kind == "call" for t in self.tests) and not self.entry_point:
            raise TaskValidationError(f"{where}: call tests need an entry_point")
        unknown = set(self.provenance) - set(PROVENANCE_KEYS)
        if unknown:
            raise TaskValidationError(f"{where}: provenance has unknown keys {sorted(unknown)}")
        return self

    def to_record(self) -> dict[str, Any]:
        """A flat dict with the dataset columns (tests as a list of dicts, provenance with every key)."""
        return {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "tests": [t.to_dict() for t in self.tests],
            "test_code": self.test_code,
            "reference": self.reference,
            "context": self.context,
            "test_setup": self.test_setup,
            "reference_runtime": self.reference_runtime,
            "provenance": {k: _provenance_value(k, self.provenance.get(k)) for k in PROVENANCE_KEYS},
            "mutation_score": self.mutation_score,
            "coverage": self.coverage,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Task":
        missing = [k for k in ("task_id", "prompt", "entry_point", "tests") if k not in record]
        if missing:
            raise TaskValidationError(f"record {record.get('task_id', '?')!r} lacks columns {missing}")
        return cls(
            task_id=record["task_id"],
            prompt=record["prompt"],
            entry_point=record["entry_point"] or "",
            tests=parse_tests(record["tests"], where=f"task {record['task_id']!r}"),
            reference=record.get("reference") or "",
            context=record.get("context") or "",
            test_setup=record.get("test_setup") or "",
            reference_runtime=record.get("reference_runtime"),
            provenance={k: v for k, v in (record.get("provenance") or {}).items() if v is not None},
            mutation_score=record.get("mutation_score"),
            coverage=record.get("coverage"),
        ).validate()


def _provenance_value(key: str, value: Any) -> Any:
    if value is None:
        return None
    return int(value) if key == "line" else str(value)


def parse_tests(tests: Any, where: str = "tests") -> list[Test]:
    """Accepts a list of Test, of dicts (a dataset row), or a JSON string of such a list."""
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError as e:
            raise TaskValidationError(f"{where}: tests is a string but not JSON: {e}") from None
    if isinstance(tests, Mapping):  # a column of structs read back column-wise
        keys = list(tests)
        lengths = {k: len(tests[k]) if isinstance(tests[k], (list, tuple)) else None for k in keys}
        if None in lengths.values() or len(set(lengths.values())) > 1:
            raise TaskValidationError(f"{where}: tests given column-wise need one list per field, all of the same "
                                      f"length; got {lengths}")
        tests = [dict(zip(keys, row)) for row in zip(*(tests[k] for k in keys))]
    if not isinstance(tests, (list, tuple)):
        raise TaskValidationError(f"{where}: tests must be a list, got {type(tests).__name__}")
    out = []
    for i, t in enumerate(tests):
        if isinstance(t, Test):
            out.append(t)
        elif isinstance(t, Mapping):
            try:
                out.append(Test.from_dict(t))
            except TypeError as e:
                raise TaskValidationError(f"{where}, tests[{i}]: {e}") from None
        else:
            raise TaskValidationError(f"{where}, tests[{i}]: expected a dict, got {type(t).__name__}")
    return out


def features():
    """The ``datasets.Features`` of a task dataset, so that every producer writes the same Arrow schema."""
    from datasets import Features, List, Value

    test = {
        "kind": Value("string"),
        "expr": Value("string"),
        "op": Value("string"),
        "expected": Value("string"),
        "exception": Value("string"),
        "rel_tol": Value("float64"),
        "abs_tol": Value("float64"),
        "stdin": Value("string"),
        "code": Value("string"),
    }
    return Features(
        {
            "task_id": Value("string"),
            "prompt": Value("string"),
            "entry_point": Value("string"),
            "tests": List(test),
            "test_code": Value("string"),
            "reference": Value("string"),
            "context": Value("string"),
            "test_setup": Value("string"),
            "reference_runtime": Value("float64"),
            "provenance": {
                "source": Value("string"),
                "path": Value("string"),
                "qualname": Value("string"),
                "line": Value("int64"),
                "license": Value("string"),
            },
            "mutation_score": Value("float64"),
            "coverage": Value("float64"),
        }
    )


def to_dataset(tasks: Iterable[Task]):
    """Validate tasks and return a ``datasets.Dataset`` with the task schema."""
    from datasets import Dataset

    records = [t.validate().to_record() for t in tasks]
    if not records:  # from_list cannot infer columns from nothing
        return Dataset.from_dict({name: [] for name in features()}, features=features())
    return Dataset.from_list(records, features=features())


def from_dataset(dataset) -> list[Task]:
    return [Task.from_record(r) for r in dataset]
