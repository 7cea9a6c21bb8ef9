"""Shared fixtures: a tiny Llama and a tiny GPT-2 (with a byte-level BPE trained on stdlib sources), built once per
session, offline, and loaded by path."""

import pytest
from datasets import Dataset

from trl_unittest.trainer.tiny import build_model

PROMPTS = ["def f(x):\n", "def g(y):\n", "class A:\n", "import os\n"]


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_llama_wide(tmp_path_factory):
    # With the default init (std 0.02) the logits stay near-uniform whatever the hidden state is (unit-RMS hidden
    # state times 0.02-scale embeddings), so only the embeddings can move them; LoRA adapters need a wider init.
    return build_model(tmp_path_factory.mktemp("tiny-llama-wide"), "llama", initializer_range=0.3)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture
def prompts_ds():
    return Dataset.from_dict({"prompt": PROMPTS * 16})
