"""The small code model: the train / held-out split is disjoint, training on a CPU works, checkpoints are cached."""

import json
import math

import pytest

from trl_unittest import models as M


def test_split_is_stable_and_disjoint():
    mods = M.stdlib_modules()
    assert mods["train"] and mods["heldout"]
    assert not set(mods["train"]) & set(mods["heldout"])
    assert all(M.split_of(m) == "heldout" for m in mods["heldout"])
    share = len(mods["heldout"]) / (len(mods["train"]) + len(mods["heldout"]))
    assert 0.15 < share < 0.45


def test_exercises_disjoint_shapes_and_names():
    train = M.make_exercises("train", 400)
    held = M.make_exercises("heldout", 100)
    assert len(train) == 400 and len(held) == 100
    assert not {e["fingerprint"] for e in train} & {e["fingerprint"] for e in held}
    assert not {e["name"].rsplit("_", 1)[0] for e in train} & {e["name"].rsplit("_", 1)[0] for e in held}
    for e in train[:50] + held[:50]:
        compile(e["prompt"] + e["body"], "<exercise>", "exec")
        assert e["prompt"].startswith("def ") and e["body"].startswith("    return ")
        # the fingerprint ignores the function's name and its argument names
        renamed = (e["prompt"] + e["body"]).replace(e["name"], "other_name")
        assert M.function_fingerprint(renamed) == e["fingerprint"]
    assert M.make_exercises("train", 50) == train[:50]  # deterministic


def test_worded_exercises_say_what_not_how():
    """One family is described in words only: its docstring holds none of the code, and the code does what the
    words say (checked on one list for each of the parts)."""
    held = [e for e in M.make_exercises("heldout", 300) if e["family"] == "worded"]
    train = [e for e in M.make_exercises("train", 300) if e["family"] == "worded"]
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


def test_pretraining_corpus_is_train_modules_only():
    texts = M.stdlib_texts("train", max_chars=300_000)
    assert texts and sum(map(len, texts)) >= 300_000
    from trl_unittest.data.sources import iter_stdlib

    held = {f.text for f in iter_stdlib() if M.split_of(f.path.split("/")[0].removesuffix(".py")) == "heldout"}
    assert not held & set(texts)


@pytest.mark.slow
def test_split_datasets_disjoint():
    data = M.build_split_datasets("tiny", progress=False)
    assert len(data.train) > 50 and len(data.heldout) > 20
    M.check_disjoint(data)
    sources = set(data.heldout["task_id"])
    assert any(t.startswith("stdlib/") for t in sources) and any(t.startswith("local:exercises") for t in sources)
    assert not set(data.train["task_id"]) & sources


MICRO = M.CodeModelRecipe(hidden=32, layers=2, heads=2, vocab_size=400, max_positions=256, corpus_chars=80_000,
                          pretrain_steps=12, pretrain_seq_len=64, pretrain_batch=4, sft_exercises=200, sft_steps=25,
                          sft_batch=8, sft_lr=3e-3)


@pytest.mark.parametrize("arch,bug_rate", [("llama", 0.0), ("gpt2", 0.5)])
def test_train_code_model_micro(tmp_path, arch, bug_rate):
    from dataclasses import replace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = replace(MICRO, arch=arch, sft_bug_rate=bug_rate)
    figures = M.train_code_model(tmp_path / "m", recipe, progress=False)
    for key in ("pretrain_loss_first", "pretrain_loss_last", "sft_loss_first", "sft_loss_last"):
        assert math.isfinite(figures[key])
    assert figures["sft_loss_last"] < figures["sft_loss_first"]
    assert figures["pretrain_loss_last"] < figures["pretrain_loss_first"]
    # every pair is counted: kept, or left out as longer than sft_completion_tokens
    assert figures["sft_pairs"] + figures["sft_pairs_too_long"] == 200 and figures["sft_pairs"] > 150
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.config.model_type == arch and len(tok) == model.config.vocab_size
    assert json.loads((tmp_path / "m" / "trl_unittest_model.json").read_text())["parameters"] > 0
    if arch == "llama":
        _check_heldout_for_model(tmp_path / "m")
    # with slips, the pairs that have a slip variant are counted, and the variants' fingerprints are recorded as
    # trained on too (the leakage filter drops a held-out task that a slip happens to solve)
    seen = set(json.loads((tmp_path / "m" / "trained_fingerprints.json").read_text()))
    clean = M.corpus_fingerprints(M.stdlib_texts("train", recipe.corpus_chars))
    clean |= {M.function_fingerprint(p + c) for p, c in M.sft_pairs(recipe)}
    if bug_rate:
        assert figures["sft_pairs_with_slips"] > 0.8 * figures["sft_pairs"] and len(seen - clean) > 100
    else:
        assert figures["sft_pairs_with_slips"] == 0 and seen == clean


def _check_heldout_for_model(model_dir):
    """A held-out task whose function the model trained on (an SFT exercise, or a function of its pretraining
    corpus) is dropped; others are kept; a folder without a fingerprint file filters nothing."""
    import ast

    import datasets

    seen_exercise = M.make_exercises("train", MICRO.sft_exercises, seed=MICRO.seed)[7]
    corpus_text, node = next((t, n) for t in M.stdlib_texts("train", MICRO.corpus_chars)
                             for n in ast.parse(t).body if isinstance(n, ast.FunctionDef))  # a top-level function
    corpus_func = ast.get_source_segment(corpus_text, node).replace(f"def {node.name}(", "def g(", 1)
    fresh = M.make_exercises("heldout", 1, seed=5)[0]
    rows = [{"reference": seen_exercise["prompt"] + seen_exercise["body"], "entry_point": seen_exercise["name"]},
            {"reference": fresh["prompt"] + fresh["body"], "entry_point": fresh["name"]},
            {"reference": corpus_func, "entry_point": "g"}]
    ds = datasets.Dataset.from_list(rows)
    kept, dropped = M.heldout_for_model(ds, model_dir)
    assert dropped == 2 and list(kept["entry_point"]) == [fresh["name"]]
    assert M.heldout_for_model(ds, model_dir.parent) == (ds, 0)


def test_ensure_code_model_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_UNITTEST_CACHE", str(tmp_path / "cache"))
    calls = []
    real = M.train_code_model

    def counting(out_dir, recipe, train_tasks=None, progress=True, device="cpu"):
        calls.append(out_dir)
        return real(out_dir, recipe, train_tasks, progress=False, device=device)

    monkeypatch.setattr(M, "train_code_model", counting)
    path = M.ensure_code_model(MICRO, train_tasks=[], progress=False)
    assert M.ensure_code_model(MICRO, train_tasks=[], progress=False) == path and len(calls) == 1
    assert str(tmp_path / "cache") in path and MICRO.key() in path
    other = M.ensure_code_model(M.CodeModelRecipe(**{**MICRO.__dict__, "seed": 1}), train_tasks=[], progress=False)
    assert other != path and len(calls) == 2


def test_a_changed_exercise_generator_changes_the_cache_keys(monkeypatch):
    """Datasets and models are cached by key: exercises from a changed generator must not reuse them."""
    key = M.BUDGETS["small"].key()
    M.exercise_generator_tag.cache_clear()
    monkeypatch.setattr(M, "_AGGREGATES", M._AGGREGATES[:2])
    try:
        assert M.BUDGETS["small"].key() != key
    finally:
        M.exercise_generator_tag.cache_clear()


def test_slipped_bodies_change_one_token_and_mostly_the_behaviour():
    """The SFT slips (``sft_bug_rate``): variants of a body with one token changed (a comparison, operator,
    boolean or number off), formatting kept, still compiling, and mostly computing something else."""
    import io
    import random
    import tokenize

    def tokens(src):
        return [t.string for t in tokenize.generate_tokens(io.StringIO(src).readline)]

    rng = random.Random(0)
    exercises = M.make_exercises("train", 300)
    with_slips = behaves_differently = 0
    for e in exercises:
        prompt, body = e["prompt"], e["body"]
        bugs = M.slipped_bodies(prompt, body, rng)
        assert len(set(bugs)) == len(bugs) <= 4 and body not in bugs
        with_slips += bool(bugs)
        for bug in bugs:
            a, b = tokens(body), tokens(bug)
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1, (body, bug)
            compile(prompt + bug, "<sft>", "exec")
            assert M.split_of("exercise:" + M.function_fingerprint(prompt + bug)) == "train"
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
    assert M.slipped_bodies("def f(s):\n", "    return s.split()\n", rng) == []  # nothing to slip on


@pytest.mark.slow
def test_fresh_exercise_tasks_leave_out_everything_evaluated_or_trained_on(tmp_path, monkeypatch):
    """RL tasks for held-out transfer: new train-split exercises, none sharing a fingerprint with held-out tasks,
    the train split, or what the model trained on; built into executable tasks and cached."""
    import json

    monkeypatch.setenv("TRL_UNITTEST_CACHE", str(tmp_path / "cache"))
    recipe = M.BUDGETS["tiny"]
    default_taken = {e["fingerprint"] for e in M.make_exercises("train", 300, seed=recipe.seed + 1)}
    default_taken |= {e["fingerprint"] for e in M.make_exercises("train", 3000, seed=recipe.seed)}
    candidates = [e for e in M.make_exercises("train", 4 * 12, seed=recipe.seed + 7)
                  if e["fingerprint"] not in default_taken]
    in_heldout, in_train, trained_on = candidates[:3]

    def task(e):
        return {"reference": e["prompt"] + e["body"], "entry_point": e["name"]}

    data = M.SplitDatasets(train=[task(in_train)], heldout=[task(in_heldout)])
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "trained_fingerprints.json").write_text(json.dumps([trained_on["fingerprint"]]))

    built = M.fresh_exercise_tasks("train", data, model_dir, count=12, budget="tiny")
    names = set(built["entry_point"])
    assert not names & {in_heldout["name"], in_train["name"], trained_on["name"]}
    assert names <= {e["name"] for e in candidates[3:15]} and len(built) >= 8  # most exercises get tests
    assert all(r["tests"] for r in built)
    again = M.fresh_exercise_tasks("train", data, model_dir, count=12, budget="tiny")  # cached: the same rows
    assert again["task_id"] == built["task_id"]
    with pytest.raises(ValueError, match="split"):
        M.fresh_exercise_tasks("test", data, model_dir)
