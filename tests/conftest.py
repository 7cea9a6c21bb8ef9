import pytest

from trl_unittest.execution import ExecutionPool, Limits


@pytest.fixture(scope="session")
def pool():
    """A shared sandboxed pool with short time budgets, for tests."""
    with ExecutionPool(num_workers=2, sandbox="auto", limits=Limits(test_timeout=1.0, setup_timeout=3.0)) as p:
        yield p
