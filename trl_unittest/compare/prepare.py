"""The shared inputs of a comparison, made once and written to ``OUT/inputs/``: the starting model, the held-out
tasks and the RL task sets, so that every method and seed (and the PPO process) reads exactly the same ones."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trl_unittest.compare.config import CompareConfig
from trl_unittest.usage import library_progress_bars


@dataclass
class Inputs:
    model: str  # a folder or a Hub name
    heldout: str  # folder of a saved task dataset
    rl_tasks: dict[str, str]  # "default" (and "with_mined") -> folder of a saved task dataset
    info: dict[str, Any]


def mined_tasks(specs: list[str], heldout, workers: int = 2, progress: bool = False):
    """Builder tasks mined from other code (``dist:NAME``, folders: the paper's setting, real functions that SFT
    never saw), minus any whose fingerprint a held-out task has; (tasks, how many were dropped). Cached under a hash
    of the specs, so that runs side by side train on the same tasks."""
    from trl_unittest.cache import cache_dir
    from trl_unittest.data.builder import BuilderConfig, build_dataset, load_tasks

    config = BuilderConfig(progress=progress, num_workers=workers)
    # the key covers what decides the tasks: the specs and the builder's settings (not how it runs), so that tasks
    # built under other defaults (undeclared exceptions were tested before 2026-12-08) are not reused
    settings = {k: v for k, v in asdict(config).items() if k not in ("progress", "num_workers", "static_workers",
                                                                       "sandbox", "batch_size", "shard_size")}
    key = hashlib.blake2b(json.dumps([specs, settings], sort_keys=True, default=str).encode(),
                          digest_size=6).hexdigest()
    root = cache_dir() / "data" / f"mined-{key}"
    built = load_tasks(root / "dataset") if (root / "dataset").is_dir() else \
        build_dataset(specs, config, out_dir=root)
    return without_heldout(built, heldout)


def without_heldout(tasks, heldout):
    """``tasks`` minus any whose function a held-out task has (same fingerprint): (tasks, how many were dropped)."""
    from trl_unittest.data.split import function_fingerprint

    held = {function_fingerprint(r["reference"], r["entry_point"]) for r in heldout}
    keep = [i for i, r in enumerate(tasks) if function_fingerprint(r["reference"], r["entry_point"]) not in held]
    return tasks.select(keep), len(tasks) - len(keep)


def prepare_inputs(config: CompareConfig, variants: dict[str, dict[str, Any]], out: Path, console=None) -> Inputs:
    """Build (or find in ``out/inputs``) the model and the task sets every run shares. Found inputs that lack the
    set a variant needs (``ac_with_mined``'s, when the ablations run into the folder of a comparison without it, as
    ``benchmarks/compare.sh`` does) get it added, from the same model, RL tasks and held-out tasks."""
    from transformers import AutoTokenizer

    from trl_unittest.data.builder import load_tasks
    from trl_unittest.evaluation import load_task_source
    from trl_unittest.quickstart import spread

    root = out / "inputs"
    done = root / "inputs.json"
    say = console.print if console is not None else (lambda *a, **k: None)
    wants_mined = any(v.get("rl_tasks") == "with_mined" for v in variants.values())
    if done.exists():
        inputs = Inputs(**json.loads(done.read_text()))
        if wants_mined and "with_mined" not in inputs.rl_tasks:
            tokenizer = AutoTokenizer.from_pretrained(inputs.model)
            mined = _with_mined(config, load_tasks(inputs.rl_tasks["default"]), load_tasks(inputs.heldout),
                                inputs.info, say)
            inputs.rl_tasks["with_mined"] = _save_rl_set("with_mined", mined, tokenizer,
                                                         _prompt_room(inputs.model, config), root, inputs.info)
            done.write_text(json.dumps(inputs.__dict__, indent=1))
        return inputs
    model = config.model_name_or_path
    budget = model.split(":", 1)[1] if model.startswith("quickstart:") else "small"
    data = None
    if model.startswith("quickstart:") or config.heldout == "quickstart" or config.rl_tasks in ("fresh", "train"):
        from trl_unittest.data.split import build_split_datasets

        say("inputs: the quickstart's task split (stdlib + exercises; cached)")
        data = build_split_datasets(budget, progress=config.progress)
    if model.startswith("quickstart:"):
        from trl_unittest.models import ensure_code_model

        say(f"inputs: the small code model '{budget}' (cached)")
        model = ensure_code_model(budget, train_tasks=data.train, progress=config.progress)
    tokenizer = AutoTokenizer.from_pretrained(model)
    info: dict[str, Any] = {"model": model}
    if config.heldout == "quickstart":
        from trl_unittest.data.split import heldout_for_model

        heldout, info["heldout_dropped_as_trained_on"] = heldout_for_model(data.heldout, model)
    else:
        heldout = load_task_source(config.heldout)
    heldout = spread(heldout, config.heldout_tasks) if config.heldout_tasks else heldout
    if config.rl_tasks == "fresh":
        from trl_unittest.data.exercises import fresh_exercise_tasks

        say(f"inputs: RL tasks from {config.fresh_count} fresh train-split exercises (cached)")
        rl = fresh_exercise_tasks("train", data, model, config.fresh_count, budget=budget, workers=config.workers,
                                  progress=config.progress)
    else:
        rl = data.train if config.rl_tasks == "train" else load_task_source(config.rl_tasks)
    fit = _prompt_room(model, config)
    sets = {"default": rl}
    if wants_mined:
        sets["with_mined"] = _with_mined(config, rl, heldout, info, say)
    paths = {name: _save_rl_set(name, ds, tokenizer, fit, root, info) for name, ds in sets.items()}
    info["heldout_tasks"] = len(heldout)
    with library_progress_bars(False):  # a "Saving the dataset" bar for a small file
        heldout.save_to_disk(str(root / "heldout"))
    load_tasks(root / "heldout")  # fails here, not in every run, if the saved set cannot be read back
    inputs = Inputs(model=str(model), heldout=str(root / "heldout"), rl_tasks=paths, info=info)
    done.write_text(json.dumps(inputs.__dict__, indent=1))
    return inputs


def _prompt_room(model: str, config: CompareConfig) -> int:
    """Prompt tokens that leave room for ``max_completion_length`` in the model's context."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(model)
        max_positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
    except (OSError, ValueError):
        max_positions = 2048
    return max_positions - config.max_completion_length


def _with_mined(config: CompareConfig, rl, heldout, info: dict[str, Any], say):
    """The RL tasks plus the tasks mined from ``mined_sources`` (minus held-out functions): ``ac_with_mined``'s set."""
    import datasets

    say(f"inputs: tasks mined from {', '.join(config.mined_sources)} (cached)")
    mined, info["mined_dropped_as_heldout"] = mined_tasks(config.mined_sources, heldout, config.workers,
                                                          config.progress)
    info["mined_tasks"] = len(mined)
    if len(mined) < 0.05 * len(rl):  # e.g. 9 tasks from four small distributions next to ~1,100 (2026-12-07)
        say(f"[yellow]warning: mined_sources gave {len(mined)} tasks beside {len(rl)} RL tasks: too few for "
            f"ac_with_mined to differ from actor_critic; add sources (e.g. dist:sympy, dist:networkx)[/]")
    return datasets.concatenate_datasets([rl, mined.cast(rl.features)])


def _save_rl_set(name: str, ds, tokenizer, fit: int, root: Path, info: dict[str, Any]) -> str:
    """``ds`` without the tasks whose prompt does not fit ``fit`` tokens (counted in ``info``), saved under
    ``root/rl_NAME``; its path."""
    from trl_unittest.quickstart import fit_prompts

    before = len(ds)
    ds = fit_prompts(ds, tokenizer, fit)
    info[f"rl_tasks_{name}"] = len(ds)
    info[f"rl_tasks_{name}_dropped_too_long"] = before - len(ds)
    if len(ds) == 0:
        raise ValueError(f"no RL task ({name}) has a prompt that fits {fit} tokens")
    path = root / f"rl_{name}"
    with library_progress_bars(False):  # "Map" and "Saving the dataset" bars for a few small files
        ds.save_to_disk(str(path))
    return str(path)
