"""A small code model trained here, on a CPU, from local sources only, and the train / held-out task split it is
measured on.

No pretrained code model can be downloaded in this environment, so this module builds one:

1. **Split.** The standard library's top-level modules are split by a hash of the module name into *train* and
   *held-out* (:func:`split_of`, about 30 % held out). A family of small synthetic exercises (documented one-line
   functions on ints, strings and lists: :func:`make_exercises`) is split by a hash of each function's normalised
   AST (names of the function and its arguments erased), so every expression *shape* lands on one side only.
2. **Tokenizer.** A byte-level BPE trained on train-module sources only (same recipe and special tokens as
   :mod:`trl_unittest.trainer.tiny`).
3. **Pretraining.** A small Llama (or GPT-2) from :func:`trl_unittest.trainer.tiny.model_config`, trained as a
   causal LM on random windows of the train modules' source text.
4. **SFT.** Fine-tuning on (prompt, reference body) pairs: train-split exercises and the builder's tasks mined
   from train modules; the loss covers the body and EOS only. Optionally (``sft_bug_rate``, budget
   ``small-bugs``) a share of the examples drawn show their body with one slip, for a model with an error habit.

**No leakage**: held-out tasks come from modules / expression shapes that neither the tokenizer, pretraining nor
SFT saw, and :func:`build_split_datasets` additionally drops every held-out task whose normalised-AST fingerprint
(function renamed to ``f``) equals that of any function in the default model's pretraining corpus or in the SFT /
RL training tasks. :func:`check_disjoint` asserts it. A model trained on more (the GPU-sized ``medium`` recipe
pretrains on every train module) records the fingerprints of everything it saw in ``trained_fingerprints.json``,
and :func:`heldout_for_model` drops those too.

**Honesty**: most exercises are deliberately easy (the docstring states the expression, e.g. ``Return (a + b) *
c.``); a held-out exercise is solvable by composing what was learned, not by recall. One exercise in five is
described in words only (``Return the sum of the squares of the items of xs that are even and greater than 3.``):
filters, a transform and an aggregate, held-out ones being combinations that no train one has (source
``worded_heldout``). Standard-library held-out tasks are real and hard for a model this size; expect pass@1 near
zero on them. Reports break pass@k down by source.

Trained checkpoints are cached under ``$TRL_UNITTEST_CACHE`` (default ``~/.cache/trl_unittest``) in a folder named
by a hash of the recipe, and rebuilt when missing (:func:`ensure_code_model`).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from trl_unittest.cache import cache_root

logger = logging.getLogger(__name__)

RECIPE_VERSION = 4  # 2: version-stable AST fingerprints (the exercise split and every leakage filter hash them);
# 3: builder fixes (form feeds, redefinitions, static methods, order-dependent tests, dedup with context)
# 4: builder test adequacy (trivial-body probes, hidden tests, honest mutation scores, wrapper tasks dropped)
HELDOUT_PERCENT = 30


# ------------------------------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _hash(obj: Any) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, default=str).encode(), digest_size=6).hexdigest()


# ------------------------------------------------------------------------------------------------- split
def split_of(name: str, heldout_percent: int = HELDOUT_PERCENT) -> str:
    """'train' or 'heldout' for a stdlib top-level module (or any key), by a stable hash of the name."""
    h = int(hashlib.blake2b(name.encode(), digest_size=4).hexdigest(), 16) % 100
    return "heldout" if h < heldout_percent else "train"


def stdlib_modules() -> dict[str, list[str]]:
    """The standard library's top-level modules (as the builder sees them) by split."""
    from trl_unittest.data.sources import iter_stdlib

    mods = sorted({f.path.split("/")[0].removesuffix(".py") for f in iter_stdlib()})
    out: dict[str, list[str]] = {"train": [], "heldout": []}
    for m in mods:
        out[split_of(m)].append(m)
    return out


def stdlib_texts(split: str = "train", max_chars: int | None = None) -> list[str]:
    """Source texts of one split's stdlib modules (sorted by path), up to about ``max_chars`` in total."""
    from trl_unittest.data.sources import iter_stdlib

    texts, total = [], 0
    for f in iter_stdlib():
        if split_of(f.path.split("/")[0].removesuffix(".py")) != split:
            continue
        if len(f.text) > 200_000:  # a few giant generated files (unicode tables) add nothing
            continue
        texts.append(f.text)
        total += len(f.text)
        if max_chars is not None and total >= max_chars:
            break
    return texts


def function_fingerprint(src: str, name: str | None = None) -> str:
    """ast_fingerprint of a function with its name replaced by ``f`` (arguments and locals are normalised by
    ``code.ast_fingerprint`` itself); docstrings do not count."""
    import ast

    from trl_unittest.code import ast_fingerprint

    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError):
        return ast_fingerprint(src)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (name is None or node.name == name):
            node.name = "f"
            return ast_fingerprint(ast.unparse(node))
    return ast_fingerprint(src)


def corpus_fingerprints(texts: Iterable[str]) -> set[str]:
    """Fingerprints of every function defined anywhere in the given sources."""
    import ast

    out = set()
    for text in texts:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                try:
                    out.add(function_fingerprint(ast.unparse(node)))
                except (RecursionError, ValueError):
                    pass
    return out


# --------------------------------------------------------------------------------------------- exercises
_TRAIN_WORDS = (["calc", "compute", "get", "make", "find", "combine", "apply", "build", "take", "form"],
                ["total", "value", "result", "score", "amount", "offset", "level", "size", "mix", "output"])
_HELDOUT_WORDS = (["derive", "produce", "figure", "render", "shape", "evaluate"],
                  ["measure", "quantity", "answer", "outcome", "token", "reading"])
_INT_ARGS = ["a", "b", "c", "x", "y", "z", "n", "m", "k", "p", "q", "u", "v", "w"]
_STR_ARGS = ["s", "t", "text", "word", "name", "line"]
_LIST_ARGS = ["xs", "ys", "items", "values", "nums", "data"]
_VERBAL = {"+": "the sum of {l} and {r}", "-": "{l} minus {r}", "*": "the product of {l} and {r}",
           "max": "the larger of {l} and {r}", "min": "the smaller of {l} and {r}", "abs": "the absolute value of {l}"}

# Exercises described in words only (docstring: what, not how), composed of one or two filters, a transform and an
# aggregate, so that a held-out one is a new combination of parts that train ones use. Meant as a middle band of
# difficulty; measured, the 1M-parameter model composes them well: held-out pass@1 1.00 with one filter and five
# aggregates, 0.90 with this grammar (benchmarks/RESULTS.md)
_PREDICATES = [("greater than {n}", "{v} > {n}"), ("less than {n}", "{v} < {n}"), ("at least {n}", "{v} >= {n}"),
               ("even", "{v} % 2 == 0"), ("odd", "{v} % 2 == 1"), ("positive", "{v} > 0"), ("negative", "{v} < 0"),
               ("divisible by {n}", "{v} % {n} == 0"), ("different from {n}", "{v} != {n}")]
_TRANSFORMS = [("items", "{v}"), ("squares of the items", "{v} * {v}"), ("doubled items", "2 * {v}"),
               ("absolute values of the items", "abs({v})"), ("items plus {n}", "{v} + {n}"),
               ("negated items", "-{v}"), ("items times {n}", "{v} * {n}"), ("items modulo {n}", "{v} % {n}")]
_AGGREGATES = [("the sum of the {t} of {xs}{c}", "sum({e} for {v} in {xs}{f})"),
               ("the list of the {t} of {xs}{c}, in order", "[{e} for {v} in {xs}{f}]"),
               ("the largest of the {t} of {xs}{c}, or {d} if there is none",
                "max(({e} for {v} in {xs}{f}), default={d})"),
               ("the smallest of the {t} of {xs}{c}, or {d} if there is none",
                "min(({e} for {v} in {xs}{f}), default={d})"),
               ("how many items of {xs}{c}", "sum(1 for {v} in {xs}{f})"),
               ("the {t} of {xs}{c}, from the largest to the smallest",
                "sorted(({e} for {v} in {xs}{f}), reverse=True)"),
               ("the distinct {t} of {xs}{c}, smallest first", "sorted({{{e} for {v} in {xs}{f}}})"),
               ("the first of the {t} of {xs}{c}, or {d} if there is none", "next(({e} for {v} in {xs}{f}), {d})"),
               ("the largest minus the smallest of the {t} of {xs}{c}, or 0 if there is none",
                "max(({e} for {v} in {xs}{f}), default=0) - min(({e} for {v} in {xs}{f}), default=0)")]


def _worded(rng: random.Random) -> tuple[str, str, str]:
    """(signature, docstring, expression) of a filter-transform-aggregate exercise described in words."""
    xs, v = rng.choice(_LIST_ARGS), "v"
    words, expr = rng.choice(_AGGREGATES)
    tw, te = rng.choice(_TRANSFORMS) if "{t}" in words else ("", "")
    cw, cf = "", ""
    if rng.random() < 0.85:
        parts = [rng.choice(_PREDICATES) for _ in range(1 if rng.random() < 0.4 else 2)]
        joint = rng.choice(["and", "or"])
        filled = [(pw.format(n=n), pe.format(v=v, n=n)) for (pw, pe), n in zip(parts, rng.sample(range(2, 6), 2))]
        cw = " that are " + f" {joint} ".join(w for w, _ in filled)
        cf = " if " + f" {joint} ".join(e for _, e in filled)
    k = rng.randint(2, 5)
    d = rng.choice([0, -1])
    doc = "Return " + words.format(t=tw.format(n=k), xs=xs, c=cw, d=d) + "."
    body = expr.format(e=te.format(v=v, n=k), v=v, xs=xs, f=cf, d=d)
    return f"{xs}: list[int]", doc, body


def _int_expr(rng: random.Random, args: list[str], depth: int) -> tuple[str, bool]:
    """(expression, compound)"""
    if depth == 0 or rng.random() < 0.25:
        return (str(rng.randint(2, 9)), False) if rng.random() < 0.2 else (rng.choice(args), False)
    r = rng.random()
    left, lc = _int_expr(rng, args, depth - 1)
    if r < 0.15:
        return f"abs({left})", False
    right, rc = _int_expr(rng, args, depth - 1)
    if r < 0.35:
        return f"{rng.choice(['max', 'min'])}({left}, {right})", False
    op = rng.choice(["+", "-", "*", "+", "*", "//", "%"])
    if op in ("//", "%"):
        right, rc = str(rng.randint(2, 9)), False
    return f"{'(' + left + ')' if lc else left} {op} {'(' + right + ')' if rc else right}", True


_STR_UNARY = ["{s}.upper()", "{s}.lower()", "{s}.strip()", "{s}[::-1]", "{s}.title()", "{s}.replace(' ', '')",
              "{s} + {s}", "{s}.swapcase()", "{s}.capitalize()"]
_STR_BINARY = ["{s} + {t}", "{t} + {s}", "{s} + ' ' + {t}", "{s} + '-' + {t}", "{s}.count({t})", "{t} in {s}",
               "{s}.startswith({t})", "{s}.endswith({t})", "{s}.find({t})"]
_LIST_EXPRS = ["sum({xs})", "len({xs})", "sorted({xs})", "{xs}[::-1]", "sorted({xs}, reverse=True)",
               "[v * {k} for v in {xs}]", "[v for v in {xs} if v > {k}]", "sum({xs}) * {k}", "{xs} + [{k}]",
               "[v + {k} for v in {xs}]", "len({xs}) + {k}", "{xs}[:{k}]", "{xs}[{k}:]", "sorted({xs})[:{k}]",
               "sum(v * v for v in {xs})", "[v % {k} for v in {xs}]", "max({xs}, default={k})",
               "min({xs}, default={k})"]


def _exercise(rng: random.Random, words: tuple[list[str], list[str]], idx: int) -> tuple[str, str, str, str]:
    """(name, signature + docstring, body, family) of one exercise."""
    name = f"{rng.choice(words[0])}_{rng.choice(words[1])}_{idx}"
    family = rng.random()
    if family >= 0.8:  # in words only
        sig, doc, expr = _worded(rng)
        return name, f"def {name}({sig}):\n" + f'    """{doc}"""\n', f"    return {expr}\n", "worded"
    if family < 0.4:
        args = rng.sample(_INT_ARGS, rng.randint(1, 3))
        expr, _ = _int_expr(rng, args, rng.choice([1, 1, 2, 2, 3]))
        if not any(a in expr.replace("(", " ").replace(")", " ").replace(",", " ").split() for a in args):
            expr = f"{args[0]} + {expr}"
        used = [a for a in args if a in expr.replace("(", " ").replace(")", " ").replace(",", " ").split()]
        sig = ", ".join(f"{a}: int" for a in used)
        ret = "int"
        doc = f"Return {expr}."
        toks = expr.split(" ")
        if len(toks) == 3 and toks[1] in _VERBAL and rng.random() < 0.4:  # a plain binary operation, in words
            doc = "Return " + _VERBAL[toks[1]].format(l=toks[0], r=toks[2]) + "."
        elif expr.startswith(("max(", "min(")) and expr.count("(") == 1 and rng.random() < 0.4:
            lft, rgt = expr[4:-1].split(", ")
            doc = "Return " + _VERBAL[expr[:3]].format(l=lft, r=rgt) + "."
    elif family < 0.65:
        s, t = rng.sample(_STR_ARGS, 2)
        if rng.random() < 0.5:
            expr = rng.choice(_STR_UNARY).format(s=s)
            if rng.random() < 0.3:
                expr = rng.choice(_STR_UNARY).format(s=f"({expr})" if " " in expr else expr)
            sig = f"{s}: str"
        else:
            expr = rng.choice(_STR_BINARY).format(s=s, t=t)
            sig = f"{s}: str, {t}: str"
        ret = "object"
        doc = f"Return {expr}."
    else:
        xs, k = rng.choice(_LIST_ARGS), rng.choice(["k", "n", "m"])
        template = rng.choice(_LIST_EXPRS)
        expr = template.format(xs=xs, k=k)
        sig = f"{xs}: list[int]" + (f", {k}: int" if "{k}" in template else "")
        ret = "object"
        doc = f"Return {expr}."
    head = f"def {name}({sig}) -> {ret}:\n" if ret == "int" else f"def {name}({sig}):\n"
    return name, head + f'    """{doc}"""\n', f"    return {expr}\n", "spelled"


def make_exercises(split: str, count: int, seed: int = 0) -> list[dict[str, str]]:
    """``count`` distinct exercises of one split: dicts with ``name``, ``prompt``, ``body``, ``fingerprint`` and
    ``family`` ("worded": described in words only, else "spelled"). An exercise belongs to the split that the hash
    of its fingerprint picks, so the splits share no shape."""
    rng = random.Random(f"{seed}-{split}")
    words = _TRAIN_WORDS if split == "train" else _HELDOUT_WORDS
    out, seen, tries = [], set(), 0
    while len(out) < count and tries < count * 50:
        tries += 1
        name, prompt, body, family = _exercise(rng, words, len(out))
        fp = function_fingerprint(prompt + body)
        if fp in seen or split_of("exercise:" + fp) != split:
            continue
        seen.add(fp)
        out.append({"name": name, "prompt": prompt, "body": body, "fingerprint": fp, "family": family})
    return out


@functools.lru_cache(maxsize=1)
def exercise_generator_tag() -> str:
    """A hash of a sample of the generator's output: part of every cache key that exercises feed (datasets, trained
    models), so that a change to the generator cannot reuse what the previous one built (RECIPE_VERSION is the
    manual switch; this one needs no one to remember it)."""
    return _hash([make_exercises(split, 40, seed=0) for split in ("train", "heldout")])


def write_exercises(folder: str | os.PathLike, exercises: list[dict[str, str]], per_file: int = 25) -> Path:
    """Write exercises as Python modules (sources for the dataset builder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(exercises), per_file):
        chunk = exercises[i: i + per_file]
        (folder / f"exercises_{i // per_file:03d}.py").write_text("\n\n".join(e["prompt"] + e["body"] for e in chunk))
    return folder


# ------------------------------------------------------------------------------------------------ recipe
@dataclass
class CodeModelRecipe:
    """Everything that determines the trained model (its hash names the cache folder)."""

    arch: str = "llama"
    vocab_size: int = 2048
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    max_positions: int = 512
    corpus_chars: int | None = 3_000_000  # pretraining text from train-split stdlib modules (None: all of it)
    pretrain_steps: int = 200
    pretrain_seq_len: int = 256
    pretrain_batch: int = 16
    pretrain_lr: float = 2e-3
    sft_exercises: int = 3000
    sft_steps: int = 800
    sft_batch: int = 32
    sft_lr: float = 1e-3
    sft_prompt_tokens: int = 64  # SFT keeps the last tokens of each prompt (short batches on a CPU)
    sft_completion_tokens: int = 64  # longer reference bodies are left out of SFT
    # chance that an SFT example, each time it is drawn, shows its body with one slip (a comparison, operator,
    # boolean or number off: buggy_body), as code in the wild has; drawn afresh every time, so the model learns
    # slips as a habit on any task rather than which tasks have them: an error habit that train and held-out tasks
    # share, for RL to remove on both. Measured (budget "small-bugs"): short RL removes slips on its own tasks only;
    # 1,600 steps without a KL penalty remove the habit, held-out pass@1 0.452 -> 0.522, where the clean model
    # gains nothing (benchmarks/RESULTS.md, "A model with a slip habit")
    sft_bug_rate: float = 0.0
    seed: int = 0
    version: int = RECIPE_VERSION

    def key(self) -> str:
        fields = asdict(self)
        if not fields["sft_bug_rate"]:  # off: the key (the cached model) of a recipe from before the option
            del fields["sft_bug_rate"]
        return _hash([fields, exercise_generator_tag()])


BUDGETS: dict[str, CodeModelRecipe] = {
    "tiny": CodeModelRecipe(hidden=128, layers=3, corpus_chars=600_000, pretrain_steps=60, pretrain_seq_len=128,
                            sft_exercises=1500, sft_steps=400, sft_batch=32),
    "small": CodeModelRecipe(),
    "small-bugs": CodeModelRecipe(sft_bug_rate=0.3),  # "small" with a slip habit: held-out pass@1 0.45, not 0.55
    # for a GPU (`--device cuda`, 2 minutes on an H200; hours on a CPU): 27M parameters, every train module
    # (~7M characters, 2M tokens: 500 x 64 x 512 tokens is 8 passes), twice the exercises; SFT 6 passes (1,500
    # steps memorised them: loss 1e-4, nothing left for RL; benchmarks/RESULTS.md)
    "medium": CodeModelRecipe(vocab_size=4096, hidden=512, layers=8, heads=8, corpus_chars=None,
                              pretrain_steps=500, pretrain_seq_len=512, pretrain_batch=64, pretrain_lr=1e-3,
                              sft_exercises=6000, sft_steps=600, sft_batch=64, sft_lr=3e-4),
}
# the 27M model with the slip habit, for the GPU run of the held-out transfer (benchmarks/rl_gpu.sh, BUDGET=medium-bugs)
BUDGETS["medium-bugs"] = replace(BUDGETS["medium"], sft_bug_rate=0.3)


def recipe_for(budget: str | CodeModelRecipe) -> CodeModelRecipe:
    if isinstance(budget, CodeModelRecipe):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}: expected one of {sorted(BUDGETS)}")
    return BUDGETS[budget]


# ---------------------------------------------------------------------------------------------- building
def set_threads() -> int:
    """Torch intra-op threads for these small models: ``$TRL_UNITTEST_THREADS``, default 1. Tiny matrices gain
    little from more threads, and OpenMP threads on a busy machine (the sandbox workers run beside training)
    slow a step down by 10x."""
    import torch

    n = int(os.environ.get("TRL_UNITTEST_THREADS", "1"))
    torch.set_num_threads(n)
    return n


def build_code_tokenizer(texts: list[str], out_dir: str | os.PathLike, vocab_size: int = 2048):
    """Byte-level BPE on the given sources (same recipe and special tokens as ``trainer.tiny.build_tokenizer``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from trl_unittest.trainer.tiny import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIAL_TOKENS[0], bos_token=SPECIAL_TOKENS[0],
                                   pad_token=SPECIAL_TOKENS[1], padding_side="left")
    fast.save_pretrained(str(out_dir))
    return fast


def _arch_overrides(r: CodeModelRecipe) -> dict[str, Any]:
    if r.arch == "gpt2":
        return dict(n_embd=r.hidden, n_layer=r.layers, n_head=r.heads, n_positions=r.max_positions)
    return dict(hidden_size=r.hidden, intermediate_size=3 * r.hidden, num_hidden_layers=r.layers,
                num_attention_heads=r.heads, num_key_value_heads=max(1, r.heads // 2),
                max_position_embeddings=r.max_positions)


def sft_pairs(recipe: CodeModelRecipe, train_tasks: Any = None) -> list[tuple[str, str]]:
    """(prompt, completion) pairs for SFT: train-split exercises, plus builder tasks of train sources whose
    reference starts with the prompt."""
    pairs = [(e["prompt"], e["body"]) for e in make_exercises("train", recipe.sft_exercises, seed=recipe.seed)]
    for row in train_tasks or []:
        ref, prompt = row["reference"], row["prompt"]
        if ref.startswith(prompt) and ref[len(prompt):].strip():
            pairs.append((prompt, ref[len(prompt):]))
    return pairs


def slipped_bodies(prompt: str, body: str, rng: random.Random, count: int = 4) -> list[str]:
    """Up to ``count`` distinct variants of ``body`` with one slip each (:func:`buggy_body`). A variant whose shape
    the exercise split puts on the held-out side is left out: a slip must not teach a held-out solution."""
    out: list[str] = []
    for _ in range(3 * count):
        bug = buggy_body(prompt, body, rng)
        if bug is None:
            break
        if bug not in out and split_of("exercise:" + function_fingerprint(prompt + bug)) == "train":
            out.append(bug)
        if len(out) == count:
            break
    return out


# one-token slips, as text (the body's formatting stays, so that only the bug tells a buggy body apart): the
# comparison, arithmetic and boolean replacements of mutation testing (data.mutation), numbers off by one, and
# the twin of a built-in or string method
_SLIPS = {"<": ["<=", ">"], "<=": ["<", ">="], ">": [">=", "<"], ">=": [">", "<="], "==": ["!="], "!=": ["=="],
          "+": ["-"], "-": ["+"], "*": ["+", "//"], "//": ["%", "*"], "%": ["//"], "and": ["or"], "or": ["and"],
          "True": ["False"], "False": ["True"], "min": ["max"], "max": ["min"], "upper": ["lower"],
          "lower": ["upper"], "startswith": ["endswith"], "endswith": ["startswith"], "title": ["capitalize"],
          "capitalize": ["title"], "find": ["rfind"], "strip": ["rstrip"]}


def buggy_body(prompt: str, body: str, rng: random.Random) -> str | None:
    """``body`` with one slip at a random token (see ``_SLIPS``; integers also off by one), or None when it has
    no such token or every variant fails to compile."""
    import io
    import tokenize

    try:
        toks = list(tokenize.generate_tokens(io.StringIO(body).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    lines = body.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    sites = []
    for t in toks:
        if t.start[0] != t.end[0]:
            continue
        if t.type == tokenize.NUMBER and t.string.isdigit():
            n = int(t.string)
            options = [str(n + 1)] + ([str(n - 1)] if n > 0 else [])
        elif t.type in (tokenize.OP, tokenize.NAME) and t.string in _SLIPS:
            options = _SLIPS[t.string]
        else:
            continue
        at = starts[t.start[0] - 1] + t.start[1]
        sites.append((at, at + len(t.string), options))
    rng.shuffle(sites)
    for start, end, options in sites:
        variant = body[:start] + rng.choice(options) + body[end:]
        try:
            compile(prompt + variant, "<sft>", "exec")
        except (SyntaxError, ValueError):
            continue
        return variant
    return None


def train_code_model(out_dir: str | os.PathLike, recipe: CodeModelRecipe, train_tasks: Any = None,
                     progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Tokenizer + pretraining + SFT; saves a ``transformers`` checkpoint (fp32 weights) and the fingerprints of
    everything it trained on (``trained_fingerprints.json``) in ``out_dir`` and returns figures. On ``cuda`` the
    steps run under bf16 autocast."""
    import torch
    from transformers import AutoModelForCausalLM

    from trl_unittest.trainer.tiny import model_config

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_threads()
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    texts = stdlib_texts("train", recipe.corpus_chars)
    tok = build_code_tokenizer(texts, out_dir, recipe.vocab_size)
    config = model_config(recipe.arch, len(tok), **_arch_overrides(recipe))
    config.eos_token_id = config.bos_token_id = tok.eos_token_id
    config.pad_token_id = tok.pad_token_id
    model = AutoModelForCausalLM.from_config(config).to(device)
    params = sum(p.numel() for p in model.parameters())

    # pretraining: random windows of the token stream
    eos = tok.eos_token_id
    stream: list[int] = []
    for text in texts:
        stream.extend(tok(text, add_special_tokens=False)["input_ids"])
        stream.append(eos)
    data = torch.tensor(stream, dtype=torch.long)
    L = recipe.pretrain_seq_len
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.pretrain_lr, weight_decay=0.01, betas=(0.9, 0.95))
    t_pre = time.perf_counter()
    pre_losses = _loop(model, opt, recipe.pretrain_steps, recipe.pretrain_lr, "pretraining", progress,
                       lambda: _window_batch(data, L, recipe.pretrain_batch, rng))

    # SFT: prompt -> body + EOS, loss on the completion only
    pairs = sft_pairs(recipe, train_tasks)
    encoded, slips, slip_sources, bug_rng = [], [], [], random.Random(f"slips-{recipe.seed}")
    for prompt, body in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(body, add_special_tokens=False)["input_ids"] + [eos]
        p = p[-recipe.sft_prompt_tokens:]  # the signature and docstring are at the end; far context is cut
        if len(c) <= recipe.sft_completion_tokens:
            encoded.append((p, c))
            bugs = slipped_bodies(prompt, body, bug_rng) if recipe.sft_bug_rate else []
            slips.append([tok(b, add_special_tokens=False)["input_ids"] + [eos] for b in bugs])
            slip_sources += [prompt + b for b in bugs]
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.sft_lr, weight_decay=0.01, betas=(0.9, 0.95))
    t_sft = time.perf_counter()
    sft_losses = _loop(model, opt, recipe.sft_steps, recipe.sft_lr, "SFT", progress,
                       lambda: _sft_batch(encoded, recipe.sft_batch, rng, tok.pad_token_id, slips,
                                          recipe.sft_bug_rate))
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    t_end = time.perf_counter()
    model.to("cpu").save_pretrained(str(out_dir))
    seen = corpus_fingerprints(texts) | {function_fingerprint(p + c) for p, c in pairs}
    seen |= {function_fingerprint(src) for src in slip_sources}  # every body SFT showed counts as trained on
    (out_dir / "trained_fingerprints.json").write_text(json.dumps(sorted(seen)))
    figures = {
        "recipe": asdict(recipe), "device": str(device), "parameters": params, "corpus_files": len(texts),
        "corpus_chars": sum(len(t) for t in texts), "corpus_tokens": len(stream),
        "pretrain_tokens": recipe.pretrain_steps * recipe.pretrain_batch * L,
        "pretrain_seconds": round(t_sft - t_pre, 1), "sft_seconds": round(t_end - t_sft, 1),
        "pretrain_loss_first": _mean(pre_losses[:10]), "pretrain_loss_last": _mean(pre_losses[-10:]),
        "sft_pairs": len(encoded), "sft_pairs_too_long": len(pairs) - len(encoded),
        "sft_pairs_with_slips": sum(1 for b in slips if b),
        "sft_loss_first": _mean(sft_losses[:10]), "sft_loss_last": _mean(sft_losses[-10:]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out_dir / "trl_unittest_model.json").write_text(json.dumps(figures, indent=2))
    return figures


def _mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _window_batch(data, L: int, batch: int, rng: random.Random):
    import torch

    starts = [rng.randrange(0, max(1, len(data) - L - 1)) for _ in range(batch)]
    x = torch.stack([data[s: s + L] for s in starts])
    return x, torch.ones_like(x), x.clone()


def _sft_batch(encoded, batch: int, rng: random.Random, pad: int, slips=None, bug_rate: float = 0.0):
    import torch

    rows = []
    for _ in range(batch):
        i = rng.randrange(len(encoded))
        p, c = encoded[i]
        if bug_rate and slips[i] and rng.random() < bug_rate:
            c = rng.choice(slips[i])
        rows.append((p, c))
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((batch, width), pad, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    labels = torch.full((batch, width), -100, dtype=torch.long)
    for i, (p, c) in enumerate(rows):  # right padding for training
        seq = p + c
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(p): len(seq)] = torch.tensor(c)
    return ids, mask, labels


def _loop(model, opt, steps: int, lr: float, desc: str, progress: bool, next_batch) -> list[float]:
    import contextlib

    import torch

    device = next(model.parameters()).device
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" \
        else contextlib.nullcontext
    model.train()
    losses = []
    warmup = max(1, steps // 10)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step")
    for step in range(steps):
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
        for g in opt.param_groups:
            g["lr"] = lr * max(scale, 0.05)
        ids, mask, labels = (t.to(device, non_blocking=True) for t in next_batch())
        with autocast():
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.detach())  # no per-step host sync on a GPU
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{float(losses[-1]):.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    return [float(x) for x in losses]


# ---------------------------------------------------------------------------------------------- datasets
@dataclass
class SplitDatasets:
    train: Any  # datasets.Dataset of tasks from train sources
    heldout: Any  # datasets.Dataset of tasks from held-out sources, disjoint from everything trained on
    info: dict[str, Any] = field(default_factory=dict)


def _build(sources: list[str], out: Path, progress: bool):
    from trl_unittest.data.builder import BuilderConfig, build_dataset, load_tasks

    if (out / "dataset").is_dir():
        return load_tasks(out / "dataset")
    cfg = BuilderConfig(progress=progress, num_workers=2, shard_size=40)
    for attempt in range(3):
        try:
            return build_dataset(sources, cfg, out_dir=out)
        except SystemError as e:  # CPython 3.11 gh-106905 surfacing from execution.values.decode_value: finished
            if attempt == 2:     # shards are kept, so a rerun resumes after them
                raise
            logger.warning("builder hit %r; resuming", e)


def build_split_datasets(budget: str | CodeModelRecipe = "small", heldout_exercises: int = 150,
                         train_exercises: int = 300, progress: bool = True) -> SplitDatasets:
    """Builder task datasets (cached): train = train stdlib modules + train exercises; held-out = held-out stdlib
    modules + held-out exercises, minus anything whose fingerprint the training side has."""
    recipe = recipe_for(budget)
    key = _hash({"v": RECIPE_VERSION, "gen": exercise_generator_tag(), "seed": recipe.seed,
                 "held": heldout_exercises, "train": train_exercises,
                 "pct": HELDOUT_PERCENT})
    root = cache_dir() / "data" / key
    done = root / "split.json"
    if done.exists() and (root / "train" / "dataset").is_dir() and (root / "heldout" / "dataset").is_dir():
        from trl_unittest.data.builder import load_tasks

        meta = json.loads(done.read_text())
        held = load_tasks(root / "heldout" / "dataset")
        return SplitDatasets(train=load_tasks(root / "train" / "dataset"), heldout=held.select(meta["keep"]),
                             info=meta["info"])
    mods = stdlib_modules()
    ex_train = make_exercises("train", train_exercises, seed=recipe.seed + 1)
    ex_held = make_exercises("heldout", heldout_exercises, seed=recipe.seed + 1)

    def sources(split: str, exercises: list[dict[str, str]]) -> list[str]:  # one source label per family
        return ["stdlib:" + ",".join(mods[split]),
                str(write_exercises(root / "src" / f"exercises_{split}", [e for e in exercises
                                                                        if e["family"] == "spelled"])),
                str(write_exercises(root / "src" / f"worded_{split}", [e for e in exercises
                                                                     if e["family"] == "worded"]))]

    train = _build(sources("train", ex_train), root / "train", progress)
    held = _build(sources("heldout", ex_held), root / "heldout", progress)
    # leakage filter: nothing held out may share a fingerprint with the default model's pretraining corpus or any
    # training pair (models trained on more filter further: heldout_for_model)
    default = BUDGETS["small"]
    trained = corpus_fingerprints(stdlib_texts("train", default.corpus_chars))
    trained |= {function_fingerprint(r["reference"], r["entry_point"]) for r in train}
    trained |= {e["fingerprint"] for e in make_exercises("train", default.sft_exercises, seed=recipe.seed)}
    keep = [i for i, r in enumerate(held) if function_fingerprint(r["reference"], r["entry_point"]) not in trained]
    info = {"stdlib_train_modules": len(mods["train"]), "stdlib_heldout_modules": len(mods["heldout"]),
            "train_tasks": len(train), "heldout_tasks_built": len(held), "heldout_tasks": len(keep),
            "heldout_dropped_as_seen": len(held) - len(keep)}
    done.write_text(json.dumps({"keep": keep, "info": info}))
    return SplitDatasets(train=train, heldout=held.select(keep), info=info)


def fresh_exercise_tasks(split: str, data: SplitDatasets, model_dir: str | os.PathLike, count: int = 400,
                         budget: str | CodeModelRecipe = "small", workers: int = 2, progress: bool = False):
    """Builder tasks from ``count`` fresh exercises of one split (``"train"``: new tasks of the shapes and
    vocabulary SFT taught; ``"heldout"``: of the held-out split's) that share no fingerprint with the evaluated
    held-out tasks, the train split's tasks, the split datasets' and SFT's exercises, nor anything the model at
    ``model_dir`` trained on (its ``trained_fingerprints.json``, slip variants included). The RL task set that moves
    held-out pass@1 (benchmarks/RESULTS.md, "A model with a slip habit"). Cached under a hash of the exercises, so
    that trainers compared side by side train on the same tasks (the builder's timing-based filters are not bitwise
    reproducible from run to run)."""
    from trl_unittest.data.builder import BuilderConfig, build_dataset, load_tasks

    if split not in ("train", "heldout"):
        raise ValueError(f"split {split!r}: expected 'train' or 'heldout'")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    recipe = recipe_for(budget)
    taken = {function_fingerprint(r["reference"], r["entry_point"]) for r in data.heldout}
    taken |= {function_fingerprint(r["reference"], r["entry_point"]) for r in data.train}
    taken |= {e["fingerprint"] for e in make_exercises(split, 300 if split == "train" else 150, seed=recipe.seed + 1)}
    # SFT exercises of this recipe and of the default one (a shorter list of one seed is a prefix of a longer one)
    sft = max(recipe.sft_exercises, BUDGETS["small"].sft_exercises)
    taken |= {e["fingerprint"] for e in make_exercises("train", sft, seed=recipe.seed)}
    seen = Path(model_dir) / "trained_fingerprints.json"
    if seen.exists():
        taken |= set(json.loads(seen.read_text()))
    fresh = [e for e in make_exercises(split, 4 * count, seed=recipe.seed + 7) if e["fingerprint"] not in taken]
    if len(fresh) < count:
        logger.warning("fresh_exercise_tasks: %d of the %d exercises asked for are fresh", len(fresh), count)
    fresh = fresh[:count]
    key = hashlib.blake2b("".join(e["fingerprint"] for e in fresh).encode(), digest_size=6).hexdigest()
    root = cache_dir() / "data" / f"fresh-{split}-{key}"
    if (root / "dataset").is_dir():
        return load_tasks(root / "dataset")
    src = write_exercises(root / "src", fresh)
    return build_dataset([str(src)], BuilderConfig(progress=progress, num_workers=workers, shard_size=40),
                         out_dir=root)


def check_disjoint(data: SplitDatasets, recipe: CodeModelRecipe | None = None) -> None:
    """Assert that no held-out task shares a source module or a fingerprint with the training side."""
    recipe = recipe or BUDGETS["small"]
    train_fps = {function_fingerprint(r["reference"], r["entry_point"]) for r in data.train}
    train_fps |= {e["fingerprint"] for e in make_exercises("train", recipe.sft_exercises, seed=recipe.seed)}
    for r in data.heldout:
        assert function_fingerprint(r["reference"], r["entry_point"]) not in train_fps, r["task_id"]
        if r["provenance"]["source"] == "stdlib":
            assert split_of(r["provenance"]["path"].split("/")[0].removesuffix(".py")) == "heldout", r["task_id"]
    for r in data.train:
        if r["provenance"]["source"] == "stdlib":
            assert split_of(r["provenance"]["path"].split("/")[0].removesuffix(".py")) == "train", r["task_id"]


def ensure_code_model(budget: str | CodeModelRecipe = "small", rebuild: bool = False, progress: bool = True,
                      train_tasks: Any = None, device: str = "cpu") -> str:
    """The cached trained model's folder for a budget/recipe; trained (tokenizer, pretraining, SFT) when missing,
    on ``device``. ``train_tasks``: builder tasks of train sources added to SFT (default: the cached train split)."""
    recipe = recipe_for(budget)
    out = cache_dir() / "models" / f"code-{recipe.arch}-{recipe.key()}"
    if (out / "trl_unittest_model.json").exists() and not rebuild:
        return str(out)
    if train_tasks is None:
        train_tasks = build_split_datasets(recipe, progress=progress).train
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    train_code_model(tmp, recipe, train_tasks, progress=progress, device=device)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.replace(out)
    return str(out)


def heldout_for_model(heldout: Any, model_dir: str | os.PathLike) -> tuple[Any, int]:
    """``heldout`` minus the tasks whose fingerprint the model at ``model_dir`` trained on (its
    ``trained_fingerprints.json``; a folder without one filters nothing), and how many were dropped."""
    f = Path(model_dir) / "trained_fingerprints.json"
    if not f.exists():
        return heldout, 0
    seen = set(json.loads(f.read_text()))
    keep = [i for i, r in enumerate(heldout) if function_fingerprint(r["reference"], r["entry_point"]) not in seen]
    return heldout.select(keep), len(heldout) - len(keep)


def model_figures(path: str | os.PathLike) -> dict[str, Any]:
    f = Path(path) / "trl_unittest_model.json"
    return json.loads(f.read_text()) if f.exists() else {}


# --------------------------------------------------------------------------------------------------- CLI
def add_model_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("model", help="train (or find in the cache) the small code model built offline")
    p.add_argument("--budget", default="small", choices=sorted(BUDGETS))
    p.add_argument("--rebuild", action="store_true", help="retrain even if a cached checkpoint exists")
    p.add_argument("--device", default="cpu", help="torch device to train on (e.g. cuda: bf16 autocast)")
    p.set_defaults(func=run_model)
    return p


def run_model(args: argparse.Namespace) -> int:
    path = ensure_code_model(args.budget, rebuild=args.rebuild, device=args.device)
    print(json.dumps({"model": path, **model_figures(path)}), file=sys.stdout)
    return 0


if __name__ == "__main__":  # python -m trl_unittest.models --budget small
    parser = argparse.ArgumentParser(prog="python -m trl_unittest.models")
    parser.add_argument("--budget", default="small", choices=sorted(BUDGETS))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--device", default="cpu")
    sys.exit(run_model(parser.parse_args()))
