"""The dataset builder: mine self-contained, documented Python functions from raw code and generate their unit
tests (doctests, observe-and-record, mutation adequacy), producing tasks in the schema of :mod:`trl_unittest.tasks`.

Entry points: :func:`trl_unittest.data.builder.build_dataset` and :class:`trl_unittest.data.builder.BuilderConfig`.
Mined code is untrusted: this package only parses it; every execution goes through :mod:`trl_unittest.execution`.
"""

from __future__ import annotations

__all__ = ["BuilderConfig", "BuildReport", "build_dataset"]


def __getattr__(name):  # lazy: importing the package must not pull in datasets/hypothesis
    if name in __all__:
        from trl_unittest.data import builder

        return getattr(builder, name)
    raise AttributeError(name)
