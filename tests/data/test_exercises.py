"""The synthetic exercises: disjoint shapes and names by split, worded ones say what not how, slips, fresh RL tasks."""

import pytest

from trl_unittest.data import exercises as E
from trl_unittest.data.split import SplitDatasets, function_fingerprint, split_of


def test_exercises_disjoint_shapes_and_names():
    train = E.make_exercises("train", 400)
    held = E.make_exercises("heldout", 100)
    assert len(train) == 400 and len(held) == 100
    assert not {e["fingerprint"] for e in train} & {e["fingerprint"] for e in held}
    assert not {e["name"].rsplit("_", 1)[0] for e in train} & {e["name"].rsplit("_", 1)[0] for e in held}
    for e in train[:50] + held[:50]:
        compile(e["prompt"] + e["body"], "<exercise>", "exec")
        assert e["prompt"].startswith("def ") and e["body"].startswith("    return ")
        # the fingerprint ignores the function's name and its argument names
        renamed = (e["prompt"] + e["body"]).replace(e["name"], "other_name")
        assert function_fingerprint(renamed) == e["fingerprint"]
    assert E.make_exercises("train", 50) == train[:50]  # deterministic


def test_worded_exercises_say_what_not_how():
    """One family is described in words only: its docstring holds none of the code, and the code does what the
    words say (checked on one list for each of the parts)."""
    held = [e for e in E.make_exercises("heldout", 300) if e["family"] == "worded"]
    train = [e for e in E.make_exercises("train", 300) if e["family"] == "worded"]
    assert len(held) > 30 and len(train) > 30
    for e in held + train:
        doc = e["prompt"].split('"""')[1]
        assert not any(code in doc for code in (" for ", "%", "==", "(", "default")), doc
        namespace: dict = {}
        exec(e["prompt"] + e["body"], namespace)  # our own generated code, not mined or model code
        f, xs = namespace[e["name"]], [3, -4, 0, 7, 10, -1]
        out = f(xs)
        if "that are even" in doc and doc.startswith("Return the list of the items of"):
            assert out == [x for x in xs if x % 2 == 0]
        if doc.startswith("Return how many items of") and "that are" not in doc:
            assert out == len(xs)
        if "squares" in doc and "that are" not in doc and doc.startswith("Return the sum"):
            assert out == sum(x * x for x in xs)
        if "or -1 if there is none" in doc:
            assert f([]) == -1


def test_slipped_bodies_change_one_token_and_mostly_the_behaviour():
    """The SFT slips (``sft_bug_rate``): variants of a body with one token changed (a comparison, operator,
    boolean or number off), formatting kept, still compiling, and mostly computing something else."""
    import io
    import random
    import tokenize

    def tokens(src):
        return [t.string for t in tokenize.generate_tokens(io.StringIO(src).readline)]

    rng = random.Random(0)
    exercises = E.make_exercises("train", 300)
    with_slips = behaves_differently = 0
    for e in exercises:
        prompt, body = e["prompt"], e["body"]
        bugs = E.slipped_bodies(prompt, body, rng)
        assert len(set(bugs)) == len(bugs) <= 4 and body not in bugs
        with_slips += bool(bugs)
        for bug in bugs:
            a, b = tokens(body), tokens(bug)
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1, (body, bug)
            compile(prompt + bug, "<sft>", "exec")
            assert split_of("exercise:" + function_fingerprint(prompt + bug)) == "train"
        if bugs and e["family"] == "worded":  # our own generated exercises, not mined or model code
            ns_clean, ns_bug = {}, {}
            exec(prompt + body, ns_clean)
            exec(prompt + bugs[0], ns_bug)
            xs = [3, -4, 0, 7, 10, -1, 2]
            try:
                behaves_differently += ns_clean[e["name"]](xs) != ns_bug[e["name"]](xs)
            except Exception:  # noqa: BLE001 - a slip may raise: that is behaving differently too
                behaves_differently += 1
    assert with_slips > 0.85 * len(exercises)
    assert behaves_differently >= 30, behaves_differently
    assert E.slipped_bodies("def f(s):\n", "    return s.split()\n", rng) == []  # nothing to slip on


@pytest.mark.slow
def test_fresh_exercise_tasks_leave_out_everything_evaluated_or_trained_on(tmp_path, monkeypatch):
    """RL tasks for held-out transfer: new train-split exercises, none sharing a fingerprint with held-out tasks,
    the train split, or what the model trained on; built into executable tasks and cached."""
    import json

    from trl_unittest.models import BUDGETS

    monkeypatch.setenv("TRL_UNITTEST_CACHE", str(tmp_path / "cache"))
    recipe = BUDGETS["tiny"]
    default_taken = {e["fingerprint"] for e in E.make_exercises("train", 300, seed=recipe.seed + 1)}
    default_taken |= {e["fingerprint"] for e in E.make_exercises("train", 3000, seed=recipe.seed)}
    candidates = [e for e in E.make_exercises("train", 4 * 12, seed=recipe.seed + 7)
                  if e["fingerprint"] not in default_taken]
    in_heldout, in_train, trained_on = candidates[:3]

    def task(e):
        return {"reference": e["prompt"] + e["body"], "entry_point": e["name"]}

    data = SplitDatasets(train=[task(in_train)], heldout=[task(in_heldout)])
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "trained_fingerprints.json").write_text(json.dumps([trained_on["fingerprint"]]))

    built = E.fresh_exercise_tasks("train", data, model_dir, count=12, budget="tiny")
    names = set(built["entry_point"])
    assert not names & {in_heldout["name"], in_train["name"], trained_on["name"]}
    assert names <= {e["name"] for e in candidates[3:15]} and len(built) >= 8  # most exercises get tests
    assert all(r["tests"] for r in built)
    again = E.fresh_exercise_tasks("train", data, model_dir, count=12, budget="tiny")  # cached: the same rows
    assert again["task_id"] == built["task_id"]
    with pytest.raises(ValueError, match="split"):
        E.fresh_exercise_tasks("test", data, model_dir)
