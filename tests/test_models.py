"""The small code model: training on a CPU works, its leakage record filters held-out tasks, checkpoints are cached
(the split and the exercises are tested in tests/data/test_split.py and tests/data/test_exercises.py)."""

import json
import math

import pytest

from trl_unittest import models as M
from trl_unittest.data import exercises
from trl_unittest.data.exercises import make_exercises
from trl_unittest.data.split import corpus_fingerprints, function_fingerprint, heldout_for_model, stdlib_texts


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
    clean = corpus_fingerprints(stdlib_texts("train", recipe.corpus_chars))
    clean |= {function_fingerprint(p + c) for p, c in M.sft_pairs(recipe)}
    if bug_rate:
        assert figures["sft_pairs_with_slips"] > 0.8 * figures["sft_pairs"] and len(seen - clean) > 100
    else:
        assert figures["sft_pairs_with_slips"] == 0 and seen == clean


def _check_heldout_for_model(model_dir):
    """A held-out task whose function the model trained on (an SFT exercise, or a function of its pretraining
    corpus) is dropped; others are kept; a folder without a fingerprint file filters nothing."""
    import ast

    import datasets

    seen_exercise = make_exercises("train", MICRO.sft_exercises, seed=MICRO.seed)[7]
    corpus_text, node = next((t, n) for t in stdlib_texts("train", MICRO.corpus_chars)
                             for n in ast.parse(t).body if isinstance(n, ast.FunctionDef))  # a top-level function
    corpus_func = ast.get_source_segment(corpus_text, node).replace(f"def {node.name}(", "def g(", 1)
    fresh = make_exercises("heldout", 1, seed=5)[0]
    rows = [{"reference": seen_exercise["prompt"] + seen_exercise["body"], "entry_point": seen_exercise["name"]},
            {"reference": fresh["prompt"] + fresh["body"], "entry_point": fresh["name"]},
            {"reference": corpus_func, "entry_point": "g"}]
    ds = datasets.Dataset.from_list(rows)
    kept, dropped = heldout_for_model(ds, model_dir)
    assert dropped == 2 and list(kept["entry_point"]) == [fresh["name"]]
    assert heldout_for_model(ds, model_dir.parent) == (ds, 0)


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
    exercises.exercise_generator_tag.cache_clear()
    monkeypatch.setattr(exercises, "_AGGREGATES", exercises._AGGREGATES[:2])
    try:
        assert M.BUDGETS["small"].key() != key
    finally:
        exercises.exercise_generator_tag.cache_clear()


def test_moved_names_still_import_from_models():
    """The split and the exercises moved to trl_unittest.data (issue #20); what users imported from
    trl_unittest.models is the same object there."""
    from trl_unittest import cache
    from trl_unittest.data import split

    for module, names in ((split, ["HELDOUT_PERCENT", "SplitDatasets", "build_split_datasets", "check_disjoint",
                                   "corpus_fingerprints", "function_fingerprint", "heldout_for_model", "split_of",
                                   "stdlib_modules", "stdlib_texts"]),
                          (exercises, ["buggy_body", "exercise_generator_tag", "fresh_exercise_tasks",
                                       "make_exercises", "slipped_bodies", "write_exercises"]),
                          (cache, ["cache_dir"])):
        for name in names:
            assert getattr(M, name) is getattr(module, name), name


def test_torch_threads_default_to_the_usable_cores_at_most_two_and_a_bad_value_is_one_clear_error(monkeypatch):
    import os

    import torch

    from trl_unittest.models import set_threads
    from trl_unittest.usage import UsageError

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("TRL_UNITTEST_THREADS", raising=False)
        assert set_threads() == min(2, len(os.sched_getaffinity(0))) == torch.get_num_threads()
        monkeypatch.setenv("TRL_UNITTEST_THREADS", "1")
        assert set_threads() == 1 == torch.get_num_threads()
        for bad in ("two", "0", "-1"):
            monkeypatch.setenv("TRL_UNITTEST_THREADS", bad)
            with pytest.raises(UsageError, match="TRL_UNITTEST_THREADS"):
                set_threads()
    finally:
        torch.set_num_threads(before)
