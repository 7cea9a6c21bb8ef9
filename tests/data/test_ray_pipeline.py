"""The builder on Ray Data (local Ray, 2 CPUs) gives the single-machine builder's tasks and counts.

Skipped when ``ray`` is not importable (install the ``ray`` extra) or no sandbox is available."""

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from trl_unittest.data.builder import BuilderConfig, build_dataset  # noqa: E402
from trl_unittest.data.sources import SourceFile  # noqa: E402

try:
    from trl_unittest.execution.sandbox import resolve_mode

    resolve_mode("auto")
    HAVE_SANDBOX = True
except Exception:  # noqa: BLE001
    HAVE_SANDBOX = False

pytestmark = pytest.mark.skipif(not HAVE_SANDBOX, reason="no sandbox (bubblewrap/unshare) on this machine")

A = '''
import re

VOWELS = "aeiou"


def vowel_positions(text):
    """Positions of the vowels in a lowercase text.

    >>> vowel_positions("banana")
    [1, 3, 5]
    """
    out = []
    for i, ch in enumerate(text):
        if ch in VOWELS:
            out.append(i)
    return out


def percent_of_span(value, lo, hi):
    """Where value lies in [lo, hi], in whole percent (0 at or below lo, 100 at or above hi).

    >>> percent_of_span(5, 0, 10)
    50
    """
    if lo >= hi:
        raise ValueError("empty interval")
    if value <= lo:
        return 0
    if value >= hi:
        return 100
    return (value - lo) * 100 // (hi - lo)


def _private(x):
    """Not a task."""
    return x


def shuffled_letters(n):
    """The first n letters of a set of letters, in set iteration order (hash-seed dependent)."""
    return "".join(set("abcdefghijklmnopqrstuvwxyz"))[:n]
'''

B = '''
def span_percent(value, lo, hi):
    """Where value lies in [lo, hi], in percent (the same function as a.percent_of_span: a duplicate across shards).

    >>> span_percent(1, 0, 10)
    10
    """
    if lo >= hi:
        raise ValueError("empty interval")
    if value <= lo:
        return 0
    if value >= hi:
        return 100
    return (value - lo) * 100 // (hi - lo)


def words(text: str) -> list:
    """Split a text into lowercase words.

    >>> words("Hello World")
    ['hello', 'world']
    """
    out = []
    for w in text.split():
        if w:
            out.append(w.lower())
    return out


def gcd(a: int, b: int) -> int:
    """Greatest common divisor.

    >>> gcd(12, 18)
    6
    """
    while b:
        a, b = b, a % b
    return abs(a)
'''

C = '''
def read_config(path):
    """Read a config file."""
    with open(path) as f:
        return f.read()


def fizz(n: int) -> str:
    """Fizz for multiples of three.

    >>> fizz(9)
    'Fizz'
    """
    if n % 3 == 0:
        return "Fizz"
    return str(n)
'''


def _files():
    return [SourceFile(text=t, source="raytest", path=f"pkg/{name}.py", module=f"pkg.{name}", license="MIT")
            for name, t in (("a", A), ("b", B), ("c", C))]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False,
             ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _comparable(ds):
    rows = ds.to_list()
    for r in rows:
        r.pop("reference_runtime")  # wall-clock timing of the reference: differs between any two runs
    return rows


def test_ray_pipeline_matches_single_machine_builder(local_ray, tmp_path):
    from trl_unittest.data.ray_pipeline import build_dataset_ray

    cfg = BuilderConfig(num_workers=1, progress=False, max_inputs=12, max_mutants=8,
                        shard_size=1)  # one file per shard: the duplicate is found across shards
    single, single_report = build_dataset(_files(), cfg, return_report=True)
    dist, dist_report = build_dataset_ray(_files(), cfg, return_report=True, functions_per_task=2,
                                          out_dir=tmp_path)

    assert len(single) >= 4
    assert _comparable(dist) == _comparable(single)
    a, b = single_report.to_dict(), dist_report.to_dict()
    for d in (a, b):
        d.pop("seconds")
        d.pop("shards_resumed")
    assert b == a
    assert dist_report.consistent()
    assert dist_report.dropped["duplicate"] == 1
    assert (tmp_path / "tasks.parquet").exists() and (tmp_path / "report.json").exists()
