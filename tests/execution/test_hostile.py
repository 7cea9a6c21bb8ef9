"""Hostile programs: each must get no false pass and leave no trace outside the sandbox.

Every program here is a "solution" to a task whose expected values are random numbers drawn by this test
process: they never enter the sandbox, so a program can only pass by breaking isolation (reading them from
the parent, the environment, files or memory) or by forging a verdict. After each program the pool must still
give correct verdicts. CI runs this suite behind an outer guard too (pid namespace + pids/memory cgroups,
see .ci/guard), so that a sandbox bug fails a test instead of taking down the machine.
"""

import os
import random
import shutil
import socket
import threading
import time

import pytest

from trl_unittest.execution import ExecutionPool, Limits, Program
from trl_unittest.tasks import Test

pytestmark = pytest.mark.hostile

SECRET = f"s3cr3t-{random.getrandbits(64):x}"
EXPECTED = [random.randrange(10**12, 10**13) for _ in range(3)]
MARKER = f"trl_ut_hostile_{os.getpid()}_{random.getrandbits(32):x}"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Things on the host that programs will try to reach: a secret env var, canary files in a home-like dir
    and in the working tree, and a listening TCP socket."""
    os.environ["TRL_UT_SECRET"] = SECRET
    home = tmp_path_factory.mktemp("home")
    canary = home / ".credentials"
    canary.write_text(SECRET)
    workfile = os.path.join(os.getcwd(), f".{MARKER}_canary")
    with open(workfile, "w") as f:
        f.write(SECRET)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    connections = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                connections.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    info = {"home": str(home), "canary": str(canary), "workfile": workfile, "port": server.getsockname()[1],
            "connections": connections, "outside": str(home / f"{MARKER}_written")}
    yield info
    stop.set()
    thread.join()
    server.close()
    os.remove(workfile)
    del os.environ["TRL_UT_SECRET"]


@pytest.fixture(scope="module")
def hostile_pool():
    limits = Limits(test_timeout=1.0, setup_timeout=2.0, memory_bytes=512 << 20, file_size_bytes=1 << 20)
    with ExecutionPool(num_workers=2, sandbox="auto", limits=limits) as pool:
        yield pool


def make_tests(kind="call"):
    if kind == "code":  # check code with a loop: it runs in the proxy harness's test process
        check = f"def check(candidate):\n    for i, e in enumerate({EXPECTED!r}):\n        assert candidate(i) == e\n"
        return [Test(kind="code", code=check + "check(solve)")]
    return [Test(kind="call", expr=f"solve({i})", expected=str(e)) for i, e in enumerate(EXPECTED)]


# name -> program source (format fields: {home} {canary} {workfile} {port} {outside} {marker})
HOSTILE = {
    # --- file system
    "write_outside_scratch": "open({outside!r}, 'w').write('x')\ndef solve(i): return 0",
    "write_working_tree": "open({workfile!r}, 'w').write('pwned')\ndef solve(i): return 0",
    "delete_canary": "import os\nos.remove({canary!r})\ndef solve(i): return 0",
    "write_system_dirs": "for p in ('/usr/pwned', '/etc/pwned', '/pwned', '/tmp/pwned', '/dev/shm/pwned'):\n"
                         "    try: open(p, 'w').write('x')\n    except OSError: pass\ndef solve(i): return 0",
    "read_home_canary": "def solve(i):\n    return open({canary!r}).read()",
    "list_home_dirs": "import os\ndef solve(i):\n    out = []\n    for d in ('/root', '/home', {home!r}, '/work'):\n"
                      "        try: out += os.listdir(d)\n        except OSError as e: out.append(str(e))\n    return str(out)",
    "read_working_tree": "def solve(i):\n    return open({workfile!r}).read()",
    "walk_filesystem_for_secret": "import os\ndef solve(i):\n    for root, dirs, files in os.walk('/'):\n"
                                  "        if root.startswith('/proc') or root.startswith('/sys'): continue\n"
                                  "        for f in files:\n            try:\n                d = open(os.path.join(root, f), 'rb').read(1 << 16)\n"
                                  "            except Exception: continue\n            if b's3cr3t-' in d: return d.decode('latin1')\n    return 0",
    "fill_disk": "def solve(i):\n    with open('big', 'wb') as f:\n        while True: f.write(b'x' * (1 << 20))",
    "many_files": "def solve(i):\n    n = 0\n    while True:\n        open(f'f{{n}}', 'w').write('x' * 4096); n += 1",
    "leave_file_for_next_program": "open('/tmp/scratch/leftover', 'w').write('{marker}')\nopen('leftover', 'w').write('x')\ndef solve(i): return 0",
    # --- network
    "connect_localhost": "import socket\ndef solve(i):\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n    return 0",
    "dns_lookup": "import socket\ndef solve(i):\n    return str(socket.getaddrinfo('pypi.org', 443))",
    "udp_send": "import socket\ndef solve(i):\n    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53)); return 0",
    # --- secrets in the environment and in other processes
    "env_secret": "import os\ndef solve(i):\n    return str(dict(os.environ))",
    "proc_environ_scan": "import os\ndef solve(i):\n    out = ''\n    for p in os.listdir('/proc'):\n        if p.isdigit():\n"
                         "            try: out += open(f'/proc/{{p}}/environ', 'rb').read().decode('latin1')\n"
                         "            except OSError: pass\n    return out",
    "proc_cmdline_scan": "import os\ndef solve(i):\n    out = []\n    for p in os.listdir('/proc'):\n        if p.isdigit():\n"
                         "            try: out.append(open(f'/proc/{{p}}/cmdline', 'rb').read().decode('latin1'))\n"
                         "            except OSError: pass\n    return str(out)",
    "read_parent_memory": "import os, re\ndef solve(i):\n    pid = os.getppid()\n    maps = open(f'/proc/{{pid}}/maps').read()\n"
                          "    mem = open(f'/proc/{{pid}}/mem', 'rb')\n    return 0",
    "read_parent_fds": "import os\ndef solve(i):\n    pid = os.getppid()\n    return str([os.readlink(f'/proc/{{pid}}/fd/' + f) for f in os.listdir(f'/proc/{{pid}}/fd')])",
    "search_own_memory_for_expected": "import gc, re\ndef solve(i):\n    found = set()\n    for o in gc.get_objects():\n"
                                      "        items = o.values() if isinstance(o, dict) else (o if isinstance(o, (list, tuple)) else ())\n"
                                      "        for x in list(items):\n            if type(x) is int and 10**12 <= x < 10**13: found.add(x)\n"
                                      "            elif isinstance(x, str): found.update(re.findall(r'\\d{{13}}', x))\n"
                                      "    return str(sorted(map(str, found)))",
    "ptrace_parent": "import ctypes, os\ndef solve(i):\n    libc = ctypes.CDLL(None)\n    return libc.ptrace(16, os.getppid(), 0, 0)",
    # --- processes
    "fork_bomb": "import os\ndef solve(i):\n    while True:\n        try: os.fork()\n        except OSError: pass",
    "thread_bomb": "import threading, time\ndef solve(i):\n    while True:\n        threading.Thread(target=time.sleep, args=(100,)).start()",
    "subprocess_survives": "import subprocess\nsubprocess.Popen(['sleep', '1000.{marker_num}'])\ndef solve(i): return 0",
    "daemon_escapes": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        while True: time.sleep(1)\n"
                      "    os._exit(0)\ndef solve(i): return 0",
    "kill_parent": "import os, signal\ndef solve(i):\n    for p in (os.getppid(), 1):\n        try: os.kill(p, signal.SIGKILL)\n        except OSError: pass\n    return 0",
    "kill_everything": "import os, signal\ndef solve(i):\n    os.kill(-1, signal.SIGKILL)\n    return 0",
    "stop_parent": "import os, signal\ndef solve(i):\n    os.kill(os.getppid(), signal.SIGSTOP)\n    return 0",
    "setuid_root": "import os\ndef solve(i):\n    os.setuid(0)\n    return open({canary!r}).read()",
    "unshare_escape": "import ctypes\ndef solve(i):\n    libc = ctypes.CDLL(None)\n    return libc.unshare(0x10000000) or libc.unshare(0x00020000)",
    # --- resources and time
    "memory_bomb": "def solve(i):\n    return len(bytearray(1 << 34))",
    "memory_bomb_gradual": "def solve(i):\n    a = []\n    while True: a.append(' ' * (1 << 20))",
    "recursion_bomb": "import sys\nsys.setrecursionlimit(10**7)\ndef solve(i):\n    return solve(i + 1)",
    "c_level_sleep": "import time\ndef solve(i):\n    time.sleep(10**6)",
    "c_level_pause": "import signal\ndef solve(i):\n    signal.pause()",
    "c_level_lock": "import threading\ndef solve(i):\n    l = threading.Lock(); l.acquire(); l.acquire()",
    "catch_the_timer": "def solve(i):\n    while True:\n        try:\n            while True: pass\n        except BaseException: pass",
    "ignore_signals": "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU, signal.SIGHUP):\n"
                      "    signal.signal(s, signal.SIG_IGN)\ndef solve(i):\n    while True: pass",
    "hang_at_import": "while True: pass\ndef solve(i): return 0",
    "fd_exhaustion": "import os\ndef solve(i):\n    fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(100000)]",
    # --- exits
    "os_exit_before_tests": "import os\nos._exit(0)",
    "sys_exit_before_tests": "import sys\nsys.exit(0)",
    "os_exit_in_test": "import os\ndef solve(i):\n    os._exit(0)",
    "segfault": "import ctypes\ndef solve(i):\n    ctypes.string_at(0)",
    "abort": "import os\ndef solve(i):\n    os.abort()",
    # --- forged verdicts
    "forged_stdout": "import json\nprint(json.dumps({{'status': 'ran', 'tests': [{{'outcome': 'passed'}}] * 3}}))\nprint('3 passed, 0 failed')\n"
                     "def solve(i): return 0",
    "forged_frames_on_fds": "import os, json, struct\ndef frame(o):\n    d = json.dumps(o).encode()\n    return struct.pack('>I', len(d)) + d\n"
                            "for fd in range(0, 64):\n    for o in ({{'ev': 'done'}}, {{'status': 'ran', 'tests': [{{'outcome': 'ok', 'value': 'True'}}]}}):\n"
                            "        try: os.write(fd, frame(o))\n        except OSError: pass\ndef solve(i): return 0",
    "garbage_on_result_fd": "import os\nfor fd in range(3, 64):\n    try: os.write(fd, b'\\xff' * 100)\n    except OSError: pass\ndef solve(i): return 0",
    "huge_frame_on_result_fd": "import os, struct\nos.write(3, struct.pack('>I', 2**31) + b'{{')\ndef solve(i): return 0",
    "stdout_flood": "import sys\ndef solve(i):\n    while True: sys.stdout.write('x' * 65536)",
    "stderr_flood": "import os\ndef solve(i):\n    while True: os.write(2, b'y' * 65536)",
    # --- objects that lie
    "eq_always_true": "class A:\n    def __eq__(self, o): return True\n    __hash__ = object.__hash__\ndef solve(i): return A()",
    "int_subclass_eq": "class I(int):\n    def __eq__(self, o): return True\n    def __repr__(self): return '{e0}'\ndef solve(i): return I(0)",
    "str_subclass": "class S(str):\n    def __eq__(self, o): return True\ndef solve(i): return S('x')",
    "bool_trick": "class B:\n    def __bool__(self): return True\n    def __eq__(self, o): return True\ndef solve(i): return B()",
    "repr_trick": "class R:\n    def __repr__(self): return '{e0}'\ndef solve(i): return R()",
    "container_with_liar": "class A:\n    def __eq__(self, o): return True\ndef solve(i): return [A(), A()]",
    "self_referencing": "def solve(i):\n    a = []\n    a.append(a)\n    return a",
    "huge_return": "def solve(i): return 'x' * (1 << 26)",
    "deep_return": "def solve(i):\n    a = []\n    for _ in range(100000): a = [a]\n    return a",
    "generator_return": "def solve(i):\n    yield {e0}",
    "evil_exception": "class M(type):\n    @property\n    def __mro__(cls): raise RuntimeError\nclass E(Exception, metaclass=M):\n"
                      "    def __str__(self): raise RuntimeError\ndef solve(i): raise E()",
    # --- tampering with the harness and the interpreter
    "patch_builtins": "import builtins\nbuiltins.type = lambda *a: int\nbuiltins.repr = lambda o: '{e0}'\nbuiltins.isinstance = lambda *a: True\n"
                      "def solve(i): return object()",
    "patch_harness_encoder": "import __main__\n__main__.encode_value = lambda *a, **k: 'True'\ndef solve(i): return object()",
    "patch_harness_writer": "import __main__, os\n_w = os.write\n__main__.write_frame = lambda *a, **k: None\ndef solve(i): return 0",
    "patch_json_and_struct": "import json, struct\njson.dumps = lambda o: '{{\"ev\": \"done\"}}'\ndef solve(i): return 0",
    "frame_walk_edit_locals": "import sys\ndef solve(i):\n    f = sys._getframe(1)\n    while f:\n        if 'msg' in f.f_locals:\n"
                              "            f.f_locals['msg']['value'] = 'True'\n        f = f.f_back\n    return object()",
    "settrace_hijack": "import sys\ndef t(frame, event, arg):\n    frame.f_locals.get('msg', {{}}).update(value='True')\n    return t\n"
                       "def solve(i):\n    sys.settrace(t)\n    return object()",
    "atexit_and_del": "import atexit, os\natexit.register(lambda: os.write(3, b'x'))\nclass D:\n    def __del__(self): os.write(3, b'junk')\n"
                      "d = D()\ndef solve(i): return 0",
}


def render(source, host):
    return source.format(home=host["home"], canary=host["canary"], workfile=host["workfile"], port=host["port"],
                         outside=host["outside"], marker=MARKER, marker_num=random.getrandbits(20), e0=EXPECTED[0])


def _host_processes_matching(text):
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


def test_suite_is_large_enough():
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize("kind", ["call", "code"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_gets_no_pass_and_leaves_no_trace(name, kind, host, hostile_pool):
    source = render(HOSTILE[name], host)
    before = set(os.listdir(host["home"]))
    result = hostile_pool.run(Program(source, make_tests(kind)))
    # 1. no false pass, and nothing secret came out
    assert result.passed == 0, (name, result)
    observed = " ".join(str(t.observed) for t in result.tests) + result.stdout + result.stderr
    assert SECRET not in observed and str(EXPECTED[0]) not in observed, name
    # 2. no effect outside the sandbox
    assert set(os.listdir(host["home"])) == before, name
    assert open(host["canary"]).read() == SECRET and open(host["workfile"]).read() == SECRET
    assert not os.path.exists(host["outside"])
    assert not host["connections"], f"{name} reached a socket on the host"
    deadline = time.monotonic() + 5
    while _host_processes_matching("1000.") and "sleep" in source and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in _host_processes_matching("sleep") if "1000." in open(f"/proc/{p}/cmdline").read()]
    # 3. the pool still serves correct verdicts (both workers)
    good = Program("def solve(i):\n    return %r[i]\n" % (EXPECTED,), make_tests())
    assert all(r.all_passed for r in hostile_pool.run_batch([good, good, good]))


def test_state_does_not_leak_between_programs(hostile_pool):
    setter = Program("import builtins\nbuiltins.sorted = lambda x: [0]\nimport math\nmath.pi = 3\n"
                     "open('leftover', 'w').write('x')\ndef solve(i): return 0", make_tests())
    hostile_pool.run(setter)
    checker = Program("import math, os\ndef solve(i):\n    return [sorted([2, 1]), math.pi == 3, os.path.exists('leftover'),"
                      " os.listdir('/tmp')]\n", [Test(kind="call", expr="solve(0)", expected="[[1, 2], False, False, ['scratch']]")])
    for _ in range(3):  # whichever worker ran the setter
        assert hostile_pool.run(checker).all_passed


def test_sandbox_hides_home_and_working_tree(hostile_pool, host):
    probe = Program("import os\ndef solve(i):\n    return [os.path.exists(p) for p in (%r, %r, '/work', '/etc/passwd')]\n"
                    % (host["canary"], host["workfile"]), [Test(kind="call", expr="solve(0)", expected="[False, False, False, False]")])
    if hostile_pool.mode != "bwrap":
        pytest.skip("only bubblewrap hides the file system")
    r = hostile_pool.run(probe)
    assert r.tests[0].observed == "[False, False, False, False]"


# ------------------------------------------------------------------------- forgeries beyond returned values
def test_forged_exception_classes_do_not_pass_raises_tests(hostile_pool):
    """A program's own classes named like built-in (or preloaded stdlib) exceptions are reported as forged; a
    real subclass of ValueError still counts as a ValueError, as `except ValueError` would see it."""
    source = ("base = Exception\n"
              "for n in ['JSONDecodeError', 'KeyError', 'TypeError', 'ValueError']:\n"
              "    base = type(n, (base,), {'__module__': 'json.decoder' if n == 'JSONDecodeError' else 'builtins'})\n"
              "class Genuine(ValueError):\n    pass\n"
              "def solve(i):\n    raise (Genuine if i == 9 else base)()\n")
    names = ["ValueError", "TypeError", "KeyError", "json.decoder.JSONDecodeError"]
    tests = [Test(expr=f"solve({i})", op="raises", exception=e) for i, e in enumerate(names)]
    result = hostile_pool.run(Program(source, tests + [Test(expr="solve(9)", op="raises", exception="ValueError")]))
    assert [t.outcome for t in result.tests] == ["error"] * 4 + ["passed"]
    assert result.tests[0].exception_names[0] == "forged:ValueError"


def test_forged_frames_cannot_break_the_batch_or_claim_a_sandbox_error(hostile_pool):
    frame = ("import os, json, struct\n"
             "def frame(o):\n    d = json.dumps(o).encode()\n    os.write(3, struct.pack('>I', len(d)) + d)\n")
    programs = [
        frame + "frame({'ev': 'imported'})\nframe({'ev': 'result', 'i': 0, 'value': '2', 'arcs': [7], 'lines': 'x'})\n"
                "os._exit(0)\ndef solve(i): return 0\n",
        frame + "frame({'ev': 'setup_error', 'error': 'the sandbox broke'})\nos._exit(0)\ndef solve(i): return 0\n",
        "def solve(i):\n    return 10 ** 400\n",  # far beyond float range, graded against an approx test
    ]
    good = Program("def solve(i):\n    return 1\n", [Test(expr="solve(0)", expected="1")])
    tests = [Test(expr="solve(0)", op="approx", expected="1.0", rel_tol=1e-6)]
    results = hostile_pool.run_batch([good] + [Program(p, tests) for p in programs] + [good])
    assert results[0].all_passed and results[-1].all_passed
    assert [r.passed for r in results[1:-1]] == [0, 0, 0]
    assert results[2].status != "sandbox_error"


def test_stdin_tests_and_crashes_stop_after_max_timeouts(hostile_pool):
    hang = Program("while True:\n    pass\n", [Test(kind="io", stdin=str(i), expected="x") for i in range(5)])
    crash = Program("import os\ndef solve(i):\n    os._exit(0)\n", [Test(expr=f"solve({i})", expected="0") for i in range(5)])
    for result in hostile_pool.run_batch([hang, crash]):
        errors = [t.error_type for t in result.tests]
        assert result.passed == 0 and errors.count("NotRun") == 5 - hostile_pool.limits.max_timeouts, errors


def test_close_stops_a_running_program_and_cancels_the_queue():
    others = set(_host_processes_matching("trl_unittest/worker.py"))  # the module's pool
    pool = ExecutionPool(num_workers=1, limits=Limits(test_timeout=1.0))
    sleeper = Program("import time\ndef solve(i):\n    time.sleep(1000)\n", [Test(expr="solve(0)", expected="0")],
                      timeouts=[90.0])
    running = pool.submit(sleeper)
    queued = pool.submit(sleeper)
    time.sleep(1.0)
    t0 = time.monotonic()
    pool.close(grace=0.5)
    assert time.monotonic() - t0 < 20
    assert running.result(timeout=1).error == "PoolClosed" and queued.cancelled()
    assert set(_host_processes_matching("trl_unittest/worker.py")) <= others
    assert not [p for p in _host_processes_matching("sleep") if "1000" in open(f"/proc/{p}/cmdline").read()]


def test_ipc_keys_and_user_namespaces_are_refused_threads_and_forks_are_not(hostile_pool):
    """SysV shared memory and kernel keys would outlive the program (and its memory limit); a new user namespace
    would give it capabilities back. The worker's seccomp filter refuses them; ordinary concurrency still works."""
    libc = "import ctypes, os, subprocess, threading\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    probes = {
        "libc.shmget(0, 200 << 20, 0o1600)": "-1",
        "libc.semget(0, 1, 0o1600)": "-1",
        "libc.msgget(0, 0o1600)": "-1",
        "libc.syscall(248, b'user', b'k', b'v', 1, -3) if os.uname().machine == 'x86_64' else -1": "-1",
        "libc.unshare(0x10000000)": "-1",
        "subprocess.run(['unshare', '-U', 'true'], capture_output=True).returncode != 0": "True",
        "(lambda t: (t.start(), t.join(), 1)[2])(threading.Thread(target=lambda: None))": "1",
        "(lambda p: 7 if p == 0 and os._exit(7) else os.waitpid(p, 0)[1] >> 8)(os.fork())": "7",
        "subprocess.run(['true']).returncode": "0",
    }
    result = hostile_pool.run(Program(libc, [Test(expr=e, expected=v) for e, v in probes.items()]))
    assert [t.observed for t in result.tests] == list(probes.values())


# ------------------------------------------------------------------------------------ reward integrity (issue 15)
@pytest.mark.parametrize("test", [Test(expr="f()", op="truthy"), Test(expr="f()", op="falsy"),
                                  Test(expr="f()", op="is", expected="None"),
                                  Test(expr="f()", op="raises", exception="ValueError"),
                                  Test(expr="f()", expected="[0, 0]"), Test(expr="f()", op="ne", expected="[0, 0]"),
                                  Test(expr="f()", op="approx", expected="[0.5]", rel_tol=0.1)],
                         ids=lambda t: t.op)
def test_forged_huge_values_cost_the_trusted_side_nothing(test):
    """A program can write its own result frames: no observed value is parsed at a size the sandbox's encoder
    would never send (decoding costs ~4 s and 500 MB per MB), whatever the test's kind."""
    from trl_unittest.execution.results import grade_test

    honest_max = "[" + "0, " * ((1 << 20) // 3 - 1) + "0]"  # as long as the encoder sends
    forged = "[" + "[], " * 900_000 + "[]]"  # 3.6 MB: longer than it ever sends (decoded: 6 s, 1.3 GB)
    t0 = time.process_time()
    for value in (honest_max, forged):
        verdict = grade_test(test, {"outcome": "ok", "value": value, "t": 0.0})
        assert verdict.outcome != "passed" or test.op in ("truthy", "ne")
    assert grade_test(test, {"outcome": "ok", "value": forged, "t": 0.0}).error_type == "ProtocolError"
    assert time.process_time() - t0 < 1.0  # decoding either would take seconds


def _correct():
    return Program("def solve(i):\n    return %r[i]\n" % (EXPECTED,), make_tests())


def test_what_a_program_leaves_in_scratch_never_breaks_the_next_one(hostile_pool):
    """Trees rmtree cannot remove (1,100 nested directories, unreadable ones, links out, /dev/shm files), then a
    correct program on every worker: it passes, and sees nothing of the saboteur's."""
    saboteur = ("import os\n"
                "os.symlink('/usr', 'out')\n"
                "os.makedirs('locked/in'); open('locked/in/f', 'w').close(); os.chmod('locked/in', 0); os.chmod('locked', 0)\n"
                "open('/dev/shm/leak', 'w').write('x')\n"
                "for _ in range(1100):\n    os.mkdir('d'); os.chdir('d')\n"
                "open('deepest', 'w').write('x')\n"
                "def solve(i): return 0\n")
    looker = ("import os\ndef solve(i):\n    assert os.listdir('.') == [] and os.listdir('/dev/shm') == []\n"
              "    return %r[i]\n" % (EXPECTED,))
    for _ in range(2):
        assert hostile_pool.run(Program(saboteur, make_tests())).passed == 0
    results = hostile_pool.run_batch([Program(looker, make_tests())] * 4 + [_correct()] * 2)
    assert all(r.all_passed for r in results), [(r.status, r.error, [t.error_type for t in r.tests]) for r in results]
    assert os.path.isdir("/usr/bin")  # the link out was not followed


def test_a_program_that_closes_its_result_pipe_and_sleeps_costs_its_own_budget_only(hostile_pool):
    sleeper = Program("import os, time\ndef solve(i):\n    os.close(3)\n    time.sleep(1000)\n", make_tests())
    t0 = time.monotonic()
    result = hostile_pool.run(sleeper)
    took = time.monotonic() - t0
    limits = hostile_pool.limits
    assert [t.outcome for t in result.tests] == ["timeout"] * 3
    assert sum(not t.unrun for t in result.tests) == limits.max_timeouts
    assert took < limits.max_timeouts * (limits.test_timeout + limits.setup_timeout) + 3, took  # not the pool-wide 50 s


def test_no_pseudo_terminals_and_capped_scratch_inodes(hostile_pool):
    pty = ("import os\ndef solve(i):\n    n = 0\n    for path in ('/dev/ptmx', '/dev/pts/ptmx'):\n        try:\n"
           "            os.open(path, os.O_RDWR); n += 1\n        except OSError:\n            pass\n"
           "    try:\n        os.openpty(); n += 1\n    except OSError:\n        pass\n    return n\n")
    result = hostile_pool.run(Program(pty, [Test(expr="solve(0)", expected="0")]))
    assert result.all_passed, result
    flood = ("import os\ndef solve(i):\n    n = 0\n    try:\n        while n < 200000:\n"
             "            open('f%d' % n, 'w').close(); n += 1\n    except OSError:\n        pass\n    return n\n")
    result = hostile_pool.run(Program(flood, [Test(expr="solve(0)", expected="0")], timeouts=[20.0]))
    assert result.tests[0].observed is not None, result  # it ran out of inodes, not of time
    assert int(result.tests[0].observed) <= hostile_pool.limits.scratch_inodes
    assert all(r.all_passed for r in hostile_pool.run_batch([_correct()] * 2))


_IN_OWN_PID_NAMESPACE = """
import os, sys
from trl_unittest.execution import ExecutionPool, Program
from trl_unittest.tasks import Test
assert os.getpid() == 1, os.getpid()
pool = ExecutionPool(num_workers=2)
uid = Program("import os\\ndef f(): return os.getuid()", [Test(expr="f()", expected="0")])
print(sorted({r.tests[0].observed for r in pool.run_batch([uid] * 6)}), flush=True)
sys.stdin.readline()
pool.close()
sleeper = Program("import time\\ndef f(): time.sleep(100)", [Test(expr="f()", expected="0")], timeouts=[60.0])
for _ in range(3):  # workers killed while they run a program: bubblewrap's processes are handed to pid 1
    pool = ExecutionPool(num_workers=1)
    running = pool.submit(sleeper)
    while not pool._busy:
        pass
    pool.close(grace=0.1)
    assert running.result().error == "PoolClosed"
zombies = []
for pid in os.listdir("/proc"):
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        continue
    if stat[0] == "Z" and stat[1] == "1":
        zombies.append(pid)
print(3, len(zombies), flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="uids are switched only as root")
def test_pools_in_two_pid_namespaces_get_distinct_uids_and_a_pid_1_trainer_keeps_no_zombies():
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", _IN_OWN_PID_NAMESPACE],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        uids = [p.stdout.readline().strip() for p in procs]  # both pools are alive now
        for p in procs:
            p.stdin.write("\n")
            p.stdin.flush()
        tails = [p.stdout.readline().split() for p in procs]
    finally:
        for p in procs:
            p.wait(timeout=60)
    first, second = (set(eval(u)) for u in uids)
    assert len(first) == 2 and len(second) == 2 and not first & second, uids
    assert all(t and int(t[0]) >= 3 and int(t[1]) == 0 for t in tails), tails  # restarted, no zombie bwrap left


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are leased only as root")
def test_uid_leases_are_exclusive_within_and_across_processes(tmp_path, monkeypatch):
    """Slot 8 of one pool and slot 0 of the next used to compute the same uid; a lease is a held lock."""
    import subprocess
    import sys

    from trl_unittest.execution import pool as pool_module

    monkeypatch.setattr(pool_module, "UID_LOCK_DIR", str(tmp_path / "uids"))
    held = [pool_module._lease_uid() for _ in range(20)]
    assert len({uid for uid, _ in held}) == 20
    other = subprocess.run([sys.executable, "-c", "import fcntl, os, sys\nfrom trl_unittest.execution import pool\n"
                            f"pool.UID_LOCK_DIR = {str(tmp_path / 'uids')!r}\nprint(pool._lease_uid()[0])"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, check=True)
    assert int(other.stdout) not in {uid for uid, _ in held}
    for _, fd in held:
        os.close(fd)  # released: free for the next pool
    os.chmod(tmp_path / "uids", 0o777)
    with pytest.raises(RuntimeError, match="writable by root only"):
        pool_module._lease_uid()


# ------------------------------------------------------------------------------- the proxy harness (code tests)
def test_code_tests_never_enter_program_memory(hostile_pool):
    """A code test's source (and its expected values) reaches only the test process: a program that scans all
    of its own memory finds the marker the test set-up sent it (which program children do get), never the one
    in a code test, neither in the child that serves the code test's calls nor in a later one."""
    in_setup, in_code = random.randrange(10**12, 10**13), random.randrange(10**12, 10**13)
    scan = ("import ctypes, re\n"
            "def found(i=0):\n"
            "    hits = set()\n"  # the child is undumpable, so /proc/self/mem is closed to it: read with ctypes
            "    for line in open('/proc/self/maps'):\n"
            "        addr, perms = line.split()[:2]\n"
            "        if not perms.startswith('r') or '[v' in line:\n"
            "            continue\n"
            "        lo, hi = (int(x, 16) for x in addr.split('-'))\n"
            "        hits.update(int(m) for m in re.findall(rb'MARK(\\d{13})', ctypes.string_at(lo, hi - lo)))\n"
            "    return sorted(hits)\n"
            "solve = found\n")
    code = Test(kind="code", code=f"x = 'MARK{in_code}'\nassert solve(0) == [{in_code}]")
    probe = Test(expr="found()", expected="[]")
    result = hostile_pool.run(Program(scan, [code, probe], test_setup=f"marker = 'MARK{in_setup}'",
                                      timeouts=[5.0, 5.0]))
    assert result.tests[0].outcome == "error", result.tests[0]  # the code test's marker was not found
    seen = result.tests[1].observed
    assert seen is not None and str(in_setup) in seen and str(in_code) not in seen, result.tests[1]


def test_program_cannot_reach_the_test_process(hostile_pool):
    """Signals, ptrace and /proc/<pid>/mem of every process it can see: the test process (another uid,
    undumpable) is out of reach, and whatever the program does, its check is judged by that process."""
    reach = ("import ctypes, os, signal\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "def solve(i):\n"
             "    me = os.getpid()\n"
             "    reached = []\n"
             "    for p in [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != me]:\n"
             "        try:\n"
             "            open(f'/proc/{p}/mem', 'r+b').write(b'x')\n"
             "            reached.append(('mem', p))\n"
             "        except OSError:\n"
             "            pass\n"
             "        if libc.ptrace(16, p, 0, 0) == 0:\n"
             "            reached.append(('ptrace', p))\n"
             "        try:\n"
             "            os.listdir(f'/proc/{p}/fd')\n"
             "            reached.append(('fd', p))\n"
             "        except OSError:\n"
             "            pass\n"
             "    return reached\n")
    code = Test(kind="code", code="assert solve(0) == []")
    result = hostile_pool.run(Program(reach, [code]))
    if os.geteuid() == 0:  # uids are switched: the test process runs under a uid of its own
        assert result.tests[0].outcome == "passed", result.tests[0]
    killer = reach.replace("    return reached", "    os.kill(-1, signal.SIGKILL)\n    return 0")
    result = hostile_pool.run(Program(killer, make_tests("code")))
    assert result.passed == 0 and result.tests[0].outcome == "error"
