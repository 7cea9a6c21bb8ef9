"""``trl-unittest build``: the dataset builder on the command line.

Wire into the main CLI with ``add_build_parser(subparsers)``; the parser's default ``func`` is :func:`run_build`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def add_build_parser(subparsers) -> argparse.ArgumentParser:
    from trl_unittest.data.builder import BuilderConfig

    p = subparsers.add_parser(
        "build", help="mine functions from Python sources and generate their unit tests",
        description="Mine public, documented, self-contained functions and generate unit tests for them "
                    "(doctests, observe-and-record under two hash seeds, mutation adequacy).")
    p.add_argument("--source", action="append", required=True,
                   help="a folder or .py file, 'stdlib' / 'stdlib:mod1,mod2', 'dist:NAME' (an installed "
                        "distribution), or 'hf:PATH_OR_NAME[#column]' (a dataset with a code column, streamed). "
                        "Repeat for several sources.")
    p.add_argument("--out", required=True, help="output folder: shards (resumable), dataset/ (save_to_disk), "
                                                "report.json")
    p.add_argument("--column", default="content", help="code column of dataset sources (default: content)")
    p.add_argument("--format", action="extend", nargs="+", choices=["parquet", "jsonl"], default=[],
                   help="also write OUT/tasks.parquet and/or OUT/tasks.jsonl (`--format parquet jsonl`)")
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="push the dataset to the Hub")
    defaults = BuilderConfig()
    for f in dataclasses.fields(BuilderConfig):
        name = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_ = f.metadata.get("help", "") + f" (default: {default})"
        if isinstance(default, bool):
            p.add_argument(name, default=default, action=argparse.BooleanOptionalAction, help=help_)
        elif isinstance(default, tuple):
            p.add_argument(name, type=int, nargs=len(default), default=default, help=help_)
        elif default is None:
            typ = str if f.name.endswith("path") else int
            aliases = ["--mbpp"] if f.name == "mbpp_path" else []  # as `trl-unittest demo` spells it
            p.add_argument(name, *aliases, type=typ, default=None, help=help_)
        else:
            p.add_argument(name, type=type(default), default=default, help=help_)
    p.set_defaults(func=run_build)
    return p


class BadInput(ValueError):
    """A command-line value that cannot work: one line naming it and the fix."""


def check_source(spec: str, flag: str = "--source", column: str = "content") -> None:
    """Raise :class:`BadInput` for a ``--source`` (or another ``flag``'s source) that cannot give files, before any
    work starts."""
    from pathlib import Path

    if spec == "stdlib":
        return
    if spec.startswith("stdlib:"):
        from trl_unittest.data.sources import stdlib_dir

        names = [m for m in spec[len("stdlib:"):].split(",") if m]
        if not names:
            raise BadInput(f"{flag} {spec!r}: no module named after 'stdlib:' (e.g. stdlib:textwrap,json)")
        root = stdlib_dir()
        unknown = [m for m in names if not ((root / f"{m}.py").is_file() or (root / m / "__init__.py").is_file())]
        if unknown:
            raise BadInput(f"{flag} {spec!r}: no pure-Python standard-library module {', '.join(unknown)} "
                           f"(under {root})")
        return
    if spec.startswith("dist:"):
        from importlib import metadata

        name = spec[len("dist:"):]
        if not name:
            raise BadInput(f"{flag} {spec!r}: name a distribution (dist:NAME)")
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise BadInput(f"{flag} {spec!r}: no installed distribution {name!r} (pip install {name}, or pass "
                           "its folder)") from None
        return
    if spec.startswith("hf:"):
        name, _, col = spec[len("hf:"):].partition("#")
        if not name:
            raise BadInput(f"{flag} {spec!r}: name a dataset (hf:PATH_OR_NAME[#column])")
        if Path(name).exists():  # local: its first row read now, so that a wrong path or column is one line here
            _check_local_dataset(spec, name, col or column, flag)
        return
    p = Path(spec)
    if not p.exists():
        raise BadInput(f"{flag} {spec!r}: no such folder or file (or use stdlib[:mods], dist:NAME, hf:NAME)")
    if p.is_file() and p.suffix != ".py":
        raise BadInput(f"{flag} {spec!r}: a file source must be a .py file")


def check_out(out: str) -> None:
    """Raise :class:`BadInput` for an ``--out`` that cannot be written."""
    import os
    from pathlib import Path

    p = Path(out)
    if p.exists() and not p.is_dir():
        raise BadInput(f"--out {out!r}: exists and is not a folder (choose a folder)")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise BadInput(f"--out {out!r}: {str(probe)!r} is not a writable folder")


def _check_local_dataset(spec: str, name: str, column: str, flag: str) -> None:
    from trl_unittest.data.sources import load_dataset_source
    from trl_unittest.usage import quiet_datasets_log, root_message

    try:
        with quiet_datasets_log():
            first = next(iter(load_dataset_source(name, streaming=True)), None)
    except StopIteration:  # an empty data file, as `datasets` reads it
        first = None
    except Exception as e:  # noqa: BLE001 (the user's path is not a dataset: say so in one line)
        raise BadInput(f"{flag} {spec!r}: not a dataset that `datasets` opens ({root_message(e, outer=True)}): give a "
                       "save_to_disk folder or a .jsonl, .json, .parquet or .csv file") from None
    if first is None:
        raise BadInput(f"{flag} {spec!r}: the dataset has no rows")
    if column not in first:
        raise BadInput(f"{flag} {spec!r}: no code column {column!r} (its columns: {', '.join(sorted(first))}): name "
                       "it as hf:PATH#COLUMN or with --column")


SKIPPED_NAMED = 10  # files named in the warning (the report names them all)


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        for spec in args.source:
            check_source(spec, column=args.column)
        check_out(args.out)
        if args.mbpp_path is not None and not Path(args.mbpp_path).exists():
            raise BadInput(f"--mbpp-path {args.mbpp_path!r}: no such file or folder (mbpp.jsonl or its folder)")
        from trl_unittest.data.builder import BuilderConfig

        cfg = BuilderConfig(**{f.name: (tuple(getattr(args, f.name)) if isinstance(getattr(args, f.name), list)
                                        else getattr(args, f.name))
                               for f in dataclasses.fields(BuilderConfig) if hasattr(args, f.name)})
    except (BadInput, ValueError) as e:
        print(f"trl-unittest build: error: {e}", file=sys.stderr)
        return 2
    from trl_unittest.data.builder import build_dataset, save_dataset

    ds, report = build_dataset(args.source, cfg, out_dir=args.out, column=args.column, return_report=True)
    out = Path(args.out)
    for fmt in args.format:
        save_dataset(ds, out / f"tasks.{fmt}", fmt)
    if args.push_to_hub:
        ds.push_to_hub(args.push_to_hub)
    for spec in args.source:
        if tasks_from(spec, ds["provenance"]) == 0:
            print(f"trl-unittest build: warning: --source {spec!r} gave 0 tasks (see the report's drops by reason)",
                  file=sys.stderr)
    for line in report.warnings:
        print(f"trl-unittest build: warning: {line}", file=sys.stderr)
    if report.files_skipped:
        skipped = report.files_skipped
        more = f" and {len(skipped) - SKIPPED_NAMED} more" if len(skipped) > SKIPPED_NAMED else ""
        print(f"trl-unittest build: warning: {len(skipped)} of {report.files} files gave no functions "
              f"(not Python this interpreter parses, not text, or over the size limit): "
              f"{', '.join(skipped[:SKIPPED_NAMED])}{more}; all are "
              f"listed in {out / 'report.json'} (files_skipped)", file=sys.stderr)
    if cfg.max_functions is not None and report.seen >= cfg.max_functions:
        # the limit counts every function definition read (private ones and methods too), not tasks: a small one
        # can stop a build before its first public, documented function
        print(f"trl-unittest build: warning: --max-functions {cfg.max_functions} stopped the build after "
              f"{report.seen} functions read (private functions and methods count too), {len(ds)} tasks kept: "
              "raise it, or name fewer modules (e.g. --source stdlib:textwrap)", file=sys.stderr)
    print(json.dumps({"tasks": len(ds), "files": report.files, "files_skipped": len(report.files_skipped),
                      "seen": report.seen, "kept": report.kept,
                      "dropped": dict(report.dropped), "warnings": report.warnings, "out": str(out)}),
          file=sys.stdout)
    return 0


def tasks_from(spec: str, provenance: list[dict]) -> int:
    """How many tasks came from a ``--source`` (matched by the label its files carry)."""
    from pathlib import Path

    from trl_unittest.data.sources import folder_label

    if spec == "stdlib" or spec.startswith("stdlib:"):
        labels = ("stdlib",)
    elif spec.startswith("dist:"):
        from importlib import metadata

        labels = (f"dist:{metadata.distribution(spec[5:]).metadata['Name'] or spec[5:]}", f"dist:{spec[5:]}")
    elif spec.startswith("hf:"):
        return sum(1 for p in provenance if p["source"].startswith("hf:"))
    else:
        label = folder_label(Path(spec))
        return sum(1 for p in provenance if p["source"] == label or p["source"].startswith(label + "-"))
    return sum(1 for p in provenance if p["source"] in labels)


def main(argv=None) -> int:  # standalone: python -m trl_unittest.data.cli build ...
    parser = argparse.ArgumentParser(prog="trl-unittest")
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
