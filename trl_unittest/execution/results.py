"""What goes into the executor and what comes out, and the trusted-side grading that turns the sandbox's raw
observations into verdicts. Expected values live only here, never in the sandbox."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from trl_unittest.execution.values import LiteralError, decode_shared, decode_value, values_close, values_equal
from trl_unittest.tasks import Test

PROGRAM_STATUSES = ("ran", "compile_error", "import_error", "sandbox_error")
# "unverified": a code test whose argument or return value could not cross between the test process and the
# program (a callable, a generator, an object): no verdict exists; never a pass (see UnitTestReward(unverified=))
TEST_OUTCOMES = ("passed", "failed", "error", "timeout", "unverified")
UNVERIFIED_MODES = ("fail", "exclude", "count")


@dataclass
class Limits:
    """Resource limits for each program, enforced inside the sandbox."""

    memory_bytes: int = 2 << 30  # RLIMIT_AS
    file_size_bytes: int = 8 << 20  # RLIMIT_FSIZE: caps anything written, stdout included
    max_processes: int = 32  # RLIMIT_NPROC for the program's uid (threads count)
    open_files: int = 64  # RLIMIT_NOFILE
    test_timeout: float = 3.0  # seconds per test when the task has no reference runtime
    timeout_floor: float = 0.5  # with a reference runtime: max(floor, factor x reference time per test)
    timeout_factor: float = 10.0
    setup_timeout: float = 5.0  # compiling and executing the program's top level
    max_timeouts: int = 2  # after this many tests time out, the program's remaining tests count as timeouts unrun
    output_cap: int = 4096  # characters of stdout/stderr kept for inspection (never used for verdicts)
    graded_output_bytes: int = 64 << 20  # stdin/stdout tests: output compared up to this size (more fails the test)
    scratch_inodes: int = 16384  # files and directories a program may create (its scratch and /dev/shm together)

    def rlimits(self) -> dict[str, int]:
        return {"RLIMIT_AS": self.memory_bytes, "RLIMIT_FSIZE": self.file_size_bytes,
                "RLIMIT_NPROC": self.max_processes, "RLIMIT_NOFILE": self.open_files, "RLIMIT_CORE": 0}

    def test_timeouts(self, n_tests: int, reference_runtime: float | None = None) -> list[float]:
        if reference_runtime is None or not math.isfinite(reference_runtime) or n_tests == 0:
            return [self.test_timeout] * n_tests
        per_test = reference_runtime / n_tests
        return [max(self.timeout_floor, self.timeout_factor * per_test)] * n_tests


@dataclass
class Program:
    """A program and the tests to run against it: `context` runs first (imports, helpers), then `code`, then
    `test_setup` (fixtures for the tests), all in one namespace."""

    code: str
    tests: list[Test]
    context: str = ""
    test_setup: str = ""
    timeouts: list[float] | None = None
    trace_lines: bool = False  # report the lines (and arcs) of `code` each test executes
    # after this many tests time out, the rest count as timeouts unrun (default: the pool's Limits.max_timeouts)
    max_timeouts: int | None = None
    # a group label per test (e.g. one per mutant): a test that times out also ends the run of the tests
    # right after it in the same group, which count as timeouts unrun ("NotRun"), and the next group starts
    # in a fresh child; None: every test is its own group
    test_groups: list[int] | None = None
    # per test, a function that the test's expression calls as ``CALLEE`` (None: the expression names its own):
    # tests that differ only in the function they call (one expression per input, run on each mutant) share
    # one expression text, which the sandbox compiles once instead of once per test
    callees: list[str | None] | None = None
    # seconds the program's wall clock (the ``time`` module's) is moved by: the builder reruns mined functions
    # under a shifted clock so that time-dependent outputs show as nondeterministic (see ``worker.shift_clock``)
    clock_shift: float = 0.0
    # set when no program could be made (extracting it from a completion failed): the reason; the program is
    # never run and gets a compile_error result
    rejected: str = ""


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    outcome: str  # one of TEST_OUTCOMES
    error_type: str = ""  # exception type name (error), or why the value could not be compared (failed)
    observed: str | None = None  # strict literal of the returned value (call tests)
    time: float = float("nan")
    lines: list[int] | None = None
    arcs: list[tuple[int, int]] | None = None
    stdout: str | None = None  # io tests: the program's output
    exception_names: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def unrun(self) -> bool:
        """The sandbox never ran this test (an earlier test hung: see Limits.max_timeouts, Program.test_groups)."""
        return self.error_type == "NotRun"


@dataclass
class ProgramResult:
    status: str  # one of PROGRAM_STATUSES
    tests: list[TestResult]
    error: str = ""  # compile/import/sandbox error type
    stdout: str = ""
    stderr: str = ""

    @property
    def unverified(self) -> int:
        """Tests with no verdict: a value that could not cross the proxy harness (see TEST_OUTCOMES)."""
        return sum(t.outcome == "unverified" for t in self.tests)

    def counted(self, unverified: str = "fail") -> "ProgramResult":
        """This result with its unverified tests counted as `unverified` says: ``fail`` (as they are: not
        passed), ``exclude`` (dropped: the program is judged on its other tests, and fails with none left) or
        ``count`` (as passed: forgeable, since a program decides whether its return value can cross)."""
        if unverified not in UNVERIFIED_MODES:
            raise ValueError(f"unverified must be one of {UNVERIFIED_MODES}, got {unverified!r}")
        if unverified == "fail" or not self.unverified:
            return self
        if unverified == "exclude":
            tests = [t for t in self.tests if t.outcome != "unverified"]
        else:
            tests = [dataclasses.replace(t, outcome="passed") if t.outcome == "unverified" else t for t in self.tests]
        return dataclasses.replace(self, tests=tests)

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def total(self) -> int:
        return len(self.tests)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def all_passed(self) -> bool:
        return self.status == "ran" and self.total > 0 and self.passed == self.total

    @property
    def runtime_error(self) -> bool:
        """The program failed to load, or some test raised (other than a test expecting that exception)."""
        return self.status in ("import_error", "sandbox_error") or any(t.outcome in ("error", "timeout") for t in self.tests)


def normalize_output(text: str) -> str:
    """Whitespace normalisation for stdin/stdout tests: trailing spaces and blank lines at the end don't count."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def output_digest(text: str) -> str:
    """sha256 of the normalised output, as the worker computes it for a program's stdout (``worker._Outputs``):
    outputs of any size are compared without crossing the sandbox boundary whole."""
    return hashlib.sha256(normalize_output(text).encode("utf-8", "surrogatepass")).hexdigest()


def grade_test(test: Test, raw: dict[str, Any]) -> TestResult:
    """Verdict for one test from the sandbox's raw observation (data only) and the expected value (trusted)."""
    outcome = raw.get("outcome")
    t = float(raw.get("t", float("nan")))
    names = list(raw.get("error") or [])
    lines, arcs = _trace_field(raw.get("lines"), 1), _trace_field(raw.get("arcs"), 2)
    common = {"time": t, "lines": lines, "arcs": arcs, "exception_names": names}
    if outcome == "timeout":
        return TestResult("timeout", error_type=names[0] if names else "Timeout", **common)
    if outcome == "error":
        if test.kind == "call" and test.op == "raises" and test.exception in names:
            return TestResult("passed", error_type=names[0], **common)
        return TestResult("error", error_type=names[0] if names else "Error", **common)
    if outcome == "unverifiable" and test.kind == "code":
        return TestResult("unverified", error_type=names[0] if names else "Unverifiable", **common)
    if outcome == "unencodable":
        # the value is not a plain literal, so it cannot equal an expected literal
        return TestResult("failed", error_type="UnencodableValue:" + (names[0] if names else ""), **common)
    if outcome != "ok":
        return TestResult("error", error_type="ProtocolError", **common)
    if test.kind == "io":
        stdout = raw.get("stdout") or ""
        if raw.get("stdout_truncated"):
            return TestResult("failed", error_type="OutputTooLarge", stdout=stdout, **common)
        digest = raw.get("stdout_sha256")
        if isinstance(digest, str):  # the worker hashed the whole output; what comes back is its head
            ok = digest == output_digest(test.expected)
        else:
            ok = normalize_output(stdout) == normalize_output(test.expected)
        return TestResult("passed" if ok else "failed", stdout=stdout, **common)
    if test.kind == "code":  # the test process's verdict: no code of the program's ran there
        return TestResult("passed", **common)
    observed = raw.get("value")
    # Every bound below holds before any parse: decoding costs about 4 s and 500 MB per MB of literal text, and
    # the text comes from the sandbox (a program can write its own frames)
    if not isinstance(observed, str) or len(observed) > MAX_OBSERVED_CHARS:
        # longer than the sandbox's encoder ever writes: a forged frame
        return TestResult("error", error_type="ProtocolError", **common)
    if test.op == "raises":  # it returned instead of raising
        return TestResult("failed", observed=observed, **common)
    if test.op == "is" and len(observed) > len("False"):  # only None, True and False can be `is` the expected
        return TestResult("failed", observed=observed, **common)
    if test.op in ("truthy", "falsy") and len(observed) > _LONGEST_FALSY:
        # every falsy literal is short ('', [], set(), 0j, bytearray(b''), ...): a longer one is truthy
        return TestResult("passed" if test.op == "truthy" else "failed", observed=observed, **common)
    if test.op == "eq" and observed == test.expected:
        # the same literal text decodes to the same value, which equals itself (NaN included): skip the decoding
        try:
            decode_shared(observed)
            return TestResult("passed", observed=observed, **common)
        except LiteralError:
            pass
    if test.op in ("eq", "ne", "approx") and len(observed) > _LONGER_THAN_EQUAL * len(test.expected) + 1000:
        # far longer than any text of a value equal to the expected one (1 vs True, 0 vs -0.0 ... differ by a
        # few characters per item): not equal, judged without decoding megabytes on the trusted side
        return TestResult("passed" if test.op == "ne" else "failed", observed=observed, **common)
    try:
        actual = decode_value(observed)
    except LiteralError:
        return TestResult("error", error_type="ProtocolError", observed=None, **common)
    if test.op == "is" and observed not in ("None", "True", "False"):
        # numpy(True) decodes to True, yet `np.True_ is True` is false in Python
        return TestResult("failed", observed=observed, **common)
    ok = _check(test, actual)
    return TestResult("passed" if ok else "failed", observed=observed, **common)


_LONGER_THAN_EQUAL = 8
MAX_OBSERVED_CHARS = 1 << 20  # worker.MAX_VALUE_CHARS: the encoder refuses longer values as ValueTooLarge
_LONGEST_FALSY = 256  # the longest falsy literals (`(-0.0-0j)`, `bytearray(b'')`, `frozenset()`) are far shorter


def _trace_field(value: Any, width: int) -> list | None:
    """Covered lines (``width`` 1: ints) or arcs (2: int pairs) from the sandbox, or None when malformed."""
    if not isinstance(value, list):
        return None
    if width == 1:
        return value if all(type(v) is int for v in value) else None
    if all(isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v) for v in value):
        return [tuple(v) for v in value]
    return None


def _check(test: Test, actual: Any) -> bool:
    if test.op == "raises":
        return False
    if test.op == "truthy":
        return bool(actual)  # a decoded plain value: its truthiness runs no program code
    if test.op == "falsy":
        return not actual
    expected = decode_shared(test.expected)
    if test.op == "eq":
        return values_equal(expected, actual)
    if test.op == "ne":
        return not values_equal(expected, actual)
    if test.op == "is":
        return expected is actual if expected in (None, True, False) else False
    if test.op == "approx":
        return values_close(expected, actual, test.rel_tol, test.abs_tol)
    raise ValueError(f"unknown op {test.op!r}")


def grade_program(program: Program, raw: dict[str, Any]) -> ProgramResult:
    status = raw.get("status", "sandbox_error")
    error = raw.get("error") or []
    error = error[0] if isinstance(error, list) and error else (error if isinstance(error, str) else "")
    raw_tests = raw.get("tests") or []
    tests = []
    for i, test in enumerate(program.tests):
        r = raw_tests[i] if i < len(raw_tests) and isinstance(raw_tests[i], dict) else {"outcome": "error", "error": [error or "NotRun"]}
        tests.append(grade_test(test, r))
    if status in ("compile_error", "import_error", "sandbox_error"):
        for tr in tests:  # nothing passes in a program that did not load
            if tr.outcome == "passed":
                tr.outcome = "error"
    return ProgramResult(status=status if status in PROGRAM_STATUSES else "sandbox_error", tests=tests,
                         error=error, stdout=raw.get("stdout", ""), stderr=raw.get("stderr", ""))


def sandbox_failure(program: Program, reason: str) -> ProgramResult:
    return ProgramResult(status="sandbox_error", error=reason,
                         tests=[TestResult("error", error_type=reason) for _ in program.tests])


def rejected_result(program: Program) -> ProgramResult:
    """The result of a program that was never run because it could not be made (``Program.rejected``)."""
    return ProgramResult(status="compile_error", error=program.rejected,
                         tests=[TestResult("error", error_type=program.rejected) for _ in program.tests])


def request_tests(program: Program) -> tuple[list[dict[str, Any]], list[str]]:
    """What the sandbox gets to know about each test: never the expected value or exception. Code tests carry
    their expected values in their code: it travels apart (the second item), to the test process only."""
    out, codes = [], []
    callees = program.callees or [None] * len(program.tests)
    for t, callee in zip(program.tests, callees):
        if t.kind == "call":
            out.append({"kind": "call", "expr": t.expr} if callee is None else
                       {"kind": "call", "expr": t.expr, "callee": callee})
        elif t.kind == "io":
            out.append({"kind": "io", "stdin": t.stdin})
        else:
            out.append({"kind": "code", "code_index": len(codes)})
            codes.append(t.code)
    return out, codes
