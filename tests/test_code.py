"""Getting a program out of a model's answer (`trl_unittest.code`): markdown fences, answers that close a fence
they never opened, chat messages, and where a sampled generation ends. Pure text: nothing is executed here."""

import pytest

from trl_unittest.code import (adds_code, build_program, completion_text, cut_generation, fenced_code, prompt_text,
                               truncate_completion)

PROMPT = "def add(a, b):\n"
BODY = "    return a + b\n"
DEF = "def add(a, b):\n    return a + b\n"


@pytest.mark.parametrize("answer", [
    f"```python\n{DEF}```\n",
    f"Here:\n```py\n{DEF}```\nThat's it.",
    f"```\n{DEF}```",
    f"```python\r\n{DEF.replace(chr(10), chr(13) + chr(10))}```\r\n",              # Windows line ends
    f"Install:\n```bash\npip install x\n```\nThen:\n```python\n{DEF}```\n",      # a shell block first
    f"```python\n{DEF}```\nExample:\n```\n>>> add(1, 2)\n3\n```\n",              # an untagged example after
    f"```text\nnotes\n```\n```\n{DEF}```",                                         # only the untagged block is code
    f"````python\n{DEF}````\n",                                                      # a longer fence
    f"```python\n{DEF}",                                                            # cut short before the close
])
def test_fenced_answers_give_their_python_blocks(answer):
    assert build_program(PROMPT, answer, "add", truncate=True) == DEF


def test_fence_edge_cases():
    assert fenced_code("no fence at all") is None
    assert fenced_code("```bash\nls\n```\n") == ""  # fences, but no Python in them
    both = fenced_code("```python\ndef f():\n    pass\n```\n```python\ndef g():\n    pass\n```")
    assert "def f" in both and "def g" in both


@pytest.mark.parametrize("truncate", [True, False])
def test_a_closing_fence_the_answer_never_opened_ends_the_code(truncate):
    # completion-style: the prompt (or a chat template) opened the block, the model closes it
    assert build_program(PROMPT, BODY + "```\n\nThis adds the numbers.", "add", truncate) == PROMPT + BODY
    # chat: code, then a stray close
    chat = [{"role": "assistant", "content": DEF + "```\nDone."}]
    assert build_program([{"role": "user", "content": "add"}], chat, "add", truncate) == DEF
    # prose before an untagged fence is an opening, not a close
    assert build_program(PROMPT, "Here it is:\n```\n" + DEF + "```", "add", truncate) == DEF


def test_adds_code_looks_at_the_completion_only():
    assert adds_code(PROMPT, BODY + "```\n", "add", True)
    assert not adds_code(PROMPT, "    # nothing yet\n```\n", "add", True)
    assert not adds_code(PROMPT, "```python\n```", "add", True)
    assert not adds_code(PROMPT, "\n", "add", True)


def test_messages_and_contents():
    two = [{"role": "assistant", "content": "def add(a, b):\n    return a + b"},
           {"role": "assistant", "content": "def sub(a, b):\n    return a - b"}]
    assert completion_text(two) == "def add(a, b):\n    return a + b\ndef sub(a, b):\n    return a - b"
    assert completion_text({"role": "assistant", "content": [{"type": "text", "text": "x = 1"}]}) == "x = 1"
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    assert prompt_text([{"role": "system", "content": None}, {"role": "user", "content": "hi"}]) == "\nhi"
    assert prompt_text([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]) == "hi"
    with pytest.raises(TypeError, match="completion must be"):
        completion_text(3)


def test_where_a_generation_ends():
    # a body: at the first top-level line (as truncate_completion), and sampling may stop there
    assert cut_generation(BODY + "\nprint(add(1, 2))\n") == (BODY, True)
    assert cut_generation(BODY) == (BODY, False)
    assert cut_generation(" a + b\nfoo()", continues_line=True) == (" a + b\n", True)
    assert cut_generation(BODY + "\nprint(1)")[0] == truncate_completion(BODY + "\nprint(1)")
    # a whole answer is kept whole; a fenced one up to the end of its first block
    assert cut_generation(DEF + "\nprint(add(1, 2))\n") == (DEF + "\nprint(add(1, 2))\n", False)
    fenced = "```python\n" + DEF + "```\n"
    assert cut_generation(fenced + "More prose.\n") == (fenced, True)
    assert cut_generation("```python\n" + DEF + "```") == ("```python\n" + DEF + "```", False)  # close not done
    assert cut_generation("") == ("", False)


def test_fence_lines_are_read_as_before():
    from trl_unittest.code import _fence

    assert _fence("```python") == (3, "python") and _fence("  ````  py3 extra words") == (4, "py3")
    assert _fence("```") == (3, "") and _fence("\t```   ") == (3, "")
    assert _fence("``python") is None and _fence("``` a `b`") is None and _fence("x ```") is None


def _parse_seconds(text, repeat=3):
    import time

    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        build_program(PROMPT, text, "add", truncate=True)
        cut_generation(text)
        cut_generation(text, continues_line=True)
        best = min(best, time.process_time() - t0)
    return best


@pytest.mark.parametrize("line", [lambda n: "```" + " " * n + "`", lambda n: "```" + "a" * n + "`",
                                  lambda n: "`" * n, lambda n: "```py " + "x " * (n // 2)])
def test_completion_parsing_is_linear_time(line):
    # quadratic parsing would cost 16x from 10k to 40k characters; linear costs 4x (allow 8x for a loaded host)
    small = _parse_seconds("```python\n" + line(10_000) + "\n" + DEF + "```\n")
    large = _parse_seconds("```python\n" + line(40_000) + "\n" + DEF + "```\n")
    assert large < 8 * small + 0.02, (small, large)


def test_a_completion_nested_too_deeply_for_the_parser_is_not_an_exception():
    from trl_unittest.code import ast_fingerprint, normalized_ast

    deep = "def add(a, b):\n    return a" + " + b - b" * 1500 + "\n"
    adds_code(PROMPT, deep, "add", True)  # no RecursionError out of either
    build_program(PROMPT, deep, "add", truncate=True)
    mid = "def add(a, b):\n    return a" + " + b - b" * 400 + "\n"  # parses; the normalising walk would recurse out
    assert normalized_ast(mid) is None and len(ast_fingerprint(mid)) == 24
