"""Evaluation: sample n completions per task, run them against the task's tests in the sandboxed pool, report
unbiased pass@k per task and overall, and write one jsonl row per task.

Completion-style, as in Codex/HumanEval practice: the program is ``prompt + completion`` and a completion is cut
at its first non-blank line that starts at column 0 (a new top-level statement), or at EOS.

    >>> report = evaluate_model("path/to/model", "humaneval", n=10, k=(1, 10), out_jsonl="he.jsonl")
    >>> report.pass_at_k
    {'pass@1': ..., 'pass@10': ...}

``tasks`` may be a task ``datasets.Dataset``, a list of :class:`~trl_unittest.tasks.Task`, or a spec understood by
:func:`load_task_source`: ``"humaneval"``, ``"mbpp"`` / ``"mbpp:SPLIT"`` (local copy), ``"mbpp:PATH[:SPLIT]"``, or
the output of ``trl-unittest build`` (its folder, ``dataset/`` folder, ``.parquet`` or ``.jsonl``). Generation uses
``transformers``' batched ``generate`` (left padding); vLLM is used only when it is installed and asked for.
``model`` may also be any callable ``(prompts, n) -> list of n completions per prompt``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from trl_unittest.code import cut_generation, truncate_completion  # noqa: F401 (truncate_completion: re-exported)
from trl_unittest.rewards import outcome_metrics, pass_at_k


# -------------------------------------------------------------------------------------------- task sources
def load_task_source(spec: Any):
    """A task dataset from a spec (see the module docstring), a Dataset or a list of Task."""
    from datasets import Dataset

    from trl_unittest.tasks import Task, to_dataset

    if isinstance(spec, Dataset):
        return spec
    if isinstance(spec, (list, tuple)) and spec and isinstance(spec[0], Task):
        return to_dataset(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"tasks must be a Dataset, a list of Task or a spec string, got {type(spec).__name__}")
    spec = str(spec)
    from trl_unittest.usage import check_task_columns, check_task_spec

    check_task_spec(spec, flag="tasks")  # a misspelt split or a missing path is one line, not five Hub retries
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # "Generating train split" bars for a local file are noise
    try:
        ds = _load_spec(spec)
    finally:
        if bars:
            datasets.enable_progress_bars()
    return check_task_columns(ds, spec, flag="tasks")


def _load_spec(spec: str):
    if spec == "humaneval":
        from trl_unittest.data.loaders import load_humaneval

        return load_humaneval()
    if spec == "mbpp" or spec.startswith("mbpp:"):
        from trl_unittest.data.loaders import MBPP_SPLITS, load_mbpp

        parts = spec.split(":")[1:]
        split = parts.pop() if parts and parts[-1] in (*MBPP_SPLITS, "all") else "test"
        path = ":".join(parts) or None
        return load_mbpp(path, split=split)
    from trl_unittest.data.builder import load_tasks

    path = Path(spec)
    if path.is_dir() and (path / "dataset").is_dir():  # a `trl-unittest build --out` folder
        path = path / "dataset"
    if not path.exists():
        raise FileNotFoundError(f"no task dataset at {spec!r}: expected 'humaneval', 'mbpp[:split]', "
                                f"'mbpp:PATH[:split]', a build folder, a .parquet or a .jsonl file")
    from trl_unittest.usage import UsageError, quiet_datasets_log, root_message

    try:
        with quiet_datasets_log():
            return load_tasks(path)
    except Exception as e:  # noqa: BLE001 (the user's file is not a task dataset: say so in one line)
        if path.is_file() and path.suffix == ".jsonl":
            _check_jsonl(path, spec)  # names the line that is not a record (read only when datasets refused it)
        raise UsageError(f"tasks {spec}: not a task dataset ({root_message(e)}): expected a `trl-unittest build` "
                         f"folder, or a .parquet or .jsonl file of task records") from e


def _check_jsonl(path: Path, spec: str) -> None:
    """A .jsonl task file that ``datasets`` refused: the line that is not a JSON object is named, or the file is
    empty (``datasets`` says only "JSON parse error ... in row N" of its own blocks, or "no data")."""
    from trl_unittest.usage import UsageError

    rows = 0
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UsageError(f"tasks {spec}: line {number} is not JSON ({e.msg}): one task record per "
                                     f"line") from None
                if not isinstance(row, dict):
                    raise UsageError(f"tasks {spec}: line {number} is a JSON {type(row).__name__}, not a task record "
                                     f"(an object with prompt, entry_point and tests)")
                rows += 1
    except UnicodeDecodeError as e:
        raise UsageError(f"tasks {spec}: not UTF-8 text ({e.reason} at byte {e.start}): expected a .jsonl file of task "
                         f"records") from None
    if rows == 0:
        raise UsageError(f"tasks {spec}: no task records in it (an empty file)")


# ---------------------------------------------------------------------------------------------- generation
def resolve_device(device: str | None = "auto") -> str:
    """"auto" (or None): cuda when torch sees a GPU, else cpu; anything else must name a torch device."""
    from trl_unittest.usage import check_device

    return check_device(device)  # also: "cuda" where torch sees no GPU is a UsageError (a ValueError)


def _load_model(model: Any, tokenizer: Any = None, device: str | None = "auto"):
    """A model given by path (or Hub name) is loaded onto ``device`` (on a GPU in the checkpoint's own dtype, on a
    CPU in float32); a model object stays where it is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(model, (str, os.PathLike)):
        device = resolve_device(device)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
        kwargs = {"dtype": "auto"} if device.startswith("cuda") else {}
        model = AutoModelForCausalLM.from_pretrained(str(model), **kwargs).to(device)
    elif tokenizer is None:
        path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
        if not path:
            raise ValueError("pass tokenizer= with an in-memory model")
        tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def generate_completions(model: Any, prompts: Sequence[str], n: int = 1, temperature: float = 0.8,
                         top_p: float = 0.95, max_new_tokens: int = 128, batch_size: int = 16, tokenizer: Any = None,
                         seed: int = 0, progress: bool = True, use_vllm: bool = False,
                         device: str | None = "auto") -> list[list[str]]:
    """n completions per prompt, each cut where it ends (:func:`trl_unittest.code.cut_generation`: a function body
    at its first top-level line, a whole answer kept whole). Greedy when ``temperature == 0`` (one generation,
    repeated n times). ``device``: where a model given by path is loaded ("auto": a GPU if any)."""
    if callable(model) and not hasattr(model, "generate"):
        raw = model(list(prompts), n)
        return [[cut_generation(c, not p.endswith("\n"))[0] for c in cs] for p, cs in zip(prompts, raw)]
    if use_vllm:
        return _generate_vllm(model, prompts, n, temperature, top_p, max_new_tokens, seed)
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    model, tokenizer = _load_model(model, tokenizer, device)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    sample = temperature > 0
    copies = n if sample else 1
    jobs = [i for i in range(len(prompts)) for _ in range(copies)]
    jobs.sort(key=lambda i: len(prompts[i]))  # similar lengths per batch: less padding
    max_pos = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 2048)
    keep = max(8, max_pos - max_new_tokens)
    out: list[list[str]] = [[] for _ in prompts]
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()

    class _TopLevelStop(StoppingCriteria):
        def __init__(self, start: int, continues: list[bool]):
            self.start, self.continues = start, continues

        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
            return torch.tensor([cut_generation(t, c)[1] for t, c in zip(texts, self.continues)],
                                device=input_ids.device)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="generating", unit="sample", leave=False)
    try:
        for b in range(0, len(jobs), batch_size):
            idx = jobs[b: b + batch_size]
            texts = [prompts[i] for i in idx]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            if enc["input_ids"].shape[1] > keep:  # left-truncate long prompts to fit the context window
                enc = {k: v[:, -keep:] for k, v in enc.items()}
            enc = {k: v.to(model.device) for k, v in enc.items()}
            start = enc["input_ids"].shape[1]
            continues = [not t.endswith("\n") for t in texts]
            kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p) if sample else dict(do_sample=False)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     stopping_criteria=StoppingCriteriaList([_TopLevelStop(start, continues)]),
                                     **kwargs)
            decoded = tokenizer.batch_decode(gen[:, start:], skip_special_tokens=True)
            for i, text, c in zip(idx, decoded, continues):
                out[i].append(cut_generation(text, c)[0])
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
        if was_training:
            model.train()
    if not sample:
        out = [cs * n for cs in out]
    return out


def _generate_vllm(model: Any, prompts, n, temperature, top_p, max_new_tokens, seed) -> list[list[str]]:
    """vLLM path (only when ``import vllm`` works): stop strings approximate the column-0 cut, which is then
    applied exactly."""
    from vllm import LLM, SamplingParams  # noqa: PLC0415 (optional dependency)

    llm = model if isinstance(model, LLM) else LLM(model=str(model), seed=seed)
    sample = temperature > 0
    # greedy: one generation repeated n times, as on the transformers path (vLLM rejects n > 1 when greedy in
    # several releases)
    params = SamplingParams(n=n if sample else 1, temperature=temperature if sample else 0.0,
                            top_p=top_p if sample else 1.0, max_tokens=max_new_tokens,
                            stop=["\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#"])
    results = llm.generate(list(prompts), params)
    if len(results) != len(prompts):
        raise RuntimeError(f"vLLM returned {len(results)} results for {len(prompts)} prompts")
    out = [[cut_generation(o.text, not p.endswith("\n"))[0] for o in r.outputs] for p, r in zip(prompts, results)]
    return out if sample else [cs[:1] * n for cs in out]


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 (any import failure means: not usable here)
        return False
    return True


# ---------------------------------------------------------------------------------------------- reporting
@dataclass
class EvalReport:
    """Overall pass@k (mean over tasks of the unbiased estimator), pass@k per source, outcome rates, and one row
    per task (``rows``; written as jsonl)."""

    pass_at_k: dict[str, float]
    num_tasks: int
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    by_source: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"pass_at_k": self.pass_at_k, "num_tasks": self.num_tasks, "num_samples": self.num_samples,
                "metrics": self.metrics, "by_source": self.by_source, "seconds": round(self.seconds, 2)}

    def write_jsonl(self, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row) + "\n")

    def table(self, title: str = "evaluation"):
        from rich.table import Table

        ks = list(self.pass_at_k)
        t = Table(title=f"{title}: {self.num_tasks} tasks x {self.num_samples} samples")
        t.add_column("source")
        t.add_column("tasks", justify="right")
        for k in ks:
            t.add_column(k, justify="right")
        for source, vals in sorted(self.by_source.items()):
            t.add_row(source, str(int(vals["tasks"])), *(f"{vals[k]:.3f}" for k in ks))
        t.add_row("[bold]all[/bold]", str(self.num_tasks), *(f"[bold]{self.pass_at_k[k]:.3f}[/bold]" for k in ks))
        return t


def _source(task_id: str, provenance: dict | None) -> str:
    src = (provenance or {}).get("source") or task_id.split("/")[0]
    return str(src)


def evaluate_completions(tasks: Any, completions: Sequence[Sequence[str]], k: Iterable[int] = (1, 10),
                         pool: Any = None, out_jsonl: str | os.PathLike | None = None, progress: bool = False,
                         sandbox: str = "auto", unverified: str = "fail") -> EvalReport:
    """Run given completions (``completions[i]``: the samples of task i) through the executor and report pass@k.
    ``k`` values larger than the number of samples of some task are dropped. ``pool``: an ``ExecutionPool`` or any
    other ``Executor`` (e.g. ``RayExecutor``); by default a local pool is started and closed here. ``unverified``:
    what a test without a verdict counts as (``fail``, ``exclude``, ``count``; see ``UnitTestReward``)."""
    from trl_unittest.execution import ExecutionPool
    from trl_unittest.rewards import UnitTestReward

    t0 = time.perf_counter()
    ds = load_task_source(tasks)
    if len(completions) != len(ds):
        raise ValueError(f"got completions for {len(completions)} tasks, the dataset has {len(ds)}")
    for i, cs in enumerate(completions):
        if isinstance(cs, (str, bytes)) or not isinstance(cs, Sequence):
            raise TypeError(f"completions[{i}] must be a list of the task's samples (strings or chat messages), "
                            f"got {type(cs).__name__}")
    counts = [len(c) for c in completions]
    if not counts or min(counts) < 1:
        raise ValueError("every task needs at least one completion")
    k = list(k)
    if not k or any(isinstance(x, bool) or int(x) != x or x < 1 for x in k):
        raise ValueError(f"k must be whole numbers >= 1, got {k}")
    ks = sorted({int(x) for x in k if int(x) <= min(counts)})
    if not ks:
        raise ValueError(f"no k in {list(k)} is <= the number of samples per task ({min(counts)})")
    if len(ks) < len(set(k)):
        warnings.warn(f"pass@k left out for k = {sorted({int(x) for x in k} - set(ks))}: some task has only "
                      f"{min(counts)} samples", stacklevel=2)
    cols: dict[str, list[Any]] = defaultdict(list)
    prompts, flat = [], []
    for row, cs in zip(ds, completions):
        for c in cs:
            prompts.append(row["prompt"])
            flat.append(c)
            for name in ("tests", "entry_point", "context", "test_setup", "reference_runtime"):
                cols[name].append(row.get(name))
    own_pool = pool is None
    pool = pool or ExecutionPool(sandbox=sandbox)
    try:
        reward = UnitTestReward(pool=pool, scheme="binary", unverified=unverified)
        results = pool.run_batch(reward.programs(prompts, flat, **cols), progress=progress, desc="executing")
        results = [r.counted(unverified) for r in results]
    finally:
        if own_pool:
            pool.close()
    rows, pos = [], 0
    per_source: dict[str, list[dict]] = defaultdict(list)
    for row, cs in zip(ds, completions):
        rs = results[pos: pos + len(cs)]
        pos += len(cs)
        c = sum(r.all_passed for r in rs)
        out = {"task_id": row["task_id"], "source": _source(row["task_id"], row.get("provenance")), "n": len(cs),
               "correct": c}
        out.update({f"pass@{x}": pass_at_k(len(cs), c, x) for x in ks})
        out["completions"] = list(cs)
        out["passed"] = [r.all_passed for r in rs]
        out["status"] = [r.status if r.status != "ran" else f"{r.passed}/{r.total}" for r in rs]
        rows.append(out)
        per_source[out["source"]].append(out)
    overall = {f"pass@{x}": math.fsum(r[f"pass@{x}"] for r in rows) / len(rows) for x in ks}
    by_source = {s: {"tasks": float(len(rs)), **{f"pass@{x}": math.fsum(r[f"pass@{x}"] for r in rs) / len(rs)
                                                 for x in ks}} for s, rs in per_source.items()}
    report = EvalReport(pass_at_k=overall, num_tasks=len(rows), num_samples=min(counts),
                        metrics=outcome_metrics(results), by_source=by_source, rows=rows,
                        seconds=time.perf_counter() - t0)
    if out_jsonl is not None:
        report.write_jsonl(out_jsonl)
    return report


def evaluate_model(model: Any, tasks: Any, n: int = 10, k: Iterable[int] = (1, 10), temperature: float = 0.8,
                   top_p: float = 0.95, max_new_tokens: int = 128, batch_size: int = 16, pool: Any = None,
                   out_jsonl: str | os.PathLike | None = None, tokenizer: Any = None, seed: int = 0,
                   progress: bool | Callable[[int, int], None] = True, use_vllm: bool | None = None,
                   sandbox: str = "auto", device: str | None = "auto", unverified: str = "fail") -> EvalReport:
    """Sample ``n`` completions per task from ``model`` (a path, a ``transformers`` model with ``tokenizer``, a vLLM
    ``LLM``, or a callable ``(prompts, n) -> completions``), execute them, and report pass@k.

    ``use_vllm``: None uses vLLM when it is importable and ``model`` is a path or a vLLM ``LLM``; False never
    does. ``device``: where a model given by path is loaded ("auto": a GPU if torch sees one, else the CPU).
    ``progress``: a bar, nothing (False), or a callable ``(tasks done, tasks)`` called as groups finish.

    Tasks run in groups (similar prompt lengths, about ``4 x batch_size`` samples each), each sampled with a seed
    of its own. With ``out_jsonl``, every task's row is appended to ``OUT.partial`` as its group finishes; a run
    interrupted (Ctrl-C: :class:`~trl_unittest.usage.Interrupted`) and started again with the same arguments skips
    the finished groups and ends with the same result. ``OUT.partial`` is removed once ``OUT`` is written."""
    from trl_unittest.usage import Interrupted

    ds = load_task_source(tasks)
    t0 = time.perf_counter()
    if use_vllm is None:
        use_vllm = (isinstance(model, (str, os.PathLike)) or type(model).__module__.split(".")[0] == "vllm") \
            and vllm_available()
    prompts = list(ds["prompt"])
    order = sorted(range(len(ds)), key=lambda i: len(prompts[i]))  # similar lengths per group: less padding
    per_group = max(1, math.ceil(max(4 * batch_size, 64) / n))
    groups = [order[j: j + per_group] for j in range(0, len(order), per_group)]
    partial = None
    if out_jsonl is not None:
        settings = {"model": _model_name(model), "tasks": _tasks_fingerprint(ds), "n": n, "temperature": temperature,
                    "top_p": top_p, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "seed": seed,
                    "group_size": per_group, "unverified": unverified}
        partial = _PartialResults(Path(str(out_jsonl) + ".partial"), settings)
    done = partial.load() if partial is not None else {}
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ds), desc="evaluating", unit="task", leave=False)
    tasks_done = sum(len(groups[g]) for g in done if g < len(groups))
    if bar is not None:
        bar.update(tasks_done)
    own_pool = pool is None and len(done) < len(groups)
    if own_pool:
        from trl_unittest.execution import ExecutionPool

        pool = ExecutionPool(sandbox=sandbox)
    loaded = False
    try:
        for g, idx in enumerate(groups):
            if g in done:
                continue
            if not loaded:  # once, and only when something is left to sample
                model, tokenizer, loaded = *_load_for_sampling(model, tokenizer, device, use_vllm, seed), True
            sub = ds.select(idx)
            completions = generate_completions(model, [prompts[i] for i in idx], n=n, temperature=temperature,
                                               top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                               tokenizer=tokenizer, seed=seed * 100_003 + g, progress=False,
                                               use_vllm=use_vllm, device=device)
            rep = evaluate_completions(sub, completions, k=k, pool=pool, progress=False, sandbox=sandbox,
                                       unverified=unverified)
            done[g] = (rep.rows, len(idx) * n, rep.metrics)
            if partial is not None:
                partial.append(g, *done[g])
            tasks_done += len(idx)
            if bar is not None:
                bar.update(len(idx))
            elif callable(progress):
                progress(tasks_done, len(ds))
    except KeyboardInterrupt:
        if partial is None:
            raise Interrupted("interrupted: nothing kept (give out_jsonl / --out to keep results as tasks finish)") \
                from None
        raise Interrupted(f"interrupted: {tasks_done} of {len(ds)} tasks kept in {partial.path}: run the same "
                          f"command again to resume") from None
    finally:
        if bar is not None:
            bar.close()
        if own_pool:
            pool.close()
    rows: list[dict[str, Any]] = [{} for _ in range(len(ds))]
    for g, idx in enumerate(groups):
        for i, row in zip(idx, done[g][0]):
            rows[i] = row
    report = _report_from_rows(rows, k, [done[g][1:] for g in range(len(groups))])
    report.seconds = time.perf_counter() - t0
    if out_jsonl is not None:
        report.write_jsonl(out_jsonl)
        partial.path.unlink(missing_ok=True)
    return report


def _model_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(name or getattr(model, "__qualname__", type(model).__name__))


def _tasks_fingerprint(ds) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    for task_id, prompt in zip(ds["task_id"], ds["prompt"]):
        h.update(f"{task_id}\0{prompt}\0".encode())
    return h.hexdigest()


def _load_for_sampling(model: Any, tokenizer: Any, device: str | None, use_vllm: bool, seed: int):
    """A model given by path, loaded once for all groups (vLLM: one ``LLM``)."""
    if not isinstance(model, (str, os.PathLike)):
        return model, tokenizer
    if use_vllm:
        from vllm import LLM  # noqa: PLC0415 (optional dependency)

        return LLM(model=str(model), seed=seed), tokenizer
    return _load_model(model, tokenizer, device)


def _report_from_rows(rows: list[dict[str, Any]], k: Iterable[int], groups: list[tuple[int, dict]]) -> EvalReport:
    """The report of finished groups: pass@k from each row's n and correct, outcome rates weighted by samples."""
    n = min(r["n"] for r in rows)
    ks = sorted({int(x) for x in k if int(x) <= n})
    for i, row in enumerate(rows):  # pass@k recomputed: a resumed run may ask for other k
        fresh = {}
        for key, value in row.items():
            if key == "completions":
                fresh.update({f"pass@{x}": pass_at_k(row["n"], row["correct"], x) for x in ks})
            if not key.startswith("pass@"):
                fresh[key] = value
        rows[i] = fresh
    per_source: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        per_source[row["source"]].append(row)
    overall = {f"pass@{x}": math.fsum(r[f"pass@{x}"] for r in rows) / len(rows) for x in ks}
    by_source = {s: {"tasks": float(len(rs)), **{f"pass@{x}": math.fsum(r[f"pass@{x}"] for r in rs) / len(rs)
                                                 for x in ks}} for s, rs in per_source.items()}
    total = sum(samples for samples, _ in groups) or 1
    keys = set.intersection(*(set(m) for _, m in groups)) if groups else set()
    metrics = {key: math.fsum(m[key] * samples for samples, m in groups) / total
               for key in groups[0][1] if key in keys} if groups else {}
    return EvalReport(pass_at_k=overall, num_tasks=len(rows), num_samples=n, metrics=metrics, by_source=by_source,
                      rows=rows)


class _PartialResults:
    """``OUT.partial``: a settings line, then one line per finished task and a closing line per finished group
    (a group without its closing line, cut by an interruption, is sampled again)."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path, self.settings = path, settings

    def load(self) -> dict[int, tuple[list[dict], int, dict]]:
        from trl_unittest.usage import UsageError

        if not self.path.exists():
            return {}
        rows: dict[int, dict[int, dict]] = defaultdict(dict)
        done: dict[int, tuple[list[dict], int, dict]] = {}
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        try:
            header = json.loads(lines[0])["settings"] if lines else None
        except (ValueError, KeyError, TypeError):
            header = None
        if header != self.settings:
            differ = [key for key in self.settings if (header or {}).get(key) != self.settings[key]]
            raise UsageError(f"{self.path} holds partial results of another run (different {', '.join(differ)}): "
                             f"run with the same settings to resume, or delete it to start again")
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:  # the last line, cut by the interruption
                continue
            if "row" in entry:  # by position: a group sampled again after a cut attempt overwrites its rows
                rows[entry["group"]][entry["i"]] = entry["row"]
            elif entry.get("done"):
                got = rows.pop(entry["group"], {})
                done[entry["group"]] = ([got[i] for i in sorted(got)], entry["samples"], entry["metrics"])
        return done

    def append(self, group: int, rows: list[dict], samples: int, metrics: dict) -> None:
        new = not self.path.exists()
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            if new:
                f.write(json.dumps({"settings": self.settings}) + "\n")
            for i, row in enumerate(rows):
                f.write(json.dumps({"group": group, "i": i, "row": row}) + "\n")
            f.write(json.dumps({"group": group, "done": True, "samples": samples, "metrics": metrics}) + "\n")
            f.flush()
            os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------------- CLI
def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="sample completions, run the unit tests, report pass@k",
                              description="Evaluate a causal LM (path) on a task dataset: n samples per task, "
                                          "sandboxed execution, unbiased pass@k; per-task rows as jsonl.")
    p.add_argument("--model", required=True, help="model folder (or Hub name), loaded with transformers "
                                                  "(or vLLM with --vllm); 'quickstart' = the small model built "
                                                  "offline (trl_unittest.models)")
    p.add_argument("--dataset", required=True, help="'humaneval', 'mbpp[:split]', 'mbpp:PATH[:split]', a build "
                                                    "folder, a .parquet or .jsonl task file")
    p.add_argument("--k", type=_positive_int, nargs="+", default=[1, 10], help="k values of pass@k (default: 1 10)")
    p.add_argument("--n", type=_positive_int, default=None, help="samples per task (default: max k)")
    p.add_argument("--temperature", type=_temperature, default=0.8, help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", type=_top_p, default=0.95, help="nucleus sampling's mass, in (0, 1]")
    p.add_argument("--max-new-tokens", type=_positive_int, default=128)
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate the first LIMIT tasks only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="per-task results (jsonl); a summary JSON is written beside it. "
                                               "Tasks are kept in OUT.partial as they finish: after Ctrl-C, the "
                                               "same command resumes from them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file (refused otherwise)")
    p.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "unshare", "none"])
    p.add_argument("--unverified", default="fail", choices=["fail", "exclude", "count"],
                   help="what a test without a verdict (a value that could not cross the call proxy) counts as "
                        "(default: fail)")
    p.add_argument("--vllm", action="store_true", help="generate with vLLM (must be installed)")
    p.add_argument("--device", default="auto", help="where the model runs: auto (a GPU if torch sees one), cpu, "
                                                    "cuda, cuda:N")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the programs on a Ray cluster (auto, HOST:PORT, ray://HOST:10001; needs the `ray` "
                        "extra): sandboxed pools on its nodes, same verdicts as the local pool")
    p.add_argument("--ray-resource", default=None, metavar="NAME",
                   help="with --ray: only nodes started with this custom resource run programs")
    p.set_defaults(func=run_eval)
    return p


def _number(text: str, ok, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def _temperature(text: str) -> float:  # a negative one was sampled greedily, as if it were 0
    return _number(text, lambda v: 0 <= v < float("inf"), "a number >= 0 (0: greedy)")


def _top_p(text: str) -> float:
    return _number(text, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def run_eval(args: argparse.Namespace) -> int:
    from trl_unittest.models import set_threads
    from trl_unittest.usage import UsageError, check_out_file

    set_threads()
    n = args.n or max(args.k)
    if n < max(args.k):
        raise UsageError(f"--n {n} is smaller than the largest --k ({max(args.k)}): pass@k needs "
                         f"at least k samples per task")
    device = resolve_device(args.device)  # a bad --device fails before the dataset and the model are loaded
    if args.out:
        check_out_file(args.out, overwrite=args.overwrite)
    executor = None
    if args.ray:  # connected and probed before the model is loaded
        try:
            from trl_unittest.execution.ray_executor import RayExecutor

            executor = RayExecutor(args.ray, resource=args.ray_resource, sandbox=args.sandbox)
        except (ImportError, ConnectionError, RuntimeError, ValueError) as e:
            print(f"trl-unittest eval: --ray {args.ray}: {str(e).strip().splitlines()[0]}", file=sys.stderr)
            return 2
    try:
        return _run_eval(args, n, device, executor)
    finally:
        if executor is not None:
            executor.close()


def _run_eval(args: argparse.Namespace, n: int, device: str, executor: Any) -> int:
    from rich.console import Console

    from trl_unittest.usage import check_model

    check_model(args.model)  # before the dataset and the model are loaded
    ds = load_task_source(args.dataset)
    if args.limit is not None:
        ds = ds.select(range(min(args.limit, len(ds))))
    model = args.model
    if model == "quickstart" or model.startswith("quickstart:"):
        from trl_unittest.models import ensure_code_model

        _say_if_training(model.partition(":")[2] or "small")
        model = ensure_code_model(model.partition(":")[2] or "small")
    report = evaluate_model(model, ds, n=n, k=args.k, temperature=args.temperature, top_p=args.top_p,
                            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, out_jsonl=args.out,
                            seed=args.seed, use_vllm=bool(args.vllm), sandbox=args.sandbox,
                            device=device, pool=executor, unverified=args.unverified)
    Console(stderr=True).print(report.table(f"{args.model} on {args.dataset}"))
    summary = {"model": str(args.model), "dataset": args.dataset, **report.to_dict()}
    if args.out:
        Path(args.out).with_suffix(".summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), file=sys.stdout)
    return 0


def _say_if_training(budget: str) -> None:
    """``--model quickstart[:BUDGET]`` trains that model first when it is not cached: say so, and for how long."""
    from trl_unittest.cache import cache_dir
    from trl_unittest.models import recipe_for

    recipe = recipe_for(budget)
    if not (cache_dir() / "models" / f"code-{recipe.arch}-{recipe.key()}" / "trl_unittest_model.json").exists():
        minutes = {"tiny": "2", "small": "15", "small-bugs": "15", "medium": "2 (GPU) / hours (CPU)"}.get(budget, "?")
        print(f"trl-unittest eval: the '{budget}' code model is not cached yet: training it first (about {minutes} "
              f"minutes on 2 CPU cores; cached afterwards in $TRL_UNITTEST_CACHE, default ~/.cache/trl_unittest)",
              file=sys.stderr)
