import asyncio
import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trl_unittest.execution import ProgramResult, TestResult
from trl_unittest.rewards import (AsyncUnitTestReward, UnitTestReward, mean_pass_at_k, outcome_metrics, pass_at_k,
                                  score)
from trl_unittest.tasks import Task, Test, TaskValidationError, to_dataset

PROMPT = 'def double(x):\n    """Return twice x."""\n'
TESTS = [Test(expr=f"double({i})", expected=str(2 * i)) for i in range(4)]
RECORD = Task("t/0", PROMPT, "double", TESTS).to_record()


@pytest.fixture(scope="module")
def reward(pool):
    return UnitTestReward(pool=pool)


def columns(n, record=RECORD):
    return {k: [record[k]] * n for k in ("tests", "entry_point", "context", "test_setup", "reference_runtime")}


def result(status="ran", outcomes=()):
    return ProgramResult(status=status, tests=[TestResult(o) for o in outcomes])


@pytest.mark.parametrize("res, expected", [
    (result("compile_error", ["error"] * 4), {"binary": 0, "fraction": 0, "coderl": -1, "partial": -1}),
    (result("import_error", ["error"] * 4), {"binary": 0, "fraction": 0, "coderl": -0.6, "partial": -0.6}),
    (result("ran", ["passed"] * 4), {"binary": 1, "fraction": 1, "coderl": 1, "partial": 1}),
    (result("ran", ["failed"] * 4), {"binary": 0, "fraction": 0, "coderl": -0.3, "partial": -0.3}),
    (result("ran", ["passed", "failed", "failed", "failed"]), {"binary": 0, "fraction": 0.25, "coderl": -0.3, "partial": 0.025}),
    (result("ran", ["passed", "passed", "error", "failed"]), {"binary": 0, "fraction": 0.5, "coderl": -0.6, "partial": 0.35}),
    (result("ran", ["timeout", "failed", "failed", "failed"]), {"binary": 0, "fraction": 0, "coderl": -0.6, "partial": -0.6}),
])
def test_schemes(res, expected):
    for scheme, value in expected.items():
        assert score(res, scheme) == pytest.approx(value), scheme


def test_reward_on_completion_styles(reward):
    completions = [
        "    return 2 * x\n",                                        # completion-style body
        "    return x + 1\n",                                        # passes 1 of 4 (x=1)
        "Here you go:\n```python\ndef double(x):\n    return x * 2\n```\n",  # markdown fence
        "    return (\n",                                            # syntax error
        "    raise ValueError\n",                                    # runtime error
        "def double(x):\n    return x << 1\n",                        # a full definition instead of a body
    ]
    rewards = reward([PROMPT] * 6, completions, None, **columns(6))
    assert rewards == pytest.approx([1.0, -0.3 + 1.3 * 0.25, 1.0, -1.0, -0.6, 1.0])


def test_markdown_answers_score_like_plain_code(reward):
    """Answers a chat model writes: a shell block before the code, an example block after it, Windows line
    ends, and a completion-style body that closes a fence it never opened. Each is the right function."""
    code = "def double(x):\n    return x * 2\n"
    completions = [
        "Install nothing:\n```bash\npip list\n```\nThen:\n```python\n" + code + "```\n",
        "```python\n" + code + "```\nExample:\n```\n>>> double(2)\n4\n```\n",
        ("```python\n" + code + "```\n").replace("\n", "\r\n"),
        "    return x * 2\n```\n\nThis doubles x.",
    ]
    assert reward([PROMPT] * 4, completions, None, **columns(4)) == [1.0] * 4


def test_conversational_completions(reward):
    prompt = [{"role": "user", "content": "Write double(x)."}]
    completion = [{"role": "assistant", "content": "```python\ndef double(x):\n    return 2 * x\n```"}]
    wrong = [{"role": "assistant", "content": "def double(x):\n    return x\n"}]
    assert reward([prompt, prompt], [completion, wrong], None, **columns(2)) == pytest.approx([1.0, -0.3 + 1.3 * 0.25])


def test_assert_strings_and_dataset_rows(reward):
    ds = to_dataset([Task("t/0", PROMPT, "double", TESTS)])
    row = ds[0]
    cols = {k: [row[k]] for k in ds.column_names if k not in ("prompt",)}
    assert reward([row["prompt"]], ["    return x * 2\n"], None, **cols) == [1.0]
    mbpp_style = {"tests": [["assert double(2) == 4", "assert double(0) == 0"]], "entry_point": ["double"]}
    assert reward([PROMPT], ["    return x + 2\n"], None, **mbpp_style) == pytest.approx([-0.3 + 1.3 * 0.5])


def test_metrics_are_logged(reward):
    logged, extra = {}, {}
    reward([PROMPT] * 2, ["    return 2 * x\n", "    return ("], None, **columns(2),
           log_metric=lambda k, v: logged.__setitem__(k, v), log_extra=lambda k, v: extra.__setitem__(k, v))
    assert logged["unit_tests_partial/pass_rate"] == 0.5
    assert logged["unit_tests_partial/compile_error"] == 0.5
    assert extra["unit_tests_partial/outcome"] == ["4/4 passed", "compile_error:SyntaxError"]


def test_async_reward(pool):
    areward = AsyncUnitTestReward(pool=pool, scheme="binary")
    out = asyncio.run(areward([PROMPT] * 2, ["    return 2 * x\n", "    return x\n"], None, **columns(2)))
    assert out == [1.0, 0.0]


def test_bad_input_is_named(reward):
    with pytest.raises(KeyError, match="needs a 'tests' column"):
        reward([PROMPT], ["x"], None, entry_point=["double"])
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward([PROMPT, PROMPT], ["x"], None, **columns(1))
    with pytest.raises(TaskValidationError, match="op must be one of"):
        reward([PROMPT], ["x"], None, tests=[[{"kind": "call", "expr": "double(1)", "op": "bogus"}]],
               entry_point=["double"])
    with pytest.raises(ValueError, match="scheme must be one of"):
        UnitTestReward(scheme="dense")
    with pytest.raises(ValueError, match="scheme must be one of"):
        score(result("compile_error", ["error"]), "bogus")
    assert outcome_metrics([]) == {}


def brute_pass_at_k(n, c, k):
    correct = [True] * c + [False] * (n - c)
    combos = list(itertools.combinations(range(n), k))
    return sum(any(correct[i] for i in combo) for combo in combos) / len(combos)


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_the_combinatorial_definition(nck):
    n, c, k = nck
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k))


def test_pass_at_k_closed_forms():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    assert mean_pass_at_k([(10, 3), (10, 0)], 1) == pytest.approx(0.15)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    assert math.isnan(mean_pass_at_k([], 1))


def test_completions_are_cut_like_evaluation_and_empty_ones_score_as_compile_errors(pool):
    prompt = 'def add(a, b):\n    """Return a + b."""\n'
    tests = [[Test(expr="add(1, 2)", expected="3").to_dict()]] * 6
    completions = ["    return a + b\nprint(undefined)\n",  # cut before the top-level line: passes
                   "", "   \n", "    # TODO\n",  # adds no code: a compile error, not a cheap -0.3
                   "    return a - b\n",
                   "def add(a, b):\n    return b + a\n"]  # a whole definition is not cut away
    reward = UnitTestReward(pool=pool)
    scores = reward([prompt] * 6, completions, tests=tests, entry_point=["add"] * 6)
    assert scores == pytest.approx([1.0, -1.0, -1.0, -1.0, -0.3, 1.0])
    binary = UnitTestReward(pool=pool, scheme="binary")
    assert binary([prompt] * 6, completions, tests=tests, entry_point=["add"] * 6) == [1.0, 0, 0, 0, 0, 1.0]
    uncut = UnitTestReward(pool=pool, truncate=False)
    assert uncut([prompt], completions[:1], tests=tests[:1], entry_point=["add"])[0] == -1.0 + 0.4  # NameError


def test_reward_survives_pickling_and_starts_its_own_pool(pool):
    import pickle

    shared = UnitTestReward(pool=pool)
    copy = pickle.loads(pickle.dumps(shared))
    try:
        assert copy([PROMPT], ["    return 2 * x\n"], None, **columns(1)) == [1.0]
        assert copy.pool is not pool and copy.limits == pool.limits
    finally:
        copy.close()


def test_a_completion_that_breaks_extraction_is_its_own_compile_error(reward, monkeypatch):
    deep = "def double(x):\n    return x" + " + x - x" * 1500 + "\n"  # deeper than the parser allows
    good = "    return 2 * x\n"
    assert reward([PROMPT] * 3, [good, deep, good], **columns(3)) == [1.0, -1.0, 1.0]
    import trl_unittest.rewards as rewards

    def explode(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(rewards, "build_program", explode)  # anything extraction may raise, for one completion
    results = reward.results([PROMPT], [good], **columns(1))
    assert results[0].status == "compile_error" and results[0].error == "ExtractionError:RecursionError"
    assert reward([PROMPT], [good], **columns(1)) == [-1.0]


def test_evaluation_and_replay_contain_a_completion_that_breaks_extraction(pool):
    from trl_unittest.evaluation import evaluate_completions
    from trl_unittest.trainer.replay import program_fingerprint

    deep = "def double(x):\n    return x" + " + x - x" * 1500 + "\n"
    assert len(program_fingerprint(PROMPT, deep, "double")) == 24
    ds = to_dataset([Task("t/0", PROMPT, "double", TESTS)])
    report = evaluate_completions(ds, [[deep, "    return 2 * x\n"]], k=[1], pool=pool)
    assert report.rows[0]["passed"] == [False, True] and report.rows[0]["correct"] == 1
