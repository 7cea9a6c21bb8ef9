"""The offline model builders: configs of each size, and vocabularies padded to a real model's size."""

import pytest

from trl_unittest.trainer.tiny import build_model, model_config


def test_sizes_give_the_documented_shapes():
    qwen = model_config("qwen2", 1000, size="0.5b")
    assert type(qwen).__name__ == "Qwen2Config"
    assert (qwen.hidden_size, qwen.num_hidden_layers, qwen.num_key_value_heads) == (896, 24, 2)
    assert model_config("llama", 1000, size="bench").num_hidden_layers == 8
    assert model_config("llama", 1000, size="tiny", hidden_size=32).hidden_size == 32  # overrides win
    with pytest.raises(ValueError, match="unknown size"):
        model_config("llama", 1000, size="huge")
    with pytest.raises(ValueError, match="Llama/Qwen2 shape"):
        model_config("gpt2", 1000, size="0.5b")


def test_padded_vocabulary_sizes_tokenizer_and_embedding(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_model(tmp_path / "m", "qwen2", pad_vocab_to=700)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    assert len(tok) == 700 and model.get_input_embeddings().num_embeddings == 700
    first = tok.convert_tokens_to_ids("<|unused_0|>")  # the padding follows the trained BPE's entries
    assert 0 < first < 700 and tok.decode([699]) == f"<|unused_{699 - first}|>"
