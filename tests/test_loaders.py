import pytest
from datasets import load_from_disk

from trl_unittest.data.loaders import default_mbpp_path, load_humaneval, load_mbpp
from trl_unittest.execution import Limits, Program
from trl_unittest.tasks import from_dataset

MBPP = default_mbpp_path()
needs_mbpp = pytest.mark.skipif(MBPP is None, reason="no shared/data/mbpp copy beside the checkout")


@needs_mbpp
@pytest.mark.parametrize("split, size", [("train", 374), ("validation", 90), ("test", 500), ("prompt", 10)])
def test_mbpp_splits(split, size):
    assert len(load_mbpp(MBPP, split=split)) == size


@needs_mbpp
def test_mbpp_sanitized_and_prompt_styles():
    assert len(load_mbpp(MBPP, split="test", sanitized=True)) == 257
    task = load_mbpp(MBPP, split="test", prompt_style="instruction", as_dataset=False)[0]
    assert "Your code should pass these tests:" in task.prompt and "assert remove_Occ" in task.prompt
    task = load_mbpp(MBPP, split="test", as_dataset=False)[0]
    assert task.prompt.startswith("def remove_Occ(s,ch):") and task.entry_point == "remove_Occ"
    assert task.provenance["license"] == "CC-BY-4.0"


@needs_mbpp
def test_round_trip_through_disk(tmp_path):
    ds = load_mbpp(MBPP, split="validation")
    ds.save_to_disk(str(tmp_path / "ds"))
    again = load_from_disk(str(tmp_path / "ds"))
    assert from_dataset(again) == from_dataset(ds)
    ds.to_json(str(tmp_path / "ds.jsonl"))
    from datasets import load_dataset

    assert from_dataset(load_dataset("json", data_files=str(tmp_path / "ds.jsonl"), split="train"))[0] == from_dataset(ds)[0]


@needs_mbpp
def test_every_mbpp_train_reference_passes_its_rewritten_tests(pool):
    tasks = load_mbpp(MBPP, split="train", as_dataset=False)
    results = pool.run_batch([Program(t.reference, t.tests, context=t.context, test_setup=t.test_setup) for t in tasks])
    failing = [t.task_id for t, r in zip(tasks, results) if not r.all_passed]
    assert failing == []
    assert sum(x.kind == "code" for t in tasks for x in t.tests) <= 3  # nearly all asserts become structured tests


def test_humaneval_references_pass_and_wrong_solutions_fail(pool):
    tasks = load_humaneval(as_dataset=False)
    assert len(tasks) == 164
    good = pool.run_batch([Program(t.reference, t.tests, test_setup=t.test_setup) for t in tasks])
    assert [t.task_id for t, r in zip(tasks, good) if not r.all_passed] == []
    wrong = pool.run_batch([Program(t.prompt + "    return None\n", t.tests, test_setup=t.test_setup) for t in tasks])
    assert sum(r.all_passed for r in wrong) <= 2  # a body returning None solves (almost) nothing


def test_missing_mbpp_is_named(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mbpp(str(tmp_path), split="test")
    with pytest.raises(ValueError, match="split must be one of"):
        load_mbpp(str(tmp_path), split="dev")


def test_reference_runtimes_set_budgets_and_failures_are_reported(pool):
    from dataclasses import replace

    from trl_unittest.data.loaders import add_reference_runtimes

    tasks = load_humaneval(as_dataset=False)[:3]
    broken = replace(tasks[2], reference=tasks[2].prompt + "    return None\n")
    timed, failed = add_reference_runtimes([tasks[0], tasks[1], broken], pool)
    assert failed == [broken.task_id]
    assert all(t.reference_runtime is not None and 0 < t.reference_runtime < 1 for t in timed[:2])
    assert timed[2].reference_runtime is None
    budgets = pool.limits.test_timeouts(len(timed[0].tests), timed[0].reference_runtime)
    assert budgets == [pool.limits.timeout_floor] * len(timed[0].tests)  # microsecond references: the floor


@needs_mbpp
def test_mbpp_completion_prompts_hold_what_the_reference_body_needs(pool):
    """A completion-style prompt carries the reference's helpers, constants and imports before the entry point:
    prompt + the reference's own body (re-indented to the prompt's four spaces) passes every test."""
    import ast
    import textwrap

    programs = []
    for t in load_mbpp(MBPP, split="all", as_dataset=False):
        tree = ast.parse(t.reference)
        last = tree.body[-1]
        if not (isinstance(last, ast.FunctionDef) and last.name == t.entry_point) or last.body[0].lineno == last.lineno:
            continue  # something after the entry point, or a one-line def: no body to lift
        lines = t.reference.splitlines()[last.body[0].lineno - 1: last.end_lineno]
        body = textwrap.indent(textwrap.dedent("\n".join(line.expandtabs(4) for line in lines)), "    ") + "\n"
        budgets = Limits().test_timeouts(len(t.tests), t.reference_runtime)  # mbpp/123: ~6 s of CPU in one test
        programs.append((t.task_id, Program(t.prompt + body, t.tests, test_setup=t.test_setup,
                                            timeouts=[max(10.0, b) for b in budgets])))
    assert len(programs) > 900
    results = pool.run_batch([p for _, p in programs])
    assert [i for (i, _), r in zip(programs, results) if not r.all_passed] == []
    six = next(p for i, p in programs if i == "mbpp/6")
    assert "def is_Power_Of_Two" in six.code  # the helper the entry point calls


def test_mbpp_row_without_tests_is_named(tmp_path):
    import json

    from trl_unittest.tasks import TaskValidationError

    row = {"task_id": 11, "text": "Write f.", "code": "def f(x):\n    return x\n", "test_list": [],
           "test_setup_code": "", "challenge_test_list": []}
    (tmp_path / "mbpp.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(TaskValidationError, match="mbpp/11: `test_list` is empty"):
        load_mbpp(str(tmp_path), split="test")


@needs_mbpp
def test_every_reference_passes_under_the_default_limits():
    """All 974 MBPP and 164 HumanEval references, with the budgets the reward gives them (default Limits, the
    task's reference_runtime): mbpp/123's reference needs ~6 s in one test against the flat 3 s."""
    from trl_unittest.execution import ExecutionPool, Limits

    tasks = load_mbpp(MBPP, split="all", as_dataset=False) + load_humaneval(as_dataset=False)
    limits = Limits()
    with ExecutionPool(num_workers=2, limits=limits) as pool:
        results = pool.run_batch([Program(t.reference, t.tests, context=t.context, test_setup=t.test_setup,
                                          timeouts=limits.test_timeouts(len(t.tests), t.reference_runtime))
                                  for t in tasks])
    assert len(tasks) == 974 + 164
    assert [t.task_id for t, r in zip(tasks, results) if not r.all_passed] == []
