"""`evaluate`-compatible metrics shipped with the package, loadable offline by path:
``evaluate.load(trl_unittest.metrics.PASS_AT_K_PATH)``."""

import os

PASS_AT_K_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pass_at_k")

__all__ = ["PASS_AT_K_PATH"]
