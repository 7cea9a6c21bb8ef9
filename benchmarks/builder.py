"""Benchmark of the dataset builder (issue 3).

On the standard library and a few installed distributions: tested tasks per second per core, yield (kept / seen),
median mutation score and coverage; in the same run, Pynguin on three standard-library modules (time and
mutation score) when it is installed (looked for in ``.venv-pynguin/`` or on PATH).

    python benchmarks/builder.py --quick          # a short run
    python benchmarks/builder.py                  # all of the standard library + the distributions

The last line printed is one JSON object with the figures. ``--sample FILE`` writes 20 generated tasks as
Markdown for a person to read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUICK_STDLIB = ["textwrap", "colorsys", "heapq", "bisect", "fnmatch", "html", "base64", "string", "calendar",
                "statistics", "shlex", "difflib", "fractions", "keyword", "quopri", "glob", "ntpath", "posixpath",
                "graphlib", "gettext", "ipaddress", "json", "urllib", "email", "csv", "enum", "functools",
                "operator", "pprint", "reprlib", "stringprep", "uu", "binhex", "_pydecimal", "_strptime", "locale",
                "tokenize", "token", "wave", "xdrlib", "plistlib", "mimetypes", "sre_parse", "re"]
QUICK_DISTS = ["packaging", "idna"]
FULL_DISTS = ["packaging", "idna", "pyparsing", "attrs", "click", "tqdm", "dateutil", "sympy"]
PYNGUIN_MODULES = ["colorsys", "bisect", "fnmatch"]


def _dist_available(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def run_builder(sources: list[str], workers: int, max_functions: int | None, static_workers: int | None = None):
    """The builder on ``sources``; the time includes importing ``datasets`` (done by ``build_dataset``), as in
    the first published figures, not the interpreter's start nor the builder module's import."""
    from trl_unittest.data.builder import BuilderConfig, build_dataset

    t0 = time.perf_counter()
    cfg = BuilderConfig(num_workers=workers, progress=False, max_functions=max_functions,
                        static_workers=static_workers)
    ds, report = build_dataset(sources, cfg, return_report=True)
    return ds, report, time.perf_counter() - t0


def run_ray(sources: list[str], workers: int, cores: int, reference) -> dict:
    """The same build on Ray Data in a local Ray (``cores`` CPUs): seconds, and whether its tasks are the
    single-machine builder's (``reference``), reference runtimes aside."""
    try:
        import ray
    except ImportError:
        return {"status": "ray not installed (pip install 'trl-unittest[ray]')"}
    from trl_unittest.data.builder import BuilderConfig
    from trl_unittest.data.ray_pipeline import build_dataset_ray

    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        t0 = time.perf_counter()
        ds, report = build_dataset_ray(sources, BuilderConfig(num_workers=workers, progress=False),
                                       return_report=True, cpus_per_task=1)
        seconds = time.perf_counter() - t0
    finally:
        ray.shutdown()

    def rows(d):
        out = d.to_list()
        for r in out:
            r.pop("reference_runtime")
        return out

    return {"status": "ran", "seconds": round(seconds, 1), "tested": report.tested, "kept": report.kept,
            "same_tasks_as_builder": rows(ds) == rows(reference), "consistent": report.consistent()}


def _pynguin_exe() -> str | None:
    local = ROOT / ".venv-pynguin" / "bin" / "pynguin"
    if local.exists():
        return str(local)
    return shutil.which("pynguin")


def run_pynguin(modules: list[str], budget_s: int) -> dict:
    """Pynguin (whole-module test generation) on stdlib modules: wall time and its mutation score (MOSA +
    mutation analysis assertions, as Pynguin reports it)."""
    exe = _pynguin_exe()
    if exe is None:
        return {"status": "not installed (pip install pynguin into .venv-pynguin)"}
    out: dict = {"status": "ran", "modules": {}}
    stdlib = Path(__import__("sysconfig").get_paths()["stdlib"])
    for mod in modules:
        with tempfile.TemporaryDirectory() as tmp:
            proj = Path(tmp) / "proj"
            proj.mkdir()
            shutil.copy(stdlib / f"{mod}.py", proj / f"pynguin_{mod}.py")
            outdir = Path(tmp) / "out"
            cmd = [exe, "--project-path", str(proj), "--output-path", str(outdir), "--module-name",
                   f"pynguin_{mod}", "--maximum-search-time", str(budget_s), "--assertion-generation",
                   "MUTATION_ANALYSIS", "--output-variables", "TargetModule,Coverage,MutationScore,TotalTime",
                   "--report-dir", str(Path(tmp) / "report"), "-v"]
            env = {**os.environ, "PYNGUIN_DANGER_AWARE": "1"}
            t0 = time.perf_counter()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s * 6 + 120, env=env)
                rc, log = p.returncode, p.stdout + p.stderr
            except subprocess.TimeoutExpired:
                rc, log = -1, "timeout"
            wall = time.perf_counter() - t0
            stats = {}
            csv = Path(tmp) / "report" / "statistics.csv"
            if csv.exists():
                import csv as csvmod

                rows = list(csvmod.DictReader(csv.read_text().splitlines()))
                if rows:
                    stats = rows[-1]
            tests = 0
            if outdir.exists():
                for f in outdir.glob("test_*.py"):
                    tests += f.read_text().count("def test_")
            out["modules"][mod] = {"rc": rc, "seconds": round(wall, 1), "tests": tests,
                                   "mutation_score": _float(stats.get("MutationScore")),
                                   "coverage": _float(stats.get("Coverage")),
                                   "log_tail": log[-300:] if rc != 0 else ""}
    return out


def _float(x):
    try:
        return round(float(x), 3)
    except (TypeError, ValueError):
        return None


def write_sample(ds, path: Path, n: int = 20) -> None:
    import random

    rng = random.Random(0)
    idx = sorted(rng.sample(range(len(ds)), min(n, len(ds))))
    parts = [f"# {len(idx)} generated tasks (random sample, seed 0)\n"]
    for i in idx:
        r = ds[i]
        parts.append(f"## {r['task_id']}\n\nmutation score {r['mutation_score']}, coverage "
                     f"{None if r['coverage'] is None else round(r['coverage'], 2)}, licence "
                     f"{r['provenance']['license']}\n\nPrompt:\n\n```python\n{r['prompt']}```\n\n"
                     f"Reference body:\n\n```python\n{r['reference'][len(r['prompt']):]}```\n\n"
                     f"Tests:\n\n```python\n{r['test_code']}\n```\n")
    path.write_text("\n".join(parts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (some stdlib modules, two distributions)")
    ap.add_argument("--workers", type=int, default=None, help="sandbox workers per pool (default: cores)")
    ap.add_argument("--no-pynguin", action="store_true")
    ap.add_argument("--pynguin-budget", type=int, default=None, help="Pynguin search seconds per module")
    ap.add_argument("--sample", type=Path, default=None, help="write 20 sample tasks (Markdown) here")
    ap.add_argument("--static-workers", type=int, default=None,
                    help="worker processes for the static stages (default: the builder's choice)")
    ap.add_argument("--ray", action="store_true", help="also build on Ray Data (local Ray) and compare the tasks")
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or cores
    stdlib = "stdlib:" + ",".join(QUICK_STDLIB) if args.quick else "stdlib"
    dists = [d for d in (QUICK_DISTS if args.quick else FULL_DISTS) if _dist_available(d)]
    sources = [stdlib] + [f"dist:{d}" for d in dists]
    load_before = os.getloadavg()
    cpu0 = time.process_time()
    ds, report, seconds = run_builder(sources, workers, None, args.static_workers)
    cpu_builder = time.process_time() - cpu0
    report.print()
    ms = [x for x in ds["mutation_score"] if x is not None]
    cov = [x for x in ds["coverage"] if x is not None]
    figures = {
        "quick": args.quick,
        "sources": sources,
        "cores": cores,
        "seconds": round(seconds, 1),
        "files": report.files,
        "seen": report.seen,
        "extracted": report.extracted,
        "tested": report.tested,
        "kept": report.kept,
        "tested_per_s_per_core": round(report.tested / seconds / cores, 2),
        "kept_per_s_per_core": round(report.kept / seconds / cores, 2),
        "yield": round(report.kept / report.seen, 4) if report.seen else 0.0,
        "median_mutation_score": round(statistics.median(ms), 3) if ms else None,
        "median_coverage": round(statistics.median(cov), 3) if cov else None,
        "tests_per_task": round(sum(len(t) for t in ds["tests"]) / len(ds), 2) if len(ds) else 0,
        "dropped": dict(report.dropped.most_common()),
        "consistent": report.consistent(),
        "programs": report.programs,
        "builder_process_cpu_s": round(cpu_builder, 2),  # all threads of this process; not the sandboxes
        "load_avg_1min_before": round(load_before[0], 2),
    }
    if args.ray:
        figures["ray"] = run_ray(sources, workers, cores, ds)
    if args.sample is not None and len(ds):
        write_sample(ds, args.sample)
    if not args.no_pynguin:
        budget = args.pynguin_budget or (10 if args.quick else 60)
        figures["pynguin"] = run_pynguin(PYNGUIN_MODULES, budget)
        ours = {}
        for mod in PYNGUIN_MODULES:
            sub = ds.filter(lambda r: r["task_id"].startswith(f"stdlib/{mod}."))
            sm = [x for x in sub["mutation_score"] if x is not None]
            ours[mod] = {"tasks": len(sub), "mean_mutation_score": round(statistics.mean(sm), 3) if sm else None}
        figures["ours_on_pynguin_modules"] = ours
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
