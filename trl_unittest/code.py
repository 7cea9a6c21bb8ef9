"""Source-code helpers shared by the reward, the builder and the trainer: getting a program out of a model
completion, and a normalised-AST fingerprint for deduplication (builder) and diversity (replay buffer)."""

from __future__ import annotations

import ast
import hashlib
import re
import threading
from typing import Any

# CPython 3.11 keeps ast.parse's recursion counter in shared module state, so parses running in two threads at
# once can fail with "SystemError: AST constructor recursion depth mismatch" (python/cpython gh-106905, fixed in
# 3.12). The executor grades results on its dispatcher threads; every parse of ours goes through this lock and
# retries once if a parse outside the lock (user code) collided with it.
_PARSE_LOCK = threading.Lock()


def parse(source: str, mode: str = "exec") -> ast.AST:
    """``ast.parse`` made safe to call from several threads on CPython 3.11 (see above)."""
    for attempt in range(3):
        with _PARSE_LOCK:
            try:
                return ast.parse(source, mode=mode)
            except SystemError:
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (the assistant's contents joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        parts = [m.get("content") or "" for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        return "".join(p if isinstance(p, str) else _content_text(p) for p in parts)
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


def _content_text(content: Any) -> str:
    # multimodal-style content: [{"type": "text", "text": ...}, ...]
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return str(content)


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: a string, or chat messages (their contents joined)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "\n".join(m.get("content") or "" if isinstance(m.get("content"), str) else _content_text(m.get("content"))
                         for m in prompt if isinstance(m, dict))
    return ""


def fenced_code(text: str) -> str | None:
    """The code blocks of a markdown answer joined, or None when there is no fence."""
    blocks = _FENCE.findall(text)
    return "\n".join(b.rstrip() for b in blocks) + "\n" if blocks else None


def defines(code: str, name: str) -> bool:
    """Whether the code defines `name` at module level (def, class or assignment); False when it does not parse."""
    try:
        tree = parse(code)
    except (SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def truncate_completion(completion: str, continues_line: bool = False) -> str:
    """Cut a completion at its first non-blank line that starts at column 0 (a new top-level statement).

    ``continues_line``: the prompt does not end with a newline, so the completion's first line continues the
    prompt's last line and is never a cut point."""
    lines = completion.split("\n")
    kept = []
    for i, line in enumerate(lines):
        if i == 0 and continues_line:
            kept.append(line)
            continue
        if line.strip() and not line[0].isspace():
            break
        kept.append(line)
    else:
        return completion
    return "\n".join(kept).rstrip() + "\n"


def build_program(prompt: Any, completion: Any, entry_point: str = "", truncate: bool = False) -> str:
    """The program to test for a completion.

    * chat completions and answers with markdown fences: the fenced code (or the whole answer);
    * completion-style: ``prompt + completion`` (the prompt ends inside the function to complete), unless the
      completion alone defines the entry point and the joined text does not parse, in which case the
      completion stands alone. With ``truncate``, a completion-style body is first cut at its first top-level
      line (:func:`truncate_completion`), as evaluation does.
    """
    text = completion_text(completion)
    fenced = fenced_code(text)
    conversational = not isinstance(completion, str)
    if fenced is not None:
        return fenced
    if conversational or not isinstance(prompt, str):
        return text
    if entry_point and defines(text, entry_point):  # a whole definition: keep it (and the prompt's context)
        return prompt + text if _parses(prompt + text) else text
    if truncate:
        text = truncate_completion(text, continues_line=not prompt.endswith("\n"))
    return prompt + text


def adds_code(prompt: Any, completion: Any, entry_point: str = "", truncate: bool = False) -> bool:
    """Whether the completion contributes code to its program. An empty (or comment-only) body does not: for a
    completion-style prompt the prompt alone is a valid function returning None, which would otherwise score as
    a mere failed test, and RL learns to stop at once (seen in the quickstart)."""
    text = completion_text(completion)
    if not (isinstance(prompt, str) and isinstance(completion, str)) or fenced_code(text) is not None:
        text = build_program(prompt, completion, entry_point, truncate)
    elif truncate and not (entry_point and defines(text, entry_point)):
        text = truncate_completion(text, continues_line=not prompt.endswith("\n"))
    return any(line.strip() and not line.strip().startswith("#") for line in text.splitlines())


def _parses(code: str) -> bool:
    try:
        parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def rename_names(tree: ast.AST, mapping: dict[str, str]) -> ast.AST:
    """Renames ``Name`` nodes of ``tree`` in place by a mapping (old name -> new name); returns ``tree``.
    A plain walk: about half the cost of a ``NodeTransformer``, which rebuilds every field."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            node.id = mapping[node.id]
    return tree


class _Normaliser(ast.NodeTransformer):
    """Renames locals and arguments to positional names and drops docstrings, so that programs which differ
    only in naming, comments, formatting or docstrings get the same fingerprint."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _rename(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_FunctionDef(self, node):  # noqa: N802 (ast API)
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arg(self, node):  # noqa: N802
        node.arg = self._rename(node.arg)
        node.annotation = None
        return node

    def visit_Name(self, node):  # noqa: N802
        if isinstance(node.ctx, ast.Store) or node.id in self.names:
            node.id = self._rename(node.id)
        return node


def normalized_ast(code: str) -> str | None:
    """A canonical dump of the code's AST (names of locals normalised, docstrings dropped), or None if the code
    does not parse."""
    try:
        tree = parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    tree = _Normaliser().visit(tree)
    try:
        return _stable_dump(tree)
    except RecursionError:
        return None


def _stable_dump(node: Any) -> str:
    """Like ``ast.dump``, but leaving out empty fields (None, []): a field that a newer Python adds with an empty
    default (3.12's ``FunctionDef.type_params``) would otherwise change every fingerprint, and with them the
    exercise split of ``trl_unittest.models``, from one Python version to the next."""
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or (isinstance(value, list) and not value):
                continue
            fields.append(f"{name}={_stable_dump(value)}")
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return "[" + ", ".join(_stable_dump(x) for x in node) + "]"
    return repr(node)


def ast_fingerprint(code: str) -> str:
    """A short hash of the normalised AST; code that does not parse is fingerprinted by its stripped text."""
    norm = normalized_ast(code)
    key = norm if norm is not None else "unparsed:" + "\n".join(line.rstrip() for line in code.strip().splitlines())
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
