"""`trl-unittest compare` and `trl_unittest.compare`: RL methods side by side, the way users decide.

Every variant (base, TRL 1.12's PPO through `UnitTestRewardModel`, GRPO, RLOO, ActorCritic, and the paper's
ablations as config entries) starts from the same model, trains on the same RL tasks for the same number of sampled
completions, with several seeds, and is evaluated on the same held-out tasks: pass@1 and pass@k with bootstrap
intervals over seeds and tasks, samples/s and peak memory, a markdown table, ``results.json`` and a plot of held-out
pass@1 against completions sampled. A finished (variant, seed) is kept and not rerun.

    config.py   CompareConfig (TrlParser), built-in variants and ablations, checks
    prepare.py  the shared inputs: model, held-out and RL task sets (written once to OUT/inputs)
    job.py      one (variant, seed): train, measure along the way, evaluate (in-process or its own process)
    stats.py    two-way (seeds x tasks) bootstrap intervals, paired differences
    report.py   summary, markdown table, plot
    runner.py   run_compare and the command line
"""

from trl_unittest.compare.config import ABLATIONS, BUILTIN_VARIANTS, CompareConfig, ConfigError
from trl_unittest.compare.runner import add_compare_parser, parse_compare_args, run_compare
from trl_unittest.compare.stats import bootstrap_ci, difference_ci, paired_difference_ci

__all__ = ["ABLATIONS", "BUILTIN_VARIANTS", "CompareConfig", "ConfigError", "add_compare_parser", "bootstrap_ci",
           "difference_ci", "paired_difference_ci", "parse_compare_args", "run_compare"]
