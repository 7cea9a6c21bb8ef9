"""Where raw Python comes from: local folders and files, the standard library, installed distributions (their
files and licence via ``importlib.metadata``), and Hugging Face datasets with a source-code column (map-style or
streaming ``IterableDataset``).

Every source yields :class:`SourceFile` records in a deterministic order, so that the builder can cut them into
resumable shards by position. Files read from disk (folders, the standard library, distributions) say where their
source lies (:class:`SiblingRoot`), so that definitions imported from sibling modules of the same source can be
read too. Nothing here imports or runs the code it reads.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

MAX_FILE_BYTES = 1 << 20
STDLIB_EXCLUDE = {"test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip", "site-packages",
                  "dist-packages", "__pycache__", "venv", "pydoc_data", "config-3", "unittest/test", "ctypes/test",
                  "distutils/tests", "sqlite3/test", "tkinter/test", "lib-dynload"}
FOLDER_EXCLUDE = {"__pycache__", ".git", ".hg", ".tox", ".venv", "venv", "node_modules", "build", "dist",
                  ".eggs", "site-packages"}


@dataclass(frozen=True)
class SiblingRoot:
    """Where the other modules of a file's source lie on disk: ``root`` is the folder its ``path`` is relative
    to; ``package`` the dotted name of ``root`` itself when it is a package (``humanize`` for a folder source
    ``.../humanize`` holding ``__init__.py``), else ""; ``tops`` the top-level names the source owns under
    ``root`` when it shares that folder with others (a distribution in site-packages), None when it owns all."""

    root: str
    package: str = ""
    tops: tuple[str, ...] | None = None

    def owns(self, rel: str) -> bool:
        return self.tops is None or rel.split("/")[0].removesuffix(".py") in self.tops


@dataclass
class SourceFile:
    source: str  # a short label: "stdlib", "dist:packaging", "local:myproj", "hf:org/name"
    path: str  # the file's path relative to its root (the module name is derived from it), or a row id
    text: str
    license: str | None = None
    module: str | None = None  # explicit module name (otherwise derived from `path`)
    unreadable: str | None = None  # why `text` is empty: the file could not be read (counted in the report)
    siblings: SiblingRoot | None = None  # where its source's other modules lie (None: nowhere to read them)


def _read(path: Path) -> tuple[str, str | None]:
    """(text, None), or ("", why) for a file that cannot be used. Decoded as Python decodes a module: its coding
    cookie or byte-order mark, else UTF-8."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return "", "too_large"
        with tokenize.open(path) as f:
            return f.read(), None
    except (UnicodeDecodeError, SyntaxError, LookupError):  # undecodable, or an unknown coding cookie
        return "", "undecodable"
    except (OSError, ValueError):
        return "", "unreadable"


def folder_label(root: Path) -> str:
    """The source label of a folder (or a file): ``local:<its name>``."""
    return f"local:{root.stem if root.is_file() else root.resolve().name}"


def adjacent_license(root: Path) -> str | None:
    """The licence of the installed distribution a folder (or module file) belongs to: a ``*.dist-info`` beside
    it whose ``top_level.txt`` or ``RECORD`` names it (``site-packages/pkg`` and ``site-packages/pkg-1.0.dist-info``,
    or the same in a ``pip install --target`` folder)."""
    from importlib import metadata

    name = root.stem if root.is_file() else root.name
    try:
        infos = sorted(root.resolve().parent.glob("*.dist-info"))
    except OSError:
        return None
    for info in infos:
        try:
            tops = (info / "top_level.txt").read_text().split() if (info / "top_level.txt").exists() else []
            record = (info / "RECORD").read_text() if (info / "RECORD").exists() else ""
        except OSError:
            continue
        if name in tops or any(line.split(",")[0].split("/")[0] in (name, name + ".py")
                               for line in record.splitlines()):
            return distribution_license(metadata.PathDistribution(info).metadata)
    return None


def iter_folder(root: str | os.PathLike, source: str | None = None, license: str | None = None,
                exclude: Iterable[str] = FOLDER_EXCLUDE, include_tests: bool = False) -> Iterator[SourceFile]:
    """``.py`` files under a folder (or one file), sorted; test folders and files skipped unless asked. Without
    a ``license``, a folder takes the licence of an adjacent ``*.dist-info`` that names it (if any)."""
    root = Path(root)
    label = source or folder_label(root)
    if license is None and root.exists():
        license = adjacent_license(root)
    if root.is_file():
        text, why = _read(root)
        yield SourceFile(label, root.name, text, license, unreadable=why)
        return
    if not root.is_dir():
        raise FileNotFoundError(f"source folder {str(root)!r} does not exist")
    exclude = set(exclude)
    where = SiblingRoot(str(root.resolve()), root.name if (root / "__init__.py").is_file() else "")
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirnames[:] = sorted(d for d in dirnames if d not in exclude and
                             (rel_dir + "/" + d).lstrip("./") not in exclude and
                             (include_tests or d not in ("test", "tests")))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            if not include_tests and (name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"):
                continue
            path = Path(dirpath) / name
            text, why = _read(path)
            yield SourceFile(label, path.relative_to(root).as_posix(), text, license, unreadable=why, siblings=where)


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def iter_stdlib(modules: Iterable[str] | None = None) -> Iterator[SourceFile]:
    """The standard library's pure-Python modules (tests, GUI and tooling packages excluded). ``modules``
    restricts to some top-level names (``["textwrap", "json"]``)."""
    root = stdlib_dir()
    wanted = set(modules) if modules else None
    for f in iter_folder(root, source="stdlib", license="PSF-2.0", exclude=STDLIB_EXCLUDE):
        top = f.path.split("/")[0].removesuffix(".py")
        if wanted is not None and top not in wanted:
            continue
        yield f


def distribution_license(meta: Any) -> str | None:
    """A distribution's licence from its metadata: License-Expression, a short License field, or classifiers."""
    expr = meta.get("License-Expression")
    if expr:
        return expr.strip()
    lic = meta.get("License")
    if lic and len(lic) <= 80 and "\n" not in lic.strip() and lic.strip().upper() != "UNKNOWN":
        return lic.strip()
    classifiers = [c.split("::")[-1].strip() for c in (meta.get_all("Classifier") or []) if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    return None


def iter_distribution(name: str, include_tests: bool = False) -> Iterator[SourceFile]:
    """The ``.py`` files an installed distribution recorded (RECORD), with its licence."""
    from importlib import metadata

    dist = metadata.distribution(name)
    lic = distribution_license(dist.metadata)
    label = f"dist:{dist.metadata['Name'] or name}"
    files = sorted((f for f in (dist.files or []) if str(f).endswith(".py")), key=str)
    tops = tuple(sorted({str(f).replace("\\", "/").split("/")[0].removesuffix(".py") for f in files
                         if not str(f).startswith("..")}))
    where = SiblingRoot(str(Path(dist.locate_file(""))), "", tops)
    for f in files:
        rel = str(f).replace("\\", "/")
        parts = rel.split("/")
        if rel.startswith("..") or any(p in FOLDER_EXCLUDE for p in parts):
            continue
        if not include_tests and any(p in ("test", "tests") or p.startswith("test_") for p in parts):
            continue
        text, why = _read(Path(dist.locate_file(f)))
        yield SourceFile(label, rel, text, lic, unreadable=why, siblings=where)


def iter_dataset(dataset: Any, column: str = "content", path_column: str | None = None,
                 license_column: str | None = None, source: str = "hf") -> Iterator[SourceFile]:
    """Rows of a ``datasets.Dataset`` or ``IterableDataset`` (streaming) with source code in ``column``.

    ``path_column``/``license_column`` are used when given (or when columns named ``path``/``license`` exist);
    otherwise rows are named ``row<N>`` and their module name is ``row<N>``.
    """
    names = set(getattr(dataset, "column_names", None) or [])
    if path_column is None and "path" in names:
        path_column = "path"
    if license_column is None and "license" in names:
        license_column = "license"
    for i, row in enumerate(dataset):
        if i == 0 and column not in row:
            raise KeyError(f"the dataset has no code column {column!r} (its columns: {sorted(row)}); pass "
                           f"column=... (--column, or hf:PATH#column)")
        text = row.get(column)
        why = None
        if not isinstance(text, str):
            text, why = "", "not_text"
        elif len(text) > MAX_FILE_BYTES:
            text, why = "", "too_large"
        path = row.get(path_column) if path_column else None
        path = str(path) if path else f"row{i}.py"
        lic = row.get(license_column) if license_column else None
        if isinstance(lic, list):
            lic = "; ".join(map(str, lic)) or None
        module = None
        if not path_column:
            module = f"row{i}"
        yield SourceFile(source, path, text, str(lic) if lic else None, module, unreadable=why)


def load_dataset_source(spec: str, split: str = "train", streaming: bool = True):
    """A dataset from a local ``save_to_disk`` folder, a ``.jsonl``/``.json``/``.parquet``/``.csv`` file, or
    (for users) a Hub name."""
    import datasets

    p = Path(spec)
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "state.json").exists() or
                       (p / "dataset_dict.json").exists()):
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
        return ds.to_iterable_dataset() if streaming else ds
    suffix = "".join(p.suffixes[-2:]) if p.exists() else ""
    for ext, builder in ((".jsonl", "json"), (".json", "json"), (".parquet", "parquet"), (".csv", "csv")):
        if p.exists() and (suffix.endswith(ext) or suffix.endswith(ext + ".gz")):
            return datasets.load_dataset(builder, data_files=str(p), split=split, streaming=streaming)
    return datasets.load_dataset(spec, split=split, streaming=streaming)


def parse_source(spec: str, column: str = "content", split: str = "train") -> Iterator[SourceFile]:
    """A source from its command-line spec:

    * ``stdlib`` or ``stdlib:textwrap,json`` — the standard library (or some of its modules);
    * ``dist:NAME`` — an installed distribution;
    * ``hf:PATH_OR_NAME`` (optionally ``#column``) — a dataset with a code column (streamed);
    * a folder or a ``.py`` file.
    """
    if spec == "stdlib" or spec.startswith("stdlib:"):
        mods = spec.partition(":")[2]
        return iter_stdlib([m for m in mods.split(",") if m] or None)
    if spec.startswith("dist:"):
        return iter_distribution(spec[5:])
    if spec.startswith("hf:"):
        name, _, col = spec[3:].partition("#")
        ds = load_dataset_source(name, split=split, streaming=True)
        return iter_dataset(ds, column=col or column, source=f"hf:{Path(name).name if Path(name).exists() else name}")
    p = Path(spec)
    if p.exists():
        return iter_folder(p)
    raise ValueError(f"unknown source {spec!r}: expected a folder, a .py file, 'stdlib[:mods]', 'dist:NAME' or "
                     f"'hf:PATH_OR_NAME[#column]'")


def iter_sources(sources: Iterable[Any], column: str = "content") -> Iterator[SourceFile]:
    """Chain sources given as specs (strings/paths), datasets, or iterables of :class:`SourceFile`. Two folders
    with the same name (``a/src`` and ``b/src``) get distinct labels, so that their task ids cannot collide."""
    roots: dict[str, str] = {}  # label -> the folder that has it
    for s in sources:
        if isinstance(s, SourceFile):
            yield s
        elif isinstance(s, (str, os.PathLike)):
            spec = str(s)
            folder = Path(spec)
            if not spec.startswith(("stdlib", "dist:", "hf:")) and folder.exists():
                root = str(folder.resolve())
                label = folder_label(folder)
                if roots.setdefault(label, root) != root:
                    label += "-" + hashlib.blake2b(root.encode(), digest_size=3).hexdigest()
                    roots[label] = root
                yield from iter_folder(folder, source=label)
                continue
            yield from parse_source(spec, column=column)
        elif hasattr(s, "column_names") or type(s).__name__ in ("Dataset", "IterableDataset"):
            yield from iter_dataset(s, column=column)
        else:
            yield from s
