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

# What a failed parse of untrusted text can raise: besides syntax errors, nesting deeper than the parser or the
# AST constructor allows (RecursionError, MemoryError), null bytes (ValueError), gh-106905's SystemError.
PARSE_FAILURES = (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError, SystemError)

_PYTHON_TAGS = {"", "python", "python3", "py", "py3"}
_FIRST_WORD = re.compile(r"\S*")


def _fence(line: str) -> tuple[int, str] | None:
    """``(number of backticks, language)`` when ``line`` is a markdown fence line: optional indentation, three or
    more backticks, then an optional info string without backticks (its first word is the language); else None.
    Python blocks are the untagged ones and those tagged as Python; other blocks (shell, output, text) are not
    code to run. Scanned by hand in linear time: the equivalent regular expression backtracks quadratically on a
    long line (a 20,000-character line cost 8 s) and this runs on every completion and every decoding step."""
    rest = line.lstrip(" \t")
    ticks = len(rest) - len(rest.lstrip("`"))
    if ticks < 3:
        return None
    info = rest[ticks:]
    if "`" in info:
        return None
    return ticks, _FIRST_WORD.match(info.lstrip(" \t")).group(0)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or chat messages (the assistant messages' contents, one per line)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        return "\n".join(_content_text(m.get("content")) for m in completion
                         if isinstance(m, dict) and m.get("role", "assistant") == "assistant")
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # multimodal-style content: [{"type": "text", "text": ...}, ...]
    if isinstance(content, list):
        return "".join(str(c.get("text") or "") for c in content if isinstance(c, dict))
    return str(content)


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: a string, or chat messages (their contents, one per line)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "\n".join(_content_text(m.get("content")) for m in prompt if isinstance(m, dict))
    return ""


def _fence_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block in order; an opening fence closes at the next fence line of at
    least as many backticks, or at the end of the text (a generation cut short)."""
    blocks: list[tuple[str, str]] = []
    lang, ticks, body = None, 0, []
    for line in _normalise_newlines(text).split("\n"):
        m = _fence(line)
        if lang is None:
            if m:
                lang, ticks, body = m[1].lower(), m[0], []
        elif m and m[0] >= ticks and not m[1]:
            blocks.append((lang, "\n".join(body)))
            lang = None
        else:
            body.append(line)
    if lang is not None:
        blocks.append((lang, "\n".join(body)))
    return blocks


def fenced_code(text: str) -> str | None:
    """The Python code blocks of a markdown answer joined, or None when the text holds no fenced block. Blocks
    tagged as Python are the code when there are any (untagged blocks beside them are usually examples or
    output); otherwise the untagged blocks are. Shell, output and other tagged blocks never are."""
    blocks = _fence_blocks(text)
    if not blocks:
        return None
    tagged = [b for lang, b in blocks if lang in _PYTHON_TAGS and lang and b.strip()]
    code = tagged or [b for lang, b in blocks if not lang and b.strip()]
    return "\n".join(b.rstrip() for b in code) + "\n" if code else ""


def _before_closing_fence(text: str, prefix: str) -> str | None:
    """A completion that goes on with code and then closes a fence it never opened (the prompt opened it, or the
    model imitates markdown): the text before that fence line, when ``prefix`` + it parses; else None."""
    lines = _normalise_newlines(text).split("\n")
    for i, line in enumerate(lines):
        m = _fence(line)
        if m is None:
            continue
        before = "\n".join(lines[:i])
        if m[1] or not before.strip() or not _parses(prefix + before + "\n"):
            return None
        return before + "\n"
    return None


def source_lines(text: str) -> list[str]:
    """The lines of a source as the parser numbers them (with their ends). ``str.splitlines`` also breaks at form
    feeds, ``\\x1c``-``\\x1e``, ``\\x85`` and ``\\u2028``/``\\u2029``, which Python allows inside comments and strings,
    and every line after one would be off by one."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)


def defines(code: str, name: str) -> bool:
    """Whether the code defines `name` at module level (def, class or assignment); False when it does not parse."""
    try:
        tree = parse(code)
    except PARSE_FAILURES:
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


def cut_generation(text: str, continues_line: bool = False) -> tuple[str, bool]:
    """Where a sampled completion ends: ``(completion, ended)``; ``ended`` says that sampling can stop.

    A completion that goes on inside the prompt's function (its first non-blank line is indented, or it continues
    the prompt's last line) ends before its first top-level line (:func:`truncate_completion`). One whose first
    non-blank line starts at column 0 is a whole answer (definitions, or a markdown fence): it is kept whole, up
    to the end of its first fenced block when it opens with one, so that :func:`build_program` can find its code
    as the reward does in training."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if continues_line or first is None or lines[first][0].isspace():
        cut = truncate_completion(text, continues_line)
        return cut, cut != text
    opening = _fence(lines[first])
    if opening is None:
        return text, False
    ticks = opening[0]
    for i in range(first + 1, len(lines) - 1):  # a closing fence line counts once its newline is there
        m = _fence(lines[i])
        if m and m[0] >= ticks and not m[1]:
            return "\n".join(lines[:i + 1]) + "\n", True
    return text, False


def build_program(prompt: Any, completion: Any, entry_point: str = "", truncate: bool = False) -> str:
    """The program to test for a completion.

    * chat completions and answers with markdown fences: the fenced code (or the whole answer);
    * completion-style: ``prompt + completion`` (the prompt ends inside the function to complete), unless the
      completion alone defines the entry point and the joined text does not parse, in which case the
      completion stands alone. With ``truncate``, a completion-style body is first cut at its first top-level
      line (:func:`truncate_completion`), as evaluation does.
    """
    head, code = _split_answer(prompt, completion, entry_point, truncate)
    return head + code


def adds_code(prompt: Any, completion: Any, entry_point: str = "", truncate: bool = False) -> bool:
    """Whether the completion contributes code to its program. An empty (or comment-only) body does not: for a
    completion-style prompt the prompt alone is a valid function returning None, which would otherwise score as
    a mere failed test, and RL learns to stop at once (seen in the quickstart)."""
    _, code = _split_answer(prompt, completion, entry_point, truncate)
    return any(line.strip() and not line.strip().startswith("#") for line in code.splitlines())


def _split_answer(prompt: Any, completion: Any, entry_point: str, truncate: bool) -> tuple[str, str]:
    """(what of the prompt the program starts with, the code the completion contributes): see build_program."""
    text = completion_text(completion)
    completion_style = isinstance(completion, str) and isinstance(prompt, str)
    closed = _before_closing_fence(text, prompt if completion_style else "")
    if closed is not None:
        text = closed
    else:
        fenced = fenced_code(text)
        if fenced is not None:
            return "", fenced
    if not completion_style:
        return "", text
    if entry_point and defines(text, entry_point):  # a whole definition: keep it (and the prompt's context)
        return (prompt if _parses(prompt + text) else ""), text
    if truncate:
        text = truncate_completion(text, continues_line=not prompt.endswith("\n"))
    return prompt, text


def _parses(code: str) -> bool:
    try:
        parse(code)
    except PARSE_FAILURES:
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
        # both walks recurse once per level: a parse that just fits can still nest too deeply for them
        return _stable_dump(_Normaliser().visit(tree))
    except PARSE_FAILURES:
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
    return _fingerprint_key(key)


def tree_fingerprint(tree: ast.AST) -> str | None:
    """``ast_fingerprint`` of the code a parsed tree holds, without unparsing it to parse it again (the tree is
    normalised in place); None when the tree nests too deeply for the normalising walks."""
    try:
        return _fingerprint_key(_stable_dump(_Normaliser().visit(tree)))
    except RecursionError:
        return None


def _fingerprint_key(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
