"""The third round (trl_unittest.data.targeted): inputs aimed at the mutants the generated inputs leave alive."""

import pytest

from trl_unittest.data.builder import BuilderConfig, build_dataset
from trl_unittest.data.extract import extract_module
from trl_unittest.data.mutation import Mutant
from trl_unittest.data.targeted import neighbours, value_neighbours
from trl_unittest.execution.values import decode_value
from trl_unittest.tasks import from_dataset

try:
    from trl_unittest.execution import ExecutionPool, Program
    from trl_unittest.execution.sandbox import resolve_mode

    resolve_mode("auto")
    HAVE_SANDBOX = True
except Exception:  # noqa: BLE001
    HAVE_SANDBOX = False

needs_sandbox = pytest.mark.skipif(not HAVE_SANDBOX, reason="no sandbox (bubblewrap/unshare) on this machine")

# the generated inputs never pass `key` (the body calls it: no literal fits), so a mutant of the key branch
# survives all of them; a callable (`key=abs`) reaches it
SOURCE = '''
def first_key_at_least(items: list, bound: int, key=None):
    """The key of the first item of items whose key (the item itself when key is None) is at least bound;
    bound - 1 when there is none."""
    for item in items:
        k = item if key is None else key(item)
        if k >= bound:
            return k
    return bound - 1
'''
KEY_LINE = "        k = item if key is None else key(item)\n"
BODY = "def {name}(items, bound, key=None):\n    for item in items:\n{line}        if k >= bound:\n" \
       "            return k\n    return bound - 1\n"
IGNORES_KEY = Mutant("ignore_key", 5, BODY.format(name="m0", line="        k = item if key is None else None\n"),
                     "m0")
EQUIVALENT = Mutant("equivalent", 5, BODY.format(name="m1", line="        k = key(item) if key is not None "
                                                                  "else item\n"), "m1")


def _build(tmp_path, monkeypatch, **kw):
    from trl_unittest.data import builder as builder_module

    (tmp_path / "m.py").write_text(SOURCE)
    # the function's mutants, in the order the generator would give them (a sample is a prefix, an audit the rest)
    monkeypatch.setattr(builder_module.StaticStages, "mutants",
                        lambda self, func_src, entry_point, start=0, stop=None:
                        [IGNORES_KEY, EQUIVALENT][start:stop or self.config.max_mutants])
    kw = {"min_kill_fraction": 0.0, **kw}
    cfg = BuilderConfig(progress=False, num_workers=2, max_inputs=16, min_mutants=1, min_mutation_score=0.0,
                        reference_timeout=0.5, static_workers=0, **kw)
    ds, report = build_dataset([str(tmp_path)], cfg, return_report=True)
    return from_dataset(ds), report, cfg


@needs_sandbox
def test_an_aimed_input_kills_a_survivor_and_the_equivalent_mutant_is_set_aside(tmp_path, monkeypatch):
    tasks, report, cfg = _build(tmp_path, monkeypatch)
    assert report.consistent() and report.kept == 1 and report.extra_rounds == 1
    task = tasks[0]
    assert any("abs" in t.expr or "len" in t.expr or "str" in t.expr for t in task.tests)  # a callable for key
    assert report.mutants_killed_by_extra_inputs == 1 and report.targeted_tests >= 1
    # the equivalent mutant survives the aimed inputs too, on a line they run: set aside and counted
    assert report.mutants_likely_equivalent == 1 and report.mutants_unkilled_by_any_input == 0
    assert task.mutation_score == 1.0 and report.mutants_scored == 1
    mutant = task.reference.replace(KEY_LINE, "        k = item if key is None else None\n")
    assert mutant != task.reference
    # probes: trivial bodies written here still fail most of the final suite (the third round's tests included)
    head = "def first_key_at_least(items, bound, key=None):\n"
    trivial = ["None", "items", "bound", "key", "0", "list(items)", "sorted(items)", "tuple(items)"]
    trivial += sorted({t.expected for t in task.tests if t.op != "raises"})
    with ExecutionPool(num_workers=2) as pool:
        assert pool.run(Program(code=task.reference, tests=task.tests)).all_passed
        assert not pool.run(Program(code=mutant, tests=task.tests)).all_passed  # killed by the final suite
        results = pool.run_batch([Program(code=head + f"    return {b}\n", tests=task.tests) for b in trivial])
    for body, r in zip(trivial, results):
        assert r.passed <= cfg.max_trivial_pass * len(task.tests), (body, r.passed, len(task.tests))


@needs_sandbox
def test_without_a_third_round_nothing_is_set_aside(tmp_path, monkeypatch):
    tasks, report, _ = _build(tmp_path, monkeypatch, max_extra_inputs=0)
    assert report.kept == 1 and report.extra_rounds == 0
    assert report.mutants_likely_equivalent == 0 and report.mutants_unkilled_by_any_input == 2
    assert tasks[0].mutation_score == 0.0  # both survive, both count: the generated inputs never pass a key


@needs_sandbox
def test_tests_that_kill_too_few_of_all_mutants_drop_the_task_though_its_score_is_perfect(tmp_path, monkeypatch):
    """The mutant set aside as likely equivalent is no proof: with it, the tests kill 1 of 2 mutants, below the
    default ``min_kill_fraction``, and the task is dropped (counted) although its score (equivalents aside) is 1.0."""
    tasks, report, cfg = _build(tmp_path, monkeypatch, min_kill_fraction=BuilderConfig().min_kill_fraction)
    assert cfg.min_kill_fraction > 0.5
    assert report.consistent() and report.kept == 0 and report.dropped["low_kill_fraction"] == 1
    assert report.extra_rounds == 1  # the third round ran first: aimed inputs might have killed more


@needs_sandbox
def test_an_audit_runs_the_mutants_the_sample_left_out_for_a_function_to_keep(tmp_path, monkeypatch):
    """With a sample of one mutant, the equivalent one is never seen; the audit (``max_mutants_kept``) runs it for
    the function that would be kept, the third round aims at it too, and it is set aside and counted."""
    tasks, report, _ = _build(tmp_path, monkeypatch, max_mutants=1)
    assert report.kept == 1 and report.audits == 0 and report.mutants_likely_equivalent == 0
    assert report.mutants_killed_by_extra_inputs == 1 and tasks[0].mutation_score == 1.0
    tasks, report, _ = _build(tmp_path, monkeypatch, max_mutants=1, max_mutants_kept=2)
    assert report.consistent() and report.kept == 1
    assert report.audits == 1 and report.audit_mutants == 1 and report.audits_discarded == 0
    assert report.mutants_likely_equivalent == 1 and report.mutants_killed_by_extra_inputs == 1
    assert tasks[0].mutation_score == 1.0 and report.mutants_scored == 1


def test_neighbours_keep_the_kind_and_a_sorted_list_sorted():
    ints = [decode_value(s) for s in value_neighbours(5)]
    assert set(ints) == {4, 6, 0, -5}
    lists = [decode_value(s) for s in value_neighbours([1, 2, 3], keep_sorted=True)]
    assert lists and all(x == sorted(x) for x in lists)
    assert [1, 2, 2, 3] in lists  # equal adjacent items: `<` against `<=`
    texts = [decode_value(s) for s in value_neighbours("ab", inserts=[",", b","])]
    assert all(type(x) is str for x in texts) and "a,b" in texts and "" in texts
    # the body's numbers go into a list of numbers, not into an empty list, whose items may be strings
    # (`longest_common_prefix(strs: list[str])` was tested on [0] and [-1])
    assert [2, 5, 3] in [decode_value(s) for s in value_neighbours([2, 3], inserts=[5])]
    assert value_neighbours([], inserts=[0, 5]) == []


def test_neighbours_give_a_called_parameter_a_callable_and_a_scalar_an_item():
    cand = extract_module(SOURCE, path="m.py").candidates[0]
    opened, near = neighbours("first_key_at_least([3, 7], 1)", cand, set(), {"key"})
    assert "first_key_at_least([3, 7], 1, key=abs)" in opened
    assert all("abs" not in e for e in near)
    assert "first_key_at_least([3, 7], 7)" in near and "first_key_at_least([3, 7, 7], 7)" in near
    assert neighbours("sorted(first_key_at_least([1], 1))", cand, set(), set()) == ([], [])


def test_neighbours_skip_a_value_too_long_to_write_as_a_literal():
    """A list argument grown by one of its own items can pass the literal length cap (``to_source`` gives None):
    that neighbour is skipped, the others are made. Found on isort's ``add_to_line``, whose None crashed the build."""
    src = 'def add_to_line(comments, prefix=""):\n    """Join comments."""\n    return prefix.join(comments)\n'
    cand = extract_module(src, path="m.py").candidates[0]
    long_items = ["x" * 25 for _ in range(4)]
    opened, near = neighbours(f"add_to_line({long_items!r}, prefix='ab')", cand, set(), set())
    assert near and all(e.startswith("add_to_line(") and "None" not in e for e in opened + near)
    import ast

    for e in opened + near:  # every neighbour is a call on literals
        call = ast.parse(e, mode="eval").body
        [ast.literal_eval(a) for a in call.args + [k.value for k in call.keywords]]
