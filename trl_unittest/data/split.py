"""The leakage-free train / held-out split that the small model is measured on (evaluation hygiene).

The standard library's top-level modules are split by a hash of the module name into *train* and *held-out*
(:func:`split_of`, about 30 % held out); the synthetic exercises of :mod:`trl_unittest.data.exercises` are split by
a hash of each function's normalised AST (names of the function and its arguments erased), so every expression
*shape* lands on one side only. Held-out tasks come from modules / shapes that neither the small model's tokenizer,
pretraining nor SFT saw, and :func:`build_split_datasets` additionally drops every held-out task whose
normalised-AST fingerprint (function renamed to ``f``: :func:`function_fingerprint`) equals that of any function in
the default model's pretraining corpus or in the SFT / RL training tasks. :func:`check_disjoint` asserts it. A model
trained on more (the GPU-sized ``medium`` recipe pretrains on every train module) records the fingerprints of
everything it saw in ``trained_fingerprints.json``, and :func:`heldout_for_model` drops those too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from trl_unittest.cache import cache_dir, cache_key

if TYPE_CHECKING:
    from trl_unittest.models import CodeModelRecipe

logger = logging.getLogger(__name__)

HELDOUT_PERCENT = 30


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


@dataclass
class SplitDatasets:
    train: Any  # datasets.Dataset of tasks from train sources
    heldout: Any  # datasets.Dataset of tasks from held-out sources, disjoint from everything trained on
    info: dict[str, Any] = field(default_factory=dict)


def recipe_builder_config(**settings):
    """The builder's settings for the quickstart recipe's tasks (this split, the fresh RL exercises): the builder of
    RECIPE_VERSION 8, which they and every figure recorded on them come from, i.e. undeclared exceptions kept as
    tests; the next recipe version drops this pin. ``settings``: how it runs (progress, workers, shards)."""
    from trl_unittest.data.builder import BuilderConfig

    return BuilderConfig(keep_undeclared_exceptions=True, **settings)


def _build(sources: list[str], out: Path, progress):
    from trl_unittest.data.builder import build_dataset, load_tasks
    from trl_unittest.usage import library_progress_bars

    if (out / "dataset").is_dir():
        return load_tasks(out / "dataset")
    # progress: bars (True), nothing (False), or a factory of line loggers (``what -> (done, total, **extra)``)
    lines = progress(f"datasets, {out.name} sources (files)") if callable(progress) else None
    cfg = recipe_builder_config(progress=bool(progress) and lines is None, num_workers=2, shard_size=40)
    for attempt in range(3):
        try:
            with library_progress_bars(cfg.progress):
                return build_dataset(sources, cfg, out_dir=out, lines=lines)
        except SystemError as e:  # CPython 3.11 gh-106905 surfacing from execution.values.decode_value: finished
            if attempt == 2:     # shards are kept, so a rerun resumes after them
                raise
            logger.warning("builder hit %r; resuming", e)


def build_split_datasets(budget: str | CodeModelRecipe = "small", heldout_exercises: int = 150,
                         train_exercises: int = 300, progress=True) -> SplitDatasets:
    """Builder task datasets (cached): train = train stdlib modules + train exercises; held-out = held-out stdlib
    modules + held-out exercises, minus anything whose fingerprint the training side has. ``progress``: bars, none
    (False), or a factory ``what -> logger`` of line loggers called as ``(files done, files, kept=...)``."""
    from trl_unittest.data.exercises import exercise_generator_tag, make_exercises, write_exercises
    from trl_unittest.models import BUDGETS, RECIPE_VERSION, recipe_for

    recipe = recipe_for(budget)
    key = cache_key({"v": RECIPE_VERSION, "gen": exercise_generator_tag(), "seed": recipe.seed,
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


def check_disjoint(data: SplitDatasets, recipe: CodeModelRecipe | None = None) -> None:
    """Assert that no held-out task shares a source module or a fingerprint with the training side."""
    from trl_unittest.data.exercises import make_exercises
    from trl_unittest.models import BUDGETS

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


def heldout_for_model(heldout: Any, model_dir: str | os.PathLike) -> tuple[Any, int]:
    """``heldout`` minus the tasks whose fingerprint the model at ``model_dir`` trained on (its
    ``trained_fingerprints.json``; a folder without one filters nothing), and how many were dropped."""
    f = Path(model_dir) / "trained_fingerprints.json"
    if not f.exists():
        return heldout, 0
    seen = set(json.loads(f.read_text()))
    keep = [i for i, r in enumerate(heldout) if function_fingerprint(r["reference"], r["entry_point"]) not in seen]
    return heldout.select(keep), len(heldout) - len(keep)
