"""Correct programs the reward must pass: plain CPython passes every one of them, so a failure here is a wrong
verdict on a correct solution (issue 15, section 4). Each is a task a policy may meet; the sandbox's limits are
the defaults, except where a test says why."""

import pytest

from trl_unittest.execution import ExecutionPool, Limits, Program
from trl_unittest.tasks import Test


@pytest.fixture(scope="module")
def default_pool():
    with ExecutionPool(num_workers=2, limits=Limits()) as pool:
        yield pool


def call(expr, expected):
    return [Test(expr=expr, expected=expected)]


BIG = 400_000  # lines of output: 2.6 MB, over the old 2 MiB read cap
CORRECT = {
    "stdout_over_2_mib": Program(
        "n = int(input())\nprint('\\n'.join(map(str, range(n))))\n",
        [Test(kind="io", stdin=f"{BIG}\n", expected="".join(f"{i}\n" for i in range(BIG)))]),
    "stdout_over_the_file_size_limit": Program(  # 12 MB of output, over RLIMIT_FSIZE (8 MB)
        "import sys\nn = int(input())\nfor _ in range(n):\n    sys.stdout.write('x' * 999 + '\\n')\n",
        [Test(kind="io", stdin="12000\n", expected=("x" * 999 + "\n") * 12000)]),
    "debug_prints_over_8_mb": Program(
        "import sys\ndef f(x):\n    for _ in range(100):\n        print('.' * 100_000)\n"
        "    sys.stderr.write('e' * 9_000_000)\n    return x + 1\n", call("f(1)", "2")),
    "multiprocessing_pool": Program(
        "import multiprocessing\ndef square(x):\n    return x * x\n"
        "def f(xs):\n    with multiprocessing.Pool(2) as p:\n        return p.map(square, xs)\n",
        call("f([1, 2, 3])", "[1, 4, 9]")),
    "multiprocessing_in_a_stdin_program": Program(
        "from multiprocessing import Pool\ndef square(x):\n    return x * x\n"
        "if __name__ == '__main__':\n    with Pool(2) as p:\n        print(sum(p.map(square, range(int(input())))))\n",
        [Test(kind="io", stdin="4\n", expected="14\n")]),
    "shared_memory": Program(
        "from multiprocessing import shared_memory\ndef f():\n    shm = shared_memory.SharedMemory(create=True, size=16)\n"
        "    shm.buf[0] = 7\n    v = shm.buf[0]\n    shm.close(); shm.unlink()\n    return v\n", call("f()", "7")),
    "getpass_getuser": Program("import getpass\ndef f():\n    return len(getpass.getuser()) > 0\n", call("f()", "True")),
    "threads": Program(
        "import threading\ndef f():\n    out = []\n    ts = [threading.Thread(target=out.append, args=(i,)) for i in range(8)]\n"
        "    [t.start() for t in ts]\n    [t.join() for t in ts]\n    return sorted(out)\n", call("f()", str(list(range(8))))),
    "scratch_files": Program(
        "import os, tempfile\ndef f():\n    for i in range(500):\n        open(f'f{i}', 'w').write('x')\n"
        "    with tempfile.TemporaryDirectory() as d:\n        pass\n    return len(os.listdir('.'))\n", call("f()", "500")),
    "deep_recursion": Program("def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\n", call("f(2500)", "2500")),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_program_passes(name, default_pool):
    result = default_pool.run(CORRECT[name])
    assert result.all_passed, (name, result.status, result.error, [(t.outcome, t.error_type) for t in result.tests],
                               result.stderr[-500:])


def test_output_beyond_the_graded_size_fails_and_is_not_kept():
    limits = Limits(graded_output_bytes=1 << 20)
    with ExecutionPool(num_workers=1, limits=limits) as pool:
        flood = Program("print('x' * (3 << 20))", [Test(kind="io", stdin="", expected="x" * (3 << 20))])
        result = pool.run(flood)
        assert result.tests[0].outcome == "failed" and result.tests[0].error_type == "OutputTooLarge"
        assert len(result.tests[0].stdout) < (1 << 20)


def test_allowed_packages_are_importable_and_others_are_not():
    numpy = pytest.importorskip("numpy")
    program = Program("import numpy as np\ndef f(n):\n    return int(np.arange(n).sum())\n", call("f(5)", "10"))
    with ExecutionPool(num_workers=1, packages=["numpy"]) as pool:
        assert pool.run(program).all_passed
        other = pool.run(Program("def f():\n    import pytest\n", [Test(expr="f()", op="raises",
                                                                        exception="ModuleNotFoundError")]))
        assert other.all_passed  # only the listed package is mounted, not the environment
    with ExecutionPool(num_workers=1) as pool:
        assert pool.run(program).status == "import_error"
    with pytest.raises(ValueError, match="not installed"):
        ExecutionPool(num_workers=1, packages=["no_such_package_here"])
    assert numpy
