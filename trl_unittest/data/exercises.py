"""The synthetic exercises: a task source of small documented functions, and the one-token slips of their bodies.

:func:`make_exercises` draws one-line functions on ints, strings and lists, each put on the train or held-out side
by the hash of its normalised AST (:func:`trl_unittest.data.split.split_of`), so the two sides share no shape; the
dataset builder turns them into tasks like any other source (:func:`write_exercises`, :func:`fresh_exercise_tasks`).

**Honesty**: most exercises are deliberately easy (the docstring states the expression, e.g. ``Return (a + b) *
c.``); a held-out exercise is solvable by composing what was learned, not by recall. One exercise in five is
described in words only (``Return the sum of the squares of the items of xs that are even and greater than 3.``):
filters, a transform and an aggregate, held-out ones being combinations that no train one has (source
``worded_heldout``).

:func:`buggy_body` / :func:`slipped_bodies` give a body with one slip (a comparison, operator, boolean or number
off), for the small model's SFT with an error habit (``CodeModelRecipe.sft_bug_rate``). Written by hand: the point
is a controlled, seeded generator whose shapes the split can hash, which no library provides.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

from trl_unittest.cache import cache_dir, cache_key
from trl_unittest.data.split import function_fingerprint, split_of

if TYPE_CHECKING:
    from trl_unittest.data.split import SplitDatasets
    from trl_unittest.models import CodeModelRecipe

logger = logging.getLogger(__name__)

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
    return cache_key([make_exercises(split, 40, seed=0) for split in ("train", "heldout")])


def write_exercises(folder: str | os.PathLike, exercises: list[dict[str, str]], per_file: int = 25) -> Path:
    """Write exercises as Python modules (sources for the dataset builder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(exercises), per_file):
        chunk = exercises[i: i + per_file]
        (folder / f"exercises_{i // per_file:03d}.py").write_text("\n\n".join(e["prompt"] + e["body"] for e in chunk))
    return folder


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


def fresh_exercise_tasks(split: str, data: SplitDatasets, model_dir: str | os.PathLike, count: int = 400,
                         budget: str | CodeModelRecipe = "small", workers: int = 2, progress=False):
    """Builder tasks from ``count`` fresh exercises of one split (``"train"``: new tasks of the shapes and
    vocabulary SFT taught; ``"heldout"``: of the held-out split's) that share no fingerprint with the evaluated
    held-out tasks, the train split's tasks, the split datasets' and SFT's exercises, nor anything the model at
    ``model_dir`` trained on (its ``trained_fingerprints.json``, slip variants included). The RL task set that moves
    held-out pass@1 (benchmarks/RESULTS.md, "A model with a slip habit"). Cached under a hash of the exercises, so
    that trainers compared side by side train on the same tasks (the builder's timing-based filters are not bitwise
    reproducible from run to run). ``progress``: bars, none (False), or a factory ``what -> logger`` of line
    loggers called as ``(files done, files, kept=...)``."""
    from trl_unittest.data.builder import build_dataset, load_tasks
    from trl_unittest.data.split import recipe_builder_config
    from trl_unittest.models import BUDGETS, recipe_for

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
    lines = progress(f"RL tasks from {len(fresh)} fresh exercises (files)") if callable(progress) else None
    cfg = recipe_builder_config(progress=bool(progress) and lines is None, num_workers=workers, shard_size=40)
    return build_dataset([str(src)], cfg, out_dir=root, lines=lines)
