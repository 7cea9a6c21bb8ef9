"""The proxy harness for ``code`` tests: verdicts come from a test process no program code touched.

The forgery test runs forgers written as completions (what a policy under RL can emit) against every HumanEval
and MBPP task that has code tests, through the reward and through evaluation, in one pool.
"""

import pytest

from trl_unittest.data.loaders import default_mbpp_path, load_humaneval, load_mbpp
from trl_unittest.evaluation import evaluate_completions
from trl_unittest.execution import ExecutionPool, Limits, Program
from trl_unittest.rewards import UnitTestReward
from trl_unittest.tasks import Test, to_dataset

# function bodies: each is appended to a task's completion-style prompt, so it forges from inside the entry point
FORGERS = {
    # the forger of issue 15: result frames on every fd (the harness's result fd among them), then exit
    "frames_then_exit": """\
    import os, json, struct
    for fd in range(3, 64):
        for i in range(16):
            for o in ({'ev': 'begin'}, {'ev': 'imported'}, {'ev': 'result', 'i': i, 'value': 'None'},
                      {'r': i + 1, 'value': 'None'}, {'r': i + 1, 'kind': 'value', 'value': 'True'}):
                d = json.dumps(o).encode()
                try:
                    os.write(fd, struct.pack('>I', len(d)) + d)
                except OSError:
                    pass
    os._exit(0)
""",
    # walk up to the harness's frame and rewrite what it is about to send
    "frame_walk": """\
    import sys
    f = sys._getframe(1)
    while f is not None:
        for key in ('reply', 'msg', 'status'):
            if isinstance(f.f_locals.get(key), dict):
                f.f_locals[key].update(value='None', kind='value')
        f = f.f_back
    return object()
""",
    # the task's helpers (HumanEval/32 checks roots with poly, /38 and /50 encode with the prompt's encoder)
    "redefine_helpers": """\
    global poly, encode_cyclic, encode_shift, sort_third
    poly = lambda *a, **k: 0
    encode_cyclic = encode_shift = lambda s: s
    sort_third = lambda l: l
    args = [a for a in (locals().get(n) for n in ('s', 'l', 'xs', 'x', 'numbers', 'lst', 'grid', 'string'))]
    return next((a for a in args if a is not None), 0)
""",
    "always_equal": """\
    class A:
        def __eq__(self, o): return True
        def __ne__(self, o): return False
        def __lt__(self, o): return True
        def __bool__(self): return True
        def __abs__(self): return 0
        def __sub__(self, o): return 0
        __rsub__ = __sub__
        def __iter__(self): return iter(())
        def __len__(self): return 0
        __hash__ = object.__hash__
    return A()
""",
    "str_subclass_liar": """\
    class S(str):
        def __eq__(self, o): return True
        __hash__ = str.__hash__
    return S('')
""",
    "callable_return": "    return lambda *a, **k: True\n",
    "huge_return": "    return 'x' * (1 << 24)\n",
    "kill_everything": """\
    import os, signal
    for p in os.listdir('/proc'):
        if p.isdigit() and int(p) != os.getpid():
            for s in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    os.kill(int(p), s)
                except OSError:
                    pass
    return 0
""",
    "patch_builtins_and_harness": """\
    import builtins, sys
    builtins.AssertionError = type('AssertionError', (BaseException,), {})
    builtins.isinstance = lambda *a: True
    for m in list(sys.modules.values()):
        for name in ('encode_value', 'write_frame', 'exception_names'):
            if hasattr(m, name):
                setattr(m, name, lambda *a, **k: 'None')
    return object()
""",
    "forged_exception_names": """\
    raise type('Unverifiable', (Exception,), {'__module__': 'builtins'})()
""",
    "exit_cleanly": "    raise SystemExit(0)\n",
}


def _code_test_tasks():
    tasks = load_humaneval(as_dataset=False)
    mbpp = default_mbpp_path()
    if mbpp is not None:
        for split in ("train", "validation", "test", "prompt"):
            tasks += load_mbpp(mbpp, split=split, as_dataset=False)
    return [t for t in tasks if any(x.kind == "code" for x in t.tests)]


@pytest.fixture(scope="module")
def code_tasks():
    tasks = _code_test_tasks()
    assert len(tasks) >= 10  # HumanEval alone has 10 tasks with code tests
    return tasks


@pytest.fixture(scope="module")
def proxy_pool():
    with ExecutionPool(num_workers=2, limits=Limits(test_timeout=3.0, setup_timeout=3.0)) as pool:
        yield pool


def test_references_pass_their_code_tests_with_a_verdict(code_tasks, proxy_pool):
    results = proxy_pool.run_batch([Program(t.reference, t.tests, context=t.context, test_setup=t.test_setup)
                                    for t in code_tasks])
    assert [t.task_id for t, r in zip(code_tasks, results) if not r.all_passed] == []
    assert sum(r.unverified for r in results) == 0


@pytest.mark.hostile
def test_forgers_get_no_full_pass_through_reward_and_evaluation(code_tasks, proxy_pool):
    reward = UnitTestReward(pool=proxy_pool, scheme="binary")
    prompts, completions, columns = [], [], {"tests": [], "entry_point": [], "context": [], "test_setup": []}
    for task in code_tasks:
        for body in FORGERS.values():
            prompts.append(task.prompt)
            completions.append(body)
            columns["tests"].append([t.to_dict() for t in task.tests])
            columns["entry_point"].append(task.entry_point)
            columns["context"].append(task.context)
            columns["test_setup"].append(task.test_setup)
    results = reward.results(prompts, completions, **columns)
    rewards = reward(prompts, completions, **columns)
    names = list(FORGERS) * len(code_tasks)
    passed = [(code_tasks[i // len(FORGERS)].task_id, names[i]) for i, r in enumerate(rewards) if r > 0]
    assert passed == []
    # the forgers really ran: their code tests were judged (not a compile error of the completion)
    assert all(r.status == "ran" for r in results), [(n, r.status, r.error) for n, r in zip(names, results)
                                                      if r.status != "ran"]
    code_passes = {(code_tasks[i // len(FORGERS)].task_id, names[i]) for i, r in enumerate(results)
                   for t, spec in zip(r.tests, code_tasks[i // len(FORGERS)].tests) if spec.kind == "code" and t.passed}
    # HumanEval/33's code tests compare the function with itself (`tuple(f(x)) == tuple(f(x))`): any
    # deterministic function passes them, honestly; no other code test is passed by a forger
    assert {task for task, _ in code_passes} <= {"HumanEval/33"}, code_passes
    report = evaluate_completions(to_dataset(code_tasks), [list(FORGERS.values())] * len(code_tasks), k=[1],
                                  pool=proxy_pool)
    assert report.pass_at_k["pass@1"] == 0.0 and sum(row["correct"] for row in report.rows) == 0


def test_unverifiable_values_never_pass_by_default(proxy_pool):
    check = Test(kind="code", code="def check(candidate):\n    assert candidate(2) == 4\ncheck(f)")
    programs = {
        "callable": "def f(x): return lambda: x",
        "generator": "def f(x):\n    yield x * x",
        "object": "def f(x): return object()",
        "swallowed": "def f(x): return lambda: x",  # with a test that catches everything, below
        "correct": "def f(x): return x * x",
    }
    swallow = Test(kind="code", code="try:\n    assert f(2) == 4\nexcept BaseException:\n    pass")
    results = proxy_pool.run_batch([Program(src, [swallow if name == "swallowed" else check])
                                    for name, src in programs.items()])
    outcomes = {name: r.tests[0].outcome for name, r in zip(programs, results)}
    assert outcomes == {"callable": "unverified", "generator": "unverified", "object": "unverified",
                        "swallowed": "unverified", "correct": "passed"}
    assert results[0].tests[0].error_type == "UnencodableValue:function"
    # an argument that cannot cross (the test passes a function) is unverifiable too, whatever the program
    arg = Test(kind="code", code="assert apply(len, 'ab') == 2")
    r = proxy_pool.run(Program("def apply(g, x): return g(x)", [arg]))
    assert r.tests[0].outcome == "unverified" and r.tests[0].error_type.startswith("UnencodableArgument")


def test_unverified_modes_in_reward_and_evaluation(proxy_pool):
    tests = [Test(expr="f(1)", expected="1"), Test(kind="code", code="assert f(2) == 4")]
    prompts, completions = ["def f(x):\n"] * 2, ["    return x * x\n", "    return x if x == 1 else (lambda: 0)\n"]
    columns = {"tests": [[t.to_dict() for t in tests]] * 2, "entry_point": ["f", "f"]}
    got = {mode: UnitTestReward(pool=proxy_pool, scheme="fraction", unverified=mode)(prompts, completions, **columns)
           for mode in ("fail", "exclude", "count")}
    assert got == {"fail": [1.0, 0.5], "exclude": [1.0, 1.0], "count": [1.0, 1.0]}
    only_code = {"tests": [[tests[1].to_dict()]] * 2, "entry_point": ["f", "f"]}
    excluded = UnitTestReward(pool=proxy_pool, scheme="binary", unverified="exclude")(prompts, completions, **only_code)
    assert excluded == [1.0, 0.0]  # with no verified test left, nothing is passed
    with pytest.raises(ValueError, match="unverified must be one of"):
        UnitTestReward(unverified="maybe")
    task = {"task_id": "t/0", "prompt": "def f(x):\n", "entry_point": "f", "tests": tests}
    from trl_unittest.tasks import Task

    ds = to_dataset([Task(**task)])
    strict = evaluate_completions(ds, [[completions[1]]], k=[1], pool=proxy_pool)
    counted = evaluate_completions(ds, [[completions[1]]], k=[1], pool=proxy_pool, unverified="count")
    assert strict.pass_at_k["pass@1"] == 0.0 and counted.pass_at_k["pass@1"] == 1.0


def test_code_tests_keep_budgets_exceptions_and_program_names(proxy_pool):
    tests = [
        Test(kind="code", code="for i in range(50):\n    assert add(i, 1) == i + 1"),
        Test(kind="code", code="try:\n    add(None, 1)\n    raise AssertionError('no error')\nexcept TypeError:\n    pass"),
        Test(kind="code", code="assert add(1, 1) == 2 and LIMIT == 10 and math.pi > 3"),
        Test(kind="code", code="assert hang() == 0"),
        Test(kind="code", code="assert add(2, 2) == 4"),
    ]
    src = "import math\nLIMIT = 10\ndef add(a, b): return a + b\ndef hang():\n    while True: pass\n"
    r = proxy_pool.run(Program(src, tests, timeouts=[3.0, 3.0, 3.0, 0.5, 3.0]))
    assert [t.outcome for t in r.tests] == ["passed", "passed", "passed", "timeout", "passed"]
    wrong = proxy_pool.run(Program(src.replace("a + b", "a - b"), tests[:1] + tests[4:]))
    assert [t.outcome for t in wrong.tests] == ["error", "error"] and wrong.tests[0].error_type == "AssertionError"
    broken = proxy_pool.run_batch([Program("def add(a, b) return", tests), Program("raise KeyError", tests)])
    assert [r.status for r in broken] == ["compile_error", "import_error"] and not any(r.passed for r in broken)


# Tests of HumanEval and MBPP whose verdict is still decided in the program's own process, with the reason: none.
DECIDED_IN_PROGRAM: dict[tuple[str, int], str] = {}


def test_every_humaneval_and_mbpp_verdict_is_decided_outside_the_program():
    """What a program child is sent: a call test's expression (its value is compared on the trusted side), an
    io test's stdin (its output is compared there), a code test's index only (its code goes to the test
    process). No check code and no expected value reaches the program's process."""
    from trl_unittest.execution.results import request_tests

    tasks = load_humaneval(as_dataset=False)
    mbpp = default_mbpp_path()
    if mbpp is not None:
        for split in ("train", "validation", "test", "prompt"):
            tasks += load_mbpp(mbpp, split=split, as_dataset=False)
    assert len(tasks) == (164 + 974 if mbpp is not None else 164)
    inside, proxied = {}, 0
    for task in tasks:
        sent, codes = request_tests(Program(task.reference, task.tests, test_setup=task.test_setup))
        proxied += len(codes)
        for i, (test, item) in enumerate(zip(task.tests, sent)):
            allowed = {"call": {"kind", "expr"}, "io": {"kind", "stdin"}, "code": {"kind", "code_index"}}[test.kind]
            if set(item) != allowed:
                inside[(task.task_id, i)] = f"{test.kind} test sends {sorted(item)}"
    assert inside == DECIDED_IN_PROGRAM
    assert proxied == (16 if mbpp is not None else 13)  # the code tests: 13 HumanEval, 3 MBPP


def test_program_exceptions_reach_the_check_as_python_would_raise_them(proxy_pool):
    catch = Test(kind="code", code="try:\n    bad()\n    raise AssertionError('no error')\nexcept ValueError:\n    pass")
    programs = {
        "subclass": "class MyError(ValueError):\n    pass\ndef bad(): raise MyError()",  # caught, as in Python
        "forged_name": "def bad(): raise type('ValueError', (Exception,), {'__module__': 'builtins'})()",
        "other": "def bad(): raise KeyError(1)",
        "none": "def bad(): return 1",
    }
    results = proxy_pool.run_batch([Program(src, [catch]) for src in programs.values()])
    assert {n: r.tests[0].outcome for n, r in zip(programs, results)} == \
        {"subclass": "passed", "forged_name": "error", "other": "error", "none": "error"}


def test_module_names_bind_the_same_module_in_the_test_process(proxy_pool):
    test = Test(kind="code", code="assert size((1, 2)) == sys.getsizeof((1, 2))")
    honest = "import sys\ndef size(t): return sys.getsizeof(t)"
    # a program binding `sys` to another module (whose attribute it would control) gets no verdict from it
    swapped = "import json as sys\ndef size(t): return 0"
    results = proxy_pool.run_batch([Program(honest, [test]), Program(swapped, [test])])
    assert [r.tests[0].outcome for r in results] == ["passed", "unverified"]
