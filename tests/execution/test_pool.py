"""Outcome kinds, stdin/stdout tests, time budgets and pool lifecycle."""

import asyncio
import os

import pytest

from trl_unittest.execution import ExecutionPool, Limits, Program
from trl_unittest.execution.worker import CALLEE
from trl_unittest.tasks import Test

ADD = "def add(a, b):\n    return a + b\n"


def call(expr, expected, **kw):
    return Test(kind="call", expr=expr, expected=expected, **kw)


def test_every_test_outcome(pool):
    r = pool.run(Program(ADD, [call("add(1, 2)", "3"), call("add(1, 1)", "3"), call("add(1, 'x')", "0"),
                               call("add(*[0] * 3)", "0"), call("int('x')", "0", op="raises", exception="ValueError"),
                               call("add(2, 2)", "4", op="raises", exception="ValueError")]))
    assert r.status == "ran"
    assert [t.outcome for t in r.tests] == ["passed", "failed", "error", "error", "passed", "failed"]
    assert r.tests[1].observed == "2"
    assert r.tests[2].error_type == "TypeError"
    assert r.passed == 2 and not r.all_passed


def test_timeout_is_per_test_and_later_tests_still_run(pool):
    code = "import time\ndef f(x):\n    if x == 1:\n        time.sleep(100)\n    return x\n"
    r = pool.run(Program(code, [call("f(0)", "0"), call("f(1)", "1"), call("f(2)", "2")], timeouts=[1, 0.5, 1]))
    assert [t.outcome for t in r.tests] == ["passed", "timeout", "passed"]


def test_a_program_that_keeps_hanging_stops_costing_budget(pool):
    code = "def f(x):\n    while True:\n        pass\n"
    r = pool.run(Program(code, [call(f"f({i})", "0") for i in range(5)], timeouts=[0.3] * 5))
    assert [t.outcome for t in r.tests] == ["timeout"] * 5
    assert [t.error_type for t in r.tests] == ["Timeout"] * pool.limits.max_timeouts + ["NotRun"] * (5 - pool.limits.max_timeouts)


def test_max_timeouts_per_program(pool):
    code = "def f(x):\n    while True:\n        pass\n"
    r = pool.run(Program(code, [call(f"f({i})", "0") for i in range(3)], timeouts=[0.3] * 3, max_timeouts=1))
    assert [t.error_type for t in r.tests] == ["Timeout", "NotRun", "NotRun"]
    with pytest.raises(ValueError, match="max_timeouts"):
        pool.run(Program(code, [call("f(0)", "0")], max_timeouts=0))


def test_a_hang_skips_the_rest_of_its_group_only(pool):
    """As in a mutant program: each mutant's tests form a group; a mutant that hangs loses its remaining tests
    (unrun), and every other mutant's tests still run, beyond the pool's max_timeouts."""
    code = "def ok(x):\n    return x\n\ndef hang(x):\n    while True:\n        pass\n"
    exprs = ["hang(0)", "hang(1)", "ok(2)", "ok(3)", "hang(4)", "hang(5)", "hang(6)", "hang(7)", "ok(8)"]
    groups = [0, 0, 1, 1, 2, 2, 3, 3, 4]
    tests = [call(e, e[-2]) for e in exprs]
    r = pool.run(Program(code, tests, timeouts=[0.3] * 9, test_groups=groups, max_timeouts=5))
    assert [(t.outcome, t.error_type) for t in r.tests] == [
        ("timeout", "Timeout"), ("timeout", "NotRun"), ("passed", ""), ("passed", ""),
        ("timeout", "Timeout"), ("timeout", "NotRun"), ("timeout", "Timeout"), ("timeout", "NotRun"), ("passed", "")]
    with pytest.raises(ValueError, match="test groups"):
        pool.run(Program(code, tests, test_groups=[0]))


def test_callees_run_one_expression_on_each_named_function(pool):
    # the builder's mutant runs: one expression text per input, each group's tests calling another function
    code = "def f(x):\n    return x + 1\n\ndef g(x):\n    return x * 10\n"
    tests = [call(f"{CALLEE}(2)", "3"), call(f"{CALLEE}(3)", "4"), call(f"{CALLEE}(2)", "20"),
             call(f"{CALLEE}(3)", "30"), call(f"{CALLEE}(2)", "3"), call("f(5)", "6")]
    r = pool.run(Program(code, tests, callees=["f", "f", "g", "g", "missing", None]))
    assert [t.outcome for t in r.tests] == ["passed", "passed", "passed", "passed", "error", "passed"]
    assert r.tests[4].error_type == "NameError"
    with pytest.raises(ValueError, match="callees"):
        pool.run(Program(code, tests, callees=["f"]))


def test_program_level_statuses(pool):
    assert pool.run(Program("def f(:\n", [call("f()", "1")])).status == "compile_error"
    r = pool.run(Program("raise KeyError('boom')\n", [call("1", "1")]))
    assert (r.status, r.error, r.tests[0].outcome) == ("import_error", "KeyError", "error")
    r = pool.run(Program("import time\ntime.sleep(100)\n", [call("1", "1")]))
    assert (r.status, r.error) == ("import_error", "Timeout")


def test_context_runs_before_the_program(pool):
    r = pool.run(Program("def f():\n    return helper() + K\n", [call("f()", "12")],
                         context="K = 2\ndef helper():\n    return 10\n"))
    assert r.all_passed


def test_approx_truthy_falsy_and_is(pool):
    code = "def f(x):\n    return x / 3\n"
    r = pool.run(Program(code, [call("f(1)", "0.3333", op="approx", abs_tol=1e-3), call("f(1)", "0.3", op="approx"),
                                call("f(3)", "", op="truthy"), call("f(0)", "", op="falsy"),
                                call("print(1)", "None", op="is")]))
    assert [t.outcome for t in r.tests] == ["passed", "failed", "passed", "passed", "passed"]


def test_stdin_stdout_tests(pool):
    code = "import sys\nn = int(input())\nprint(' '.join(str(i * i) for i in range(n)))  \n"
    r = pool.run(Program(code, [Test(kind="io", stdin="3\n", expected="0 1 4\n\n"), Test(kind="io", stdin="2", expected="0 2"),
                                Test(kind="io", stdin="x", expected="")]))
    assert [t.outcome for t in r.tests] == ["passed", "failed", "error"]
    assert r.tests[2].error_type == "ValueError"


def test_each_program_gets_pristine_text_streams(pool):
    # the streams are made once by the worker and inherited: one program's buffered output or read-ahead must
    # never reach the next, and they behave like streams on regular files (seekable, shared with fd 1)
    writer = "import sys\nsys.stdout.write('leak')\nsys.stdin.read(1)\n"
    reader = ("import os, sys\nprint(sys.stdin.read(), sys.stdout.seekable(), sys.stdout.fileno(), end=' ')\n"
              "sys.stdout.flush()\nos.write(1, b'raw')\n")
    for _ in range(2 * pool.num_workers):
        pool.run(Program(writer, [Test(kind="io", stdin="abc", expected="")]))
        r = pool.run(Program(reader, [Test(kind="io", stdin="xyz", expected="xyz True 1 raw")]))
        assert r.tests[0].outcome == "passed", r.tests[0]


def test_stdin_program_that_exits_cleanly_passes(pool):
    r = pool.run(Program("print('ok')\nexit(0)\n", [Test(kind="io", stdin="", expected="ok")]))
    assert r.tests[0].outcome == "passed"


def test_code_tests_are_judged_in_the_test_process(pool):
    r = pool.run(Program(ADD, [Test(kind="code", code="assert add(1, 2) == 3"), Test(kind="code", code="assert add(1, 2) == 4"),
                               Test(kind="code", code="assert add(1, 2) == (lambda: 3)()"),
                               Test(kind="code", code="assert add(add, 2) == 3")]))
    assert [t.outcome for t in r.tests] == ["passed", "error", "passed", "unverified"]
    assert r.unverified == 1 and r.counted("exclude").total == 3 and r.counted("count").passed == 3


def test_line_tracing_reports_lines_of_the_program_only(pool):
    code = "def sign(x):\n    if x > 0:\n        return 1\n    return -1\n"
    r = pool.run(Program(code, [call("sign(5)", "1"), call("sign(-5)", "-1")], context="import math\n", trace_lines=True))
    assert r.tests[0].lines == [2, 3] and r.tests[1].lines == [2, 4]
    assert (2, 3) in r.tests[0].arcs and (2, 4) in r.tests[1].arcs


def test_reference_runtime_scales_budgets():
    limits = Limits(timeout_floor=0.5, timeout_factor=10)
    assert limits.test_timeouts(2, None) == [limits.test_timeout] * 2
    assert limits.test_timeouts(4, 0.4) == [1.0] * 4
    assert limits.test_timeouts(4, 0.004) == [0.5] * 4


def test_batch_keeps_order_and_async_api(pool):
    programs = [Program(f"def f():\n    return {i}\n", [call("f()", str(i))]) for i in range(30)]
    assert all(r.all_passed for r in pool.run_batch(programs))
    results = asyncio.run(pool.run_batch_async(programs[:5]))
    assert [r.tests[0].observed for r in results] == ["0", "1", "2", "3", "4"]


def test_hash_seed_reaches_the_program():
    code = "def h():\n    return hash('abc')\n"
    observed = []
    for seed in (1, 2):
        with ExecutionPool(num_workers=1, hash_seed=seed) as p:
            observed.append(p.run(Program(code, [call("h()", "0")])).tests[0].observed)
    assert observed[0] != observed[1]


def _descendants(pid):
    pairs = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    pairs.append((int(name), int(f.read().rsplit(")", 1)[1].split()[1])))
            except OSError:
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in pairs if pp in frontier} - found
        found |= frontier
    return found


def test_close_leaves_no_process_fd_or_temp_file():
    fds_before = set(os.listdir("/proc/self/fd"))
    procs_before = _descendants(os.getpid())
    pool = ExecutionPool(num_workers=2, sandbox="auto")
    assert pool.run(Program(ADD, [call("add(1, 2)", "3")])).all_passed
    assert len(_descendants(os.getpid()) - procs_before) >= 2
    pool.close()
    assert _descendants(os.getpid()) - procs_before == set()
    assert set(os.listdir("/proc/self/fd")) <= fds_before
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(Program(ADD, []))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="sandbox must be one of"):
        ExecutionPool(sandbox="docker")
    with ExecutionPool(num_workers=1) as p:
        with pytest.raises(TypeError, match="takes a Program"):
            p.submit("print(1)")
        with pytest.raises(TypeError, match=r"tests\[1\] is a str.*rewrite_asserts"):  # an assert string, not a Test
            p.submit(Program(ADD, [call("add(1, 1)", "2"), "assert add(1, 1) == 2"]))
        assert p.run(Program(ADD, [call("add(1, 1)", "2")])).passed == 1  # and the pool still serves


@pytest.mark.parametrize("mode", ["unshare", "none"])
def test_fallback_modes_give_the_same_verdicts_and_clean_up(mode):
    import tempfile

    before = {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("trl_unittest-")}
    with ExecutionPool(num_workers=1, sandbox=mode, limits=Limits(test_timeout=1.0)) as p:
        r = p.run(Program(ADD + "import time\ndef slow():\n    time.sleep(100)\n",
                          [call("add(1, 2)", "3"), call("add(1, 2)", "4"), call("slow()", "None")]))
        # outside bubblewrap the scratch space is a host temp dir: it exists while the pool runs...
        assert {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("trl_unittest-")} - before
    assert [t.outcome for t in r.tests] == ["passed", "failed", "timeout"]
    # ...and is gone after close()
    assert {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("trl_unittest-")} == before


def test_site_packages_are_visible_only_when_asked():
    from trl_unittest.execution import site_packages

    code = "def f():\n    import yaml\n    return yaml.safe_load('[1, 2]')\n"
    with ExecutionPool(num_workers=1) as p:
        r = p.run(Program(code, [call("f()", "[1, 2]")]))
    assert r.tests[0].error_type == "ModuleNotFoundError"
    with ExecutionPool(num_workers=1, python_paths=site_packages()) as p:
        assert p.run(Program(code, [call("f()", "[1, 2]")])).all_passed


def test_a_shifted_clock_moves_the_time_module_and_nothing_else(pool):
    """``Program.clock_shift`` (the builder's reruns) moves what the ``time`` module reports as now, in every
    function that reads it without an explicit time, and leaves explicit times and the monotonic clock alone."""
    code = ("import gzip, time\n"
            "def now():\n"
            "    return [time.time(), time.time_ns() // 10**9, int(time.strftime('%Y')), time.localtime().tm_yday,\n"
            "            time.gmtime()[0], int(time.ctime()[-4:]), int(time.asctime()[-4:]),\n"
            "            int.from_bytes(gzip.compress(b'x')[4:8], 'little')]\n"
            "def fixed():\n"
            "    return [time.strftime('%Y', time.gmtime(0)), time.ctime(0) == time.asctime(time.localtime(0))]\n"
            "def ticks():\n"
            "    a = time.monotonic()\n"
            "    return time.monotonic() - a < 1\n")
    tests = [call("now()", "None"), call("fixed()", "None"), call("ticks()", "True")]
    shift = 400 * 86400 + 3661.0
    plain, shifted = (pool.run(Program(code, tests, clock_shift=s)) for s in (0.0, shift))
    assert plain.status == shifted.status == "ran"
    p, s = (eval(r.tests[0].observed) for r in (plain, shifted))
    assert abs((s[0] - p[0]) - shift) < 30 and abs((s[1] - p[1]) - shift) < 30
    assert s[2] > p[2] and s[4] > p[4] and s[5] > p[5] and s[6] > p[6]  # a year later, however read
    assert s[3] != p[3]  # another day of the year
    assert abs((s[7] - p[7]) - shift) < 30  # gzip's header stamp, read through time.time()
    assert plain.tests[1].observed == shifted.tests[1].observed == "['1970', True]"
    assert shifted.tests[2].passed
