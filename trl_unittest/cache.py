"""The on-disk cache shared by the builder (decontamination tokens, Hypothesis draws) and the small model
(trained checkpoints): ``$TRL_UNITTEST_CACHE``, default ``~/.cache/trl_unittest``. Everything in it can be
deleted; it is rebuilt when missing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    return Path(os.environ.get("TRL_UNITTEST_CACHE") or Path.home() / ".cache" / "trl_unittest")


def write_json_atomic(path: Path, obj: Any) -> bool:
    """Write JSON through a temp file and a rename, so that concurrent builds never read half a file. A cache
    that cannot be written is not an error: returns False."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(obj), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        return False
    return True


def cache_dir() -> Path:
    """The cache root, created when missing."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_key(obj: Any) -> str:
    """A short stable hash of a JSON-able object: the name of a cache folder built from it."""
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, default=str).encode(), digest_size=6).hexdigest()
