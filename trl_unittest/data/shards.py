"""The shard pipeline's storage: source files cut into shards (the resumable unit), each written under
``out_dir/shards/NNNNN`` as it finishes (``tasks.parquet``, then ``report.json`` last, which marks it done); a
rerun skips finished shards whose identity (files and result-changing settings) is unchanged."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from trl_unittest.data.config import BuilderConfig
from trl_unittest.data.sources import SourceFile

logger = logging.getLogger(__name__)
RETRIES = 20  # gh-106905 retries of an import that parses


def with_next(items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    """(item, the item after it or None): the shard loop looks one shard ahead to prefetch it."""
    it = iter(items)
    cur = next(it, None)
    while cur is not None:
        nxt = next(it, None)
        yield cur, nxt
        cur = nxt


def shards(files: Iterator[SourceFile], size: int) -> Iterator[list[SourceFile]]:
    shard: list[SourceFile] = []
    for f in files:
        shard.append(f)
        if len(shard) >= size:
            yield shard
            shard = []
    if shard:
        yield shard


def shard_identity(shard: list[SourceFile], cfg: BuilderConfig) -> str:
    """What a shard's results depend on: its files (label, path, text) and the settings that change results."""
    runtime_only = {"progress", "num_workers", "static_workers", "batch_size", "sandbox", "max_functions"}
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({k: v for k, v in asdict(cfg).items() if k not in runtime_only}, sort_keys=True,
                        default=str).encode())
    for f in shard:
        h.update(json.dumps([f.source, f.path, f.module, f.license, f.unreadable]).encode())
        h.update(hashlib.blake2b(f.text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
    return h.hexdigest()


def import_datasets() -> None:
    """``import datasets`` (and the task schema), retried on gh-106905's SystemError: the import runs a few
    ``ast.parse`` (``inspect``) and may overlap the execution pool's threads parsing results."""
    for attempt in range(RETRIES + 1):
        try:
            import datasets  # noqa: F401

            import trl_unittest.tasks  # noqa: F401
            return
        except SystemError:
            if attempt == RETRIES:
                raise


def done_shard(sdir: Path, identity: str) -> dict | None:
    """The metadata of a finished shard (its report, fingerprints, identity), or None. A shard built from other
    files or settings (or by an older version) is deleted, to be built anew."""
    if not (sdir / "report.json").exists():
        return None
    meta = json.loads((sdir / "report.json").read_text())
    if meta.get("identity") != identity:
        logger.warning("shard %s was built from other source files or settings: building it again", sdir)
        (sdir / "report.json").unlink()
        (sdir / "tasks.parquet").unlink(missing_ok=True)
        return None
    return meta


def read_shard_tasks(sdir: Path):
    """A finished shard's tasks as a ``datasets.Dataset``, or None when it kept none."""
    if not (sdir / "tasks.parquet").exists():
        return None
    import_datasets()
    from datasets import Dataset

    from trl_unittest.tasks import features

    return Dataset.from_parquet(str(sdir / "tasks.parquet"), features=features())


def write_shard(sdir: Path, dataset, report: dict, fingerprints: list[str], identity: str) -> None:
    """Write a finished shard: its tasks (``dataset``, None when it kept none), then its report (last: it marks
    the shard done)."""
    sdir.mkdir(parents=True, exist_ok=True)
    if dataset is not None:
        dataset.to_parquet(str(sdir / "tasks.parquet"))
    meta = {"report": report, "fingerprints": fingerprints, "identity": identity}
    tmp = sdir / "report.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(sdir / "report.json")
