"""Tiny models and tokenizers built offline, for tests and benchmarks.

Nothing here touches the Hub: the tokenizer is a byte-level BPE trained with `tokenizers` on a few files of the
local Python standard library, and the models are randomly initialised from small GPT-2 / Llama configs. Every
builder saves to a directory and returns its path, so callers load them by path exactly as they would a real
checkpoint (`AutoModelForCausalLM.from_pretrained(path)`).
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

STDLIB_FILES = ("textwrap.py", "string.py", "bisect.py", "heapq.py", "fnmatch.py", "shlex.py", "difflib.py")
SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>")


def _stdlib_sources() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text(encoding="utf-8") for name in STDLIB_FILES if (stdlib / name).exists()]
    if not texts:  # a stripped interpreter: fall back to this package's own sources
        texts = [p.read_text(encoding="utf-8") for p in Path(__file__).resolve().parents[1].rglob("*.py")]
    return texts


def build_tokenizer(out_dir: str | os.PathLike, vocab_size: int = 512):
    """Train a byte-level BPE on stdlib sources and save it as a `PreTrainedTokenizerFast` in `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_stdlib_sources(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=SPECIAL_TOKENS[0], bos_token=SPECIAL_TOKENS[0], pad_token=SPECIAL_TOKENS[1],
        padding_side="left",
    )
    fast.save_pretrained(str(out_dir))
    return fast


def model_config(arch: str, vocab_size: int, size: str = "tiny", **overrides):
    """A transformers config. `size="tiny"`: a few hundred thousand parameters (unit tests); `size="bench"`: a
    few tens of millions (CPU benchmarks); `size="0.5b"` (Llama or Qwen2): the layer shapes of Qwen2.5-0.5B (GPU
    benchmarks; the vocabulary is the tokenizer's: `build_model(pad_vocab_to=151936)` gives Qwen's)."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    if size not in ("tiny", "bench", "0.5b"):
        raise ValueError(f"unknown size {size!r}: expected 'tiny', 'bench' or '0.5b'")
    if arch == "gpt2":
        if size == "0.5b":
            raise ValueError("size '0.5b' is a Llama/Qwen2 shape: use arch 'llama' or 'qwen2'")
        dims = dict(n_embd=64, n_layer=2, n_head=4, n_positions=256) if size == "tiny" else \
            dict(n_embd=512, n_layer=8, n_head=8, n_positions=1024)
        return GPT2Config(**{"vocab_size": vocab_size, **dims, **overrides})
    if arch in ("llama", "qwen2"):
        dims = {
            "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256),
            "bench": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                          num_key_value_heads=4, max_position_embeddings=1024),
            "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, max_position_embeddings=4096),
        }[size]
        config_cls = LlamaConfig if arch == "llama" else Qwen2Config
        return config_cls(**{"vocab_size": vocab_size, "tie_word_embeddings": True, **dims, **overrides})
    raise ValueError(f"unknown architecture {arch!r}: expected 'gpt2', 'llama' or 'qwen2'")


def build_model(out_dir: str | os.PathLike, arch: str = "llama", size: str = "tiny", vocab_size: int = 512,
                seed: int = 0, tokenizer=None, pad_vocab_to: int | None = None, **overrides) -> str:
    """Build a tokenizer (unless given) and a randomly initialised causal LM, save both to `out_dir`, return it.

    `pad_vocab_to` adds unused special tokens until the vocabulary has that many entries, so that the embedding and
    the logits have a real model's size (151,936 for Qwen2.5): they dominate an RL trainer's memory."""
    import torch
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        tokenizer = build_tokenizer(out_dir, vocab_size=vocab_size)
    if pad_vocab_to and pad_vocab_to > len(tokenizer):
        tokenizer.add_tokens([f"<|unused_{i}|>" for i in range(pad_vocab_to - len(tokenizer))], special_tokens=True)
    tokenizer.save_pretrained(str(out_dir))
    config = model_config(arch, len(tokenizer), size=size, **overrides)
    config.eos_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir))
    return str(out_dir)
