"""Benchmark of the dataset builder (issues 3 and 16).

On the standard library and a few installed distributions (or ``--source`` ones): tested tasks per second per
core, yield (kept / seen), median mutation score and coverage; test adequacy against a reward-hacking policy,
measured here independently of the builder's own checks: trivial bodies written here (None, constants, each
argument, list/sorted/set/tuple of the first, the most common expected value, its most common exception) run
through the sandbox against every kept task (``trivial_pass_max``, ``trivial_pass_median``: the best trivial
body's pass fraction), the share of tasks with >= 3 tests hidden from the prompt, and an established
mutation-testing tool, mutmut (``pip install mutmut``: it runs offline), on a sample of kept tasks: its kill rate
on the task's function beside the builder's own score (mutmut's docstring-only mutants set aside; a second figure
also sets aside those that only change an exception's or an assertion's message, which no task test can check). In
the same run, Pynguin on three standard-library modules (time and mutation score) when it is installed (looked for
in ``.venv-pynguin/`` or on PATH).

    python benchmarks/builder.py --quick          # a short run
    python benchmarks/builder.py                  # all of the standard library + the distributions
    python benchmarks/builder.py --source /tmp/unseen/pkg --no-pynguin   # packages the builder was not tuned on

mutmut runs the mined functions (references and mutants) in plain subprocesses, outside the sandbox: only use it
on code you would import anyway (installed packages, the standard library).

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


def _probe_programs(task) -> list:
    """Trivial bodies for one task, written from its reference's signature and its tests (not the builder's
    probes): each a Program against the task's tests."""
    import ast
    from collections import Counter

    from trl_unittest.execution import Program

    func = next((n for n in ast.parse(task.reference).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == task.entry_point), None)
    if func is None:
        return []
    head = f"def {task.entry_point}({ast.unparse(func.args)}):\n"
    params = [a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs]
    if func.args.vararg:
        params.append(func.args.vararg.arg)
    bodies = ["return None", "return 0", "return 1", "return -1", "return ''", "return []", "return ()",
              "return {}", "return True", "return False", "return 0.0"]
    bodies += [f"return {p}" for p in params]
    if params:
        bodies += [f"return {fn}({params[0]})" for fn in ("list", "sorted", "set", "tuple")]
    values = Counter(t.expected for t in task.tests if t.op in ("eq", "approx"))
    bodies += [f"return {v}" for v, _ in values.most_common(2)]
    errors = Counter(t.exception for t in task.tests if t.op == "raises" and t.exception.isidentifier())
    bodies += [f"raise {e}" for e, _ in errors.most_common(1)]
    return [Program(code=head + "    " + b + "\n", tests=task.tests, context=task.context) for b in bodies]


def trivial_figures(ds, workers: int) -> dict:
    """The best trivial body's pass fraction per kept task (max, median, how many above half), and the share of
    tasks with >= 3 tests whose call is not shown in the prompt."""
    from trl_unittest.execution import ExecutionPool
    from trl_unittest.tasks import from_dataset

    tasks = from_dataset(ds)
    programs, owner = [], []
    for k, t in enumerate(tasks):
        for prog in _probe_programs(t):
            programs.append(prog)
            owner.append(k)
    best = [0.0] * len(tasks)
    with ExecutionPool(workers) as pool:
        for k, r in zip(owner, pool.run_batch(programs)):
            best[k] = max(best[k], r.passed / max(1, len(tasks[k].tests)))
    hidden = [sum(1 for x in t.tests if x.expr not in t.prompt) for t in tasks]
    shown = [1 - h / len(t.tests) for h, t in zip(hidden, tasks) if t.tests]
    return {"trivial_pass_max": round(max(best), 3) if best else None,
            "trivial_pass_median": round(statistics.median(best), 3) if best else None,
            "tasks_trivial_above_half": sum(b > 0.5 for b in best),
            "tasks_trivial_positive_partial_reward": sum(-0.3 + 1.3 * b > 0 for b in best),
            "hidden_share": round(sum(h >= 3 for h in hidden) / len(tasks), 4) if tasks else None,
            "shown_fraction_median": round(statistics.median(shown), 3) if shown else None}


def _mutmut_exe() -> list[str] | None:
    exe = shutil.which("mutmut")
    if exe:
        return [exe]
    try:
        import mutmut  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.argv[0] = 'mutmut'; cli()"]


def _docstring_only_mutants(mutated_module: str, messages: bool = False) -> list[str]:
    """mutmut's mutants (``x_f__mutmut_3``) that differ from ``x_f__mutmut_orig`` only in their docstring:
    equivalent by construction (no test can kill them), so set aside and counted, as the builder does. With
    ``messages``: those that differ only in their docstring or in the arguments of a ``raise``'s exception or an
    ``assert``'s message (a task's test checks the exception's type, never its text; the builder does not mutate
    messages), reported as a second figure beside the first."""
    import ast

    def body_without_docstring(fn):
        body = fn.body[1:] if fn.body and isinstance(fn.body[0], ast.Expr) and \
            isinstance(fn.body[0].value, ast.Constant) and isinstance(fn.body[0].value.value, str) else fn.body
        if messages:
            body = [ast.parse(ast.unparse(stmt)).body[0] for stmt in body]  # a copy to blank the messages in
            for stmt in body:
                for node in ast.walk(stmt):
                    if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                        node.exc.args, node.exc.keywords = [], []
                    elif isinstance(node, ast.Assert):
                        node.msg = None
        return ast.dump(ast.Module(body=body, type_ignores=[])), ast.dump(fn.args)

    funcs = {n.name: n for n in ast.parse(mutated_module).body if isinstance(n, ast.FunctionDef)}
    out = []
    for name, fn in funcs.items():
        base, sep, _ = name.partition("__mutmut_")
        orig = funcs.get(f"{base}__mutmut_orig")
        if sep and orig is not None and fn is not orig and body_without_docstring(fn) == body_without_docstring(orig):
            out.append(name)
    return out


def run_mutmut(ds, sample: int, timeout_s: int = 900, keep: Path | None = None) -> dict:
    """mutmut on ``sample`` kept tasks (seeded choice among those with a measured score), all in one project:
    one module per task (its context and reference), one pytest file per task (its tests as asserts, one test
    function each). Kill rate per task over mutmut's mutants of the task's function (killed or timed out over
    all), beside the builder's score of the same tasks."""
    import ast
    import random

    from trl_unittest.tasks import Test

    exe = _mutmut_exe()
    if exe is None:
        return {"status": "mutmut not installed (pip install mutmut, or the dev extra)"}
    rows = ds.to_list()
    rng = random.Random(0)
    rows = rng.sample(rows, min(sample, len(rows)))
    with tempfile.TemporaryDirectory() as tmp:
        proj = keep or Path(tmp)  # keep: a folder to leave the project (and mutmut's results) in
        (proj / "tests").mkdir(parents=True)
        modules = []
        for k, r in enumerate(rows):
            mod = f"task{k}"
            modules.append(mod)
            (proj / f"{mod}.py").write_text(r["reference"] + "\n")
            imports = [ast.unparse(n) for n in ast.parse(r["context"] or "").body
                       if isinstance(n, (ast.Import, ast.ImportFrom))]  # names the tests use (binascii.Error)
            body = ["import math", *imports, f"from {mod} import *", ""]
            for j, t in enumerate(r["tests"]):
                code = Test.from_dict(t).render(r["entry_point"])
                body.append(f"def test_{j}():\n" + "\n".join("    " + ln for ln in code.splitlines()) + "\n")
            (proj / "tests" / f"test_{mod}.py").write_text("\n".join(body))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(proj)] + sys.path[1:])}
        # a task whose tests fail under plain pytest (a name the asserts need that the module does not export)
        # would stop mutmut's clean run: left out, and counted
        clean = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=proj,
                               capture_output=True, text=True, timeout=600, env=env)
        broken = {ln.split("tests/test_")[1].split(".py")[0] for ln in clean.stdout.splitlines()
                  if ln.startswith(("FAILED tests/test_", "ERROR tests/test_"))}
        for mod in broken:
            (proj / "tests" / f"test_{mod}.py").unlink()
        modules = [m for m in modules if m not in broken]
        (proj / "setup.cfg").write_text("[mutmut]\nsource_paths=\n" + "".join(f"    {m}.py\n" for m in modules) +
                                        "pytest_add_cli_args_test_selection=tests/\n")
        t0 = time.perf_counter()
        try:
            p = subprocess.run(exe + ["run", "--max-children", str(len(os.sched_getaffinity(0)))], cwd=proj,
                               capture_output=True, text=True, timeout=timeout_s, env=env)
            status = "ran" if p.returncode == 0 else f"exit {p.returncode}: {(p.stdout + p.stderr)[-400:]}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout_s} s (results so far)"
        seconds = time.perf_counter() - t0
        res = subprocess.run(exe + ["results", "--all", "true"], cwd=proj, capture_output=True, text=True,
                             timeout=120, env=env)
        docstring_only, message_only = set(), set()
        for mod in modules:
            try:
                text = (proj / "mutants" / f"{mod}.py").read_text(encoding="utf-8")
                docstring_only |= {f"{mod}.{m}" for m in _docstring_only_mutants(text)}
                message_only |= {f"{mod}.{m}" for m in _docstring_only_mutants(text, messages=True)}
            except (OSError, SyntaxError):
                pass
        message_only -= docstring_only
    per: dict[int, list[str]] = {}
    for line in res.stdout.splitlines():
        name, _, st = line.strip().rpartition(": ")
        mod, _, mutant = name.partition(".")
        if not mod.startswith("task") or "__mutmut_" not in mutant:
            continue
        k = int(mod[4:])
        func = mutant.split("__mutmut_")[0]
        if func == f"x_{rows[k]['entry_point']}":
            per.setdefault(k, []).append("docstring only" if name in docstring_only else
                                         f"message only:{st}" if name in message_only else st)
    rates, rates_msg, ours = [], [], []
    for k, sts in per.items():
        counted = [x.removeprefix("message only:") for x in sts if x not in ("skipped", "not checked",
                                                                             "docstring only")]
        if not counted:
            continue
        rates.append(sum(x in ("killed", "timeout") for x in counted) / len(counted))
        counted = [x for x in sts if x not in ("skipped", "not checked", "docstring only") and
                   not x.startswith("message only:")]
        if counted:
            rates_msg.append(sum(x in ("killed", "timeout") for x in counted) / len(counted))
        if rows[k]["mutation_score"] is not None:
            ours.append(rows[k]["mutation_score"])
    return {"status": status, "seconds": round(seconds, 1), "tasks": len(rows),
            "tasks_failing_plain_pytest": len(broken), "tasks_with_mutants": len(rates),
            "mutants": sum(len(v) for v in per.values()),
            "mutants_docstring_only": sum(v.count("docstring only") for v in per.values()),
            "kill_rate_median": round(statistics.median(rates), 3) if rates else None,
            "kill_rate_mean": round(statistics.mean(rates), 3) if rates else None,
            "mutants_message_only": sum(x.startswith("message only:") for v in per.values() for x in v),
            "kill_rate_median_messages_aside": round(statistics.median(rates_msg), 3) if rates_msg else None,
            "kill_rate_mean_messages_aside": round(statistics.mean(rates_msg), 3) if rates_msg else None,
            "builder_score_median_same_tasks": round(statistics.median(ours), 3) if ours else None,
            "builder_score_mean_same_tasks": round(statistics.mean(ours), 3) if ours else None}


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
    ap.add_argument("--source", action="append", default=None,
                    help="build these sources instead of the standard library + distributions (repeatable)")
    ap.add_argument("--mutmut-keep", type=Path, default=None, help="leave mutmut's project in this new folder")
    ap.add_argument("--mutmut-sample", type=int, default=None,
                    help="kept tasks mutmut runs on (default: 20 quick, 40 full; 0: skip)")
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or cores
    stdlib = "stdlib:" + ",".join(QUICK_STDLIB) if args.quick else "stdlib"
    dists = [d for d in (QUICK_DISTS if args.quick else FULL_DISTS) if _dist_available(d)]
    sources = args.source or [stdlib] + [f"dist:{d}" for d in dists]
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
        "mutants_scored": report.mutants_scored,
        "mutants_unkilled_by_any_input": report.mutants_unkilled_by_any_input,
        "mutants_likely_equivalent": report.mutants_likely_equivalent,
        "mutants_killed_by_extra_inputs": report.mutants_killed_by_extra_inputs,
        "audits": report.audits,
        "audit_mutants": report.audit_mutants,
        "extra_rounds": report.extra_rounds,
        "mutation_skipped_trivial": report.mutation_skipped_trivial,
        "targeted_tests": report.targeted_tests,
        "scores_unmeasured": report.scores_unmeasured,
        "warnings": report.warnings,
        "builder_process_cpu_s": round(cpu_builder, 2),  # all threads of this process; not the sandboxes
        "load_avg_1min_before": round(load_before[0], 2),
    }
    if len(ds):
        figures.update(trivial_figures(ds, workers))
    n_mutmut = args.mutmut_sample if args.mutmut_sample is not None else (20 if args.quick else 40)
    if n_mutmut and len(ds):
        figures["mutmut"] = run_mutmut(ds, n_mutmut, keep=args.mutmut_keep)
    if args.ray:
        figures["ray"] = run_ray(sources, workers, cores, ds)
    if args.sample is not None and len(ds):
        write_sample(ds, args.sample)
    if not args.no_pynguin and not args.source:
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
