"""The leakage-free split: stable and disjoint by module, train corpus from train modules only, datasets disjoint."""

import pytest

from trl_unittest.data import split as S


def test_split_is_stable_and_disjoint():
    mods = S.stdlib_modules()
    assert mods["train"] and mods["heldout"]
    assert not set(mods["train"]) & set(mods["heldout"])
    assert all(S.split_of(m) == "heldout" for m in mods["heldout"])
    share = len(mods["heldout"]) / (len(mods["train"]) + len(mods["heldout"]))
    assert 0.15 < share < 0.45


def test_pretraining_corpus_is_train_modules_only():
    texts = S.stdlib_texts("train", max_chars=300_000)
    assert texts and sum(map(len, texts)) >= 300_000
    from trl_unittest.data.sources import iter_stdlib

    held = {f.text for f in iter_stdlib() if S.split_of(f.path.split("/")[0].removesuffix(".py")) == "heldout"}
    assert not held & set(texts)


@pytest.mark.slow
def test_split_datasets_disjoint():
    data = S.build_split_datasets("tiny", progress=False)
    assert len(data.train) > 50 and len(data.heldout) > 20
    S.check_disjoint(data)
    sources = set(data.heldout["task_id"])
    assert any(t.startswith("stdlib/") for t in sources) and any(t.startswith("local:exercises") for t in sources)
    assert not set(data.train["task_id"]) & sources
