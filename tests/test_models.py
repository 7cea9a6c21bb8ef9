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


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_train_code_model_micro(tmp_path, arch):
    from dataclasses import replace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    figures = M.train_code_model(tmp_path / "m", replace(MICRO, arch=arch), progress=False)
    for key in ("pretrain_loss_first", "pretrain_loss_last", "sft_loss_first", "sft_loss_last"):
        assert math.isfinite(figures[key])
    assert figures["sft_loss_last"] < figures["sft_loss_first"]
    assert figures["pretrain_loss_last"] < figures["pretrain_loss_first"]
    assert figures["sft_pairs"] == 200
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.config.model_type == arch and len(tok) == model.config.vocab_size
    assert json.loads((tmp_path / "m" / "trl_unittest_model.json").read_text())["parameters"] > 0


def test_ensure_code_model_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_UNITTEST_CACHE", str(tmp_path / "cache"))
    calls = []
    real = M.train_code_model

    def counting(out_dir, recipe, train_tasks=None, progress=True):
        calls.append(out_dir)
        return real(out_dir, recipe, train_tasks, progress=False)

    monkeypatch.setattr(M, "train_code_model", counting)
    path = M.ensure_code_model(MICRO, train_tasks=[], progress=False)
    assert M.ensure_code_model(MICRO, train_tasks=[], progress=False) == path and len(calls) == 1
    assert str(tmp_path / "cache") in path and MICRO.key() in path
    other = M.ensure_code_model(M.CodeModelRecipe(**{**MICRO.__dict__, "seed": 1}), train_tasks=[], progress=False)
    assert other != path and len(calls) == 2
