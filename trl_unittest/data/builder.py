"""The dataset builder's entry point: sources -> candidates -> static filters -> sandboxed observation ->
mutation adequacy -> tasks in the schema of :mod:`trl_unittest.tasks`.

Each stage has its module under ``trl_unittest/data/``:

==================  ==========================================================================================
``config``          :class:`BuilderConfig` (settings) and :class:`BuildReport` (every drop counted by reason)
``sources``         where code comes from (folders, the standard library, distributions, datasets)
``static_stages``   extraction, filters, fingerprints, contamination, doctest cases, inputs, mutants (no sandbox)
``observe``         the sandboxed runs of the reference (two hash seeds) and what they say
``scoring``         which mutants each test kills; line coverage
``selection``       the test each input becomes, the greedy choice of the suite, the task
``pipeline``        :class:`Builder`: drives the stages through futures, sandboxed runs overlapping CPU work
``shards``          resumable shards of source files under ``out_dir/shards``
==================  ==========================================================================================

Every function seen ends as kept or dropped with exactly one reason, so ``seen == kept + sum(dropped)``.
Mined code is untrusted: it is only parsed here; every execution goes through :mod:`trl_unittest.execution`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from trl_unittest.data.config import BuilderConfig, BuildReport
from trl_unittest.data.observe import may_keep_state
from trl_unittest.data.pipeline import Builder
from trl_unittest.data.shards import done_shard, import_datasets, read_shard_tasks, shard_identity, shards, \
    with_next, write_shard
from trl_unittest.data.sources import iter_sources
from trl_unittest.data.static_stages import StaticStages, decontamination_warnings

logger = logging.getLogger(__name__)


class _Lines:
    """The progress bar's three calls (``update``, ``set_postfix``, ``close``) turned into calls of ``lines(files done,
    files, kept=...)``: ``build_dataset(lines=...)``."""

    def __init__(self, lines: Callable[..., None], total: int):
        self.lines, self.total, self.done, self.extra = lines, total, 0, {}

    def update(self, n: int = 1) -> None:
        self.done += n
        self.lines(self.done, self.total, **self.extra)

    def set_postfix(self, **extra: Any) -> None:
        self.extra = {k: v for k, v in extra.items() if k == "kept"}

    def close(self) -> None:
        pass

__all__ = ["Builder", "BuilderConfig", "BuildReport", "StaticStages", "build_dataset", "load_tasks",
           "may_keep_state", "save_dataset"]


def build_dataset(sources: Iterable[Any], config: BuilderConfig | None = None, out_dir: str | Path | None = None,
                  column: str = "content", return_report: bool = False,
                  lines: Callable[..., None] | None = None):
    """Mine tasks from sources and return a ``datasets.Dataset`` in the task schema (with the
    :class:`BuildReport` when ``return_report``).

    ``sources``: specs (``"stdlib"``, ``"stdlib:textwrap"``, ``"dist:NAME"``, ``"hf:PATH#column"``, a folder or
    file), ``datasets.Dataset``/``IterableDataset`` objects with a ``column`` of code, or iterables of
    :class:`SourceFile`. With ``out_dir`` each shard of ``config.shard_size`` files is written to
    ``out_dir/shards/NNNNN`` as it finishes, a rerun skips finished shards, and the result is also saved to
    ``out_dir/dataset`` (``save_to_disk``).

    ``lines``: instead of a progress bar, a callable ``(files done, files, kept=...)`` called as files finish (e.g.
    one printed line every few percent); the files are counted first, which takes sources given as specs or paths
    (a one-off iterable would be used up by the count).
    """
    cfg = config or BuilderConfig()
    if lines is not None:
        sources = list(sources)
        if not all(isinstance(s, (str, os.PathLike)) for s in sources):
            raise TypeError("build_dataset(lines=...) counts the source files first: give the sources as specs or "
                            "paths, or use config.progress")
    report = BuildReport(warnings=decontamination_warnings(cfg))
    for line in report.warnings:
        logger.warning("trl_unittest build: %s", line)
    t0 = time.perf_counter()
    builder = Builder(cfg).start()  # worker processes and sandbox workers start up in the background
    builder.when_idle(import_datasets)  # ~1 s of imports, done while the last programs run
    out = Path(out_dir) if out_dir is not None else None
    parts: list[Any] = []
    progress = None
    if lines is not None:
        progress = _Lines(lines, sum(1 for _ in iter_sources(sources, column=column)))
    elif cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(desc="files", unit="file")
    try:
        with builder:
            for k, (shard, upcoming) in enumerate(with_next(shards(iter_sources(sources, column=column),
                                                                   cfg.shard_size))):
                if cfg.max_functions is not None and report.seen >= cfg.max_functions:
                    break
                sdir = out / "shards" / f"{k:05d}" if out is not None else None
                if upcoming is not None and out is not None and \
                        (out / "shards" / f"{k + 1:05d}" / "report.json").exists():
                    upcoming = None  # done in an earlier run: nothing to prefetch
                identity = shard_identity(shard, cfg) if sdir is not None else None
                meta = done_shard(sdir, identity) if sdir is not None else None
                if meta is not None:
                    report.merge(BuildReport.from_dict(meta["report"]))
                    report.shards_resumed += 1
                    builder.dedup.seen.update(meta.get("fingerprints", []))
                    resumed = read_shard_tasks(sdir)
                    if resumed is not None:
                        parts.append(resumed)
                    if progress is not None:
                        progress.update(len(shard))
                    continue
                shard_report = BuildReport()
                before = set(builder.dedup.seen)
                left = None if cfg.max_functions is None else cfg.max_functions - report.seen
                tasks = builder.process_files(shard, shard_report, progress, prefetch=upcoming, max_seen=left)
                if progress is not None:
                    progress.set_postfix(kept=report.kept + shard_report.kept, seen=report.seen + shard_report.seen)
                shard_report.seconds = 0.0
                report.merge(shard_report)
                part = None
                if tasks:
                    import_datasets()
                    from trl_unittest.tasks import to_dataset

                    part = to_dataset(tasks)
                    parts.append(part)  # in shard order, resumed shards included
                if sdir is not None:
                    write_shard(sdir, part, shard_report.to_dict(), sorted(builder.dedup.seen - before), identity)
    finally:
        if progress is not None:
            progress.close()
    import_datasets()
    from datasets import concatenate_datasets

    from trl_unittest.tasks import to_dataset

    parts = [p for p in parts if len(p)]
    ds = concatenate_datasets(parts) if len(parts) > 1 else (parts[0] if parts else to_dataset([]))
    report.seconds = time.perf_counter() - t0
    if out is not None:
        ds.save_to_disk(str(out / "dataset"))
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    if cfg.progress:
        report.print()
    return (ds, report) if return_report else ds


def save_dataset(ds, path: str | Path, fmt: str | None = None) -> None:
    """Write a task dataset as ``save_to_disk`` (a folder), ``.parquet`` or ``.jsonl`` (by suffix or ``fmt``)."""
    path = Path(path)
    fmt = fmt or {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix, "disk")
    if fmt == "parquet":
        ds.to_parquet(str(path))
    elif fmt == "jsonl":
        ds.to_json(str(path), lines=True)
    else:
        ds.save_to_disk(str(path))


def load_tasks(path: str | Path):
    """Load a task dataset written by :func:`save_dataset` (folder, parquet or jsonl), with the task features."""
    from datasets import Dataset, load_from_disk

    from trl_unittest.tasks import features

    path = Path(path)
    if path.is_dir():
        return load_from_disk(str(path))
    if path.suffix == ".parquet":
        return Dataset.from_parquet(str(path), features=features())
    return Dataset.from_json(str(path), features=features())
