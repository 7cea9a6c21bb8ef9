"""The dataset builder past one machine: the same stages as :func:`trl_unittest.data.builder.build_dataset`, mapped
over a Ray Data dataset of source-file shards (``pip install 'trl-unittest[ray]'``).

Two maps and one ordered step between them, so that the result is the single-machine builder's, task for task:

1. **static map** (per shard of ``config.shard_size`` files): extraction, side-effect/triviality filters,
   fingerprints, contamination, doctest cases and generated inputs (:class:`~trl_unittest.data.builder.StaticStages`);
2. **admission** (driver, on fingerprints only): first occurrence wins in source order across *all* shards, then
   contamination — the one step of the builder that is global and ordered, so it cannot live inside a map;
3. **dynamic map** (per shard of admitted functions): each Ray task opens its own pair of
   :class:`~trl_unittest.execution.ExecutionPool` (hash seeds A and B) and runs the reference programs, mutant
   generation and test choice (:meth:`~trl_unittest.data.builder.Builder.run_planned`).

Everything that decides a task is a function of the function itself (inputs, mutants, the pools that run its
mutants), so how functions are grouped into shards and Ray tasks does not change the tasks. Ray schedules, moves
data and retries; there is no distribution code of our own. Tasks come back as a ``datasets.Dataset`` in the task
schema (and ``out_dir/tasks.parquet`` + ``out_dir/report.json`` when ``out_dir`` is given).

Each dynamic Ray task reserves ``cpus_per_task`` CPUs (default: ``config.num_workers``, the sandbox workers of each
of its two pools; 1 when unset), so Ray does not start many more sandboxes than a node has cores. The static
stages are built once on the driver (the contamination references included, shipped as tokens: ``hash`` is
salted per process) and shipped to the tasks, so every node filters alike even without the MBPP/HumanEval files.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any, Iterable

from trl_unittest.data.builder import Builder, BuilderConfig, BuildReport, StaticStages
from trl_unittest.data.shards import shards as shards_of
from trl_unittest.data.static_stages import FileResult, Planned
from trl_unittest.data.sources import SourceFile, iter_sources


def _static_map(row: dict[str, Any], stages: StaticStages) -> dict[str, Any]:
    files: list[SourceFile] = pickle.loads(row["files"])
    results: list[FileResult] = [stages.file(f) for f in files]
    return {"shard": row["shard"], "results": pickle.dumps(results)}


def _dynamic_map(row: dict[str, Any], config: BuilderConfig) -> dict[str, Any]:
    admitted: list[tuple[int, Planned]] = pickle.loads(row["admitted"])
    report = BuildReport()
    with Builder(config) as builder:
        tasks = builder.run_planned(admitted, report)
    return {"shard": row["shard"], "report": json.dumps(report.to_dict()),
            "tasks": pickle.dumps(sorted(tasks.items()))}


def _rows(ds) -> list[dict[str, Any]]:
    return sorted(ds.take_all(), key=lambda r: r["shard"])


def build_dataset_ray(sources: Iterable[Any], config: BuilderConfig | None = None, *, column: str = "content",
                      out_dir: str | Path | None = None, return_report: bool = False,
                      functions_per_task: int | None = None, cpus_per_task: float | None = None):
    """:func:`~trl_unittest.data.builder.build_dataset` on Ray Data (connects to the running Ray cluster, or
    starts a local one, as ``ray.data`` does).

    ``sources``: as for ``build_dataset`` (specs, folders, datasets, :class:`SourceFile` iterables); they are read
    on the driver and shipped to the tasks in shards of ``config.shard_size`` files. ``functions_per_task``:
    admitted functions per dynamic Ray task (default: ``config.batch_size``). Returns a ``datasets.Dataset`` of
    tasks in the same order as ``build_dataset`` (with the :class:`BuildReport` when ``return_report``).
    """
    import time

    import ray

    from trl_unittest.tasks import to_dataset

    t0 = time.perf_counter()

    cfg = dataclasses.replace(config or BuilderConfig(), progress=False, static_workers=0)
    if cfg.num_workers is None:  # not "all the node's cores" in every task
        cfg = dataclasses.replace(cfg, num_workers=1)
    if cfg.max_functions is not None:
        raise ValueError("max_functions is not supported by build_dataset_ray (it stops a sequential build)")
    per_task = max(1, functions_per_task or cfg.batch_size)
    cpus = cpus_per_task if cpus_per_task is not None else float(cfg.num_workers)

    shards = [{"shard": k, "files": pickle.dumps(list(shard))}
              for k, shard in enumerate(shards_of(iter_sources(sources, column=column), cfg.shard_size))]
    report = BuildReport()
    all_tasks = []
    if shards:
        # 1. static map, one Ray task per shard of files
        static_rows = _rows(ray.data.from_items(shards, override_num_blocks=len(shards))
                            .map(_static_map, fn_kwargs={"stages": StaticStages(cfg)}))
        # 2. admission in source order, on fingerprints (the builder's own rule: Builder.admit)
        admitter = Builder(cfg)
        admitted: list[tuple[int, Planned]] = []
        for row in static_rows:
            for fr in pickle.loads(row["results"]):
                report.merge(fr.report)
                for item in fr.planned:
                    if admitter.admit(item.fingerprint, item.contaminated, report):
                        admitted.append((len(admitted), item))
        # 3. dynamic map, one Ray task (with its own execution pools) per group of admitted functions
        groups = [{"shard": g, "admitted": pickle.dumps(admitted[i:i + per_task])}
                  for g, i in enumerate(range(0, len(admitted), per_task))]
        if groups:
            dyn_rows = _rows(ray.data.from_items(groups, override_num_blocks=len(groups))
                             .map(_dynamic_map, fn_kwargs={"config": cfg}, num_cpus=cpus))
            by_seq = {}
            for row in dyn_rows:
                report.merge(BuildReport.from_dict(json.loads(row["report"])))
                by_seq.update(dict(pickle.loads(row["tasks"])))
            all_tasks = [by_seq[k] for k in sorted(by_seq)]
    ds = to_dataset(all_tasks)
    report.seconds = time.perf_counter() - t0
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(out / "tasks.parquet"))
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return (ds, report) if return_report else ds
