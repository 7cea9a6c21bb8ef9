"""Sibling modules of a source: where ``from .util import helper``, ``from pkg.util import CONST`` or
``import pkg.util as u`` lead when ``pkg`` is the source's own package, so that extraction can carry the
definitions a function needs from them (see ``ModuleIndex.closure``).

A :class:`Siblings` reads and parses the other files of one source (``SourceFile.siblings`` says where they lie)
and keeps their indexes, so the static stages stay functions of the file: in a worker process the files are read
from the same disk. Nothing here imports or runs the code it reads.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from trl_unittest.data.extract import ModuleIndex, parse
from trl_unittest.data.sources import SiblingRoot, _read

# parsed sibling modules kept per source (a worker sees one source's files in a row, mostly)
MAX_CACHED_MODULES = 128


class Siblings:
    """The modules of one source, by path relative to its root (the keys ``SourceFile.path`` uses)."""

    def __init__(self, where: SiblingRoot, max_depth: int = 3, max_context_lines: int = 200):
        self.where = where
        self.root = Path(where.root)
        self.max_depth = max_depth
        self.max_context_lines = max_context_lines
        self._indexes: OrderedDict[str, ModuleIndex | None] = OrderedDict()
        self.parsed = 0  # modules read and parsed so far (the static stages freeze them out of the collector's way)

    def _file(self, parts: list[str]) -> str | None:
        """The module file of ``parts`` (path parts below the root), if the source owns one."""
        stem = "/".join(parts)
        for rel in ((stem + ".py") if stem else None, (stem + "/__init__.py") if stem else "__init__.py"):
            if rel and self.where.owns(rel) and os.path.isfile(self.root / rel):
                return rel
        return None

    def module_file(self, importer: str, module: str | None, level: int) -> str | None:
        """The file ``from <level dots><module> import ...`` (or ``import <module>``) in ``importer`` names,
        when it is a module of this source."""
        here = importer.split("/")[:-1]  # the importer's package folder
        names = module.split(".") if module else []
        if level:
            if level - 1 > len(here):
                return None  # above the source's root
            return self._file(here[:len(here) - (level - 1)] + names)
        package = self.where.package.split(".") if self.where.package else []
        if package and names[:len(package)] == package:
            return self._file(names[len(package):])
        if not package and names:
            found = self._file(names)
            if found:
                return found
        # a script-style import of a module beside the importer (`from b import CONST` next to b.py)
        return self._file(here + names) if names else None

    def index(self, rel: str) -> ModuleIndex | None:
        """The parsed module at ``rel``; None when it cannot be read or parsed."""
        if rel in self._indexes:
            self._indexes.move_to_end(rel)
            return self._indexes[rel]
        text, why = _read(self.root / rel)
        idx = None
        if why is None:
            try:
                idx = ModuleIndex(parse(text), text, self.max_context_lines)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                idx = None
        self._indexes[rel] = idx
        self.parsed += 1
        if len(self._indexes) > MAX_CACHED_MODULES:
            self._indexes.popitem(last=False)
        return idx

    def cached(self, rel: str, text: str) -> ModuleIndex | None:
        """The index kept for module ``rel`` if it was parsed from ``text``: the file being extracted, when an
        earlier file's imports made it parse already (208 parses of the benchmark set's 1,530 files). Looking only:
        keeping the extracted files' indexes too pushed out the siblings that many files import, and cost more
        than it saved."""
        idx = self._indexes.get(rel)
        return idx if idx is not None and idx.text == text else None

    def resolve(self, importer: str, module: str | None, level: int, name: str | None
                ) -> tuple[str, str | None] | None:
        """Where an imported name comes from: (module file, name in it), or (module file, None) when the import
        binds a module object (``import pkg.util as u``, ``from pkg import util``); None when it is not a
        module of this source."""
        rel = self.module_file(importer, module, level)
        if rel is None:
            return None
        if name is None:
            return rel, None
        idx = self.index(rel)
        if idx is None:
            return None
        if name not in idx.bindings and rel.endswith("__init__.py"):
            sub = self._file(rel.split("/")[:-1] + [name])
            if sub is not None:
                return sub, None
        return rel, name
