"""`CompareConfig` (parsed by TRL's `TrlParser` from YAML and flags) and the methods and variants it names.

A *variant* is a config entry: a `method` (base, ppo, grpo, rloo, actor_critic) plus settings. The keys
:data:`COMPARE_KEYS` are read by the comparison itself (reward scheme, RL task set, the replay buffer's AST
filter, a pre-trained and frozen critic); every other key is a field of the method's TRL config class
(`ActorCriticConfig`, `GRPOConfig`, `RLOOConfig`, TRL 1.12's `PPOConfig`) and is passed to it as it stands. The
paper's ablations are the built-in variants below; a YAML `variants:` entry of the same name replaces one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("base", "ppo", "grpo", "rloo", "actor_critic")
REWARD_SCHEMES = ("binary", "fraction", "coderl", "partial")
COMPARE_KEYS = {"method", "reward_scheme", "rl_tasks", "replay_ast_filter", "critic_pretrain_fraction"}

# the settings the quickstart (the main job) trains with; a variant's own keys win
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "actor_critic": dict(critic_learning_rate=1e-3, replay_capacity=256, replay_critic_batch_size=8,
                         replay_policy_batch_size=8, whiten_advantages=False),
    "grpo": dict(num_generations=4),
    "rloo": dict(num_generations=4),
    "ppo": dict(num_ppo_epochs=4),  # TRL's default: 4 PPO epochs per batch
}
# the budget is `completions` and `batch_size` for every method: a variant may not change how many completions a
# step samples or how many steps run
BUDGET_KEYS = {"per_device_train_batch_size", "gradient_accumulation_steps", "generation_batch_size",
               "steps_per_generation", "max_steps", "num_train_epochs", "total_episodes", "num_mini_batches",
               "local_rollout_forward_batch_size", "learning_rate", "seed", "output_dir"}

BUILTIN_VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"method": "base"},
    "ppo": {"method": "ppo"},
    "grpo": {"method": "grpo"},
    "rloo": {"method": "rloo"},
    "actor_critic": {"method": "actor_critic"},
    # the paper's ablations (Gorinski et al. 2023, section 5): the critic pre-trained on the first 10% of the budget,
    # then frozen, against one kept in sync; replay off / on without the AST filter / on with it (actor_critic);
    # binary and partial credit against the default reward (CodeRL's scheme, the main job's since it was measured
    # better: benchmarks/RESULTS.md, issue 22); RL tasks with builder-mined tasks added (`mined_sources`)
    "ac_frozen_critic": {"method": "actor_critic", "critic_pretrain_fraction": 0.1},
    "ac_no_replay": {"method": "actor_critic", "replay_capacity": 0, "replay_critic_batch_size": 0,
                     "replay_policy_batch_size": 0},
    "ac_replay_no_ast_filter": {"method": "actor_critic", "replay_ast_filter": False},
    "ac_binary_reward": {"method": "actor_critic", "reward_scheme": "binary"},
    "ac_partial_reward": {"method": "actor_critic", "reward_scheme": "partial"},
    "ac_with_mined": {"method": "actor_critic", "rl_tasks": "with_mined"},
}
ABLATIONS = ["ac_frozen_critic", "ac_no_replay", "ac_replay_no_ast_filter", "ac_binary_reward", "ac_partial_reward",
             "ac_with_mined"]


class ConfigError(ValueError):
    """A configuration that cannot run: one line naming the problem and the fix."""


@dataclass
class CompareConfig:
    """Configuration of ``trl-unittest compare`` (YAML ``--config`` and ``--field value`` flags, via ``TrlParser``)."""

    model_name_or_path: str = field(default="quickstart:small-bugs", metadata={
        "help": "the starting model of every method: 'quickstart:NAME' (the small code model built offline, "
                "NAME in tiny, small, small-bugs, medium), a local folder or a Hub name"})
    heldout: str = field(default="quickstart", metadata={
        "help": "held-out tasks every method is evaluated on: 'quickstart' (the held-out split, minus what the "
                "model trained on), or a task source: humaneval, mbpp[:split], a build folder, .parquet, .jsonl"})
    heldout_tasks: int = field(default=0, metadata={"help": "held-out tasks evaluated, an even spread (0: all)"})
    rl_tasks: str = field(default="fresh", metadata={
        "help": "RL tasks: 'fresh' (fresh train-split exercises the model never saw), 'train' (the quickstart's "
                "train split) or a task source as for `heldout`"})
    fresh_count: int = field(default=2000, metadata={"help": "exercises built for rl_tasks 'fresh'"})
    mined_sources: list[str] = field(default_factory=list, metadata={
        "help": "builder sources (dist:NAME, a folder of code) mined into tasks for variants with "
                "rl_tasks: with_mined (tasks sharing a fingerprint with a held-out task are dropped)"})
    methods: list[str] = field(default_factory=lambda: ["base", "ppo", "grpo", "rloo", "actor_critic"], metadata={
        "help": f"variants to run, in order: built-in ones ({', '.join(BUILTIN_VARIANTS)}) or names in `variants`"})
    variants: dict = field(default_factory=dict, metadata={
        "help": "extra variants (YAML mapping name -> {method: ..., key: value}); a built-in name is replaced"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "one run per variant and seed"})
    completions: int = field(default=32_000, metadata={
        "help": "the equal budget: completions sampled for training by every method (steps = completions / "
                "batch_size; default: the main job's 1,000 steps x 32)"})
    batch_size: int = field(default=32, metadata={"help": "completions per optimiser step (every method)"})
    learning_rate: float = field(default=2.5e-5, metadata={
        "help": "policy learning rate (every method; default: the main job's)"})
    beta: float = field(default=0.0, metadata={"help": "KL penalty to the starting model (PPO's kl_coef)"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature, training and evaluation"})
    max_completion_length: int = field(default=64, metadata={"help": "tokens per completion"})
    reward_scheme: str = field(default="coderl", metadata={
        "help": "training reward: binary, fraction, coderl or partial (a variant may override it); default CodeRL's "
                "scheme, the main job's"})
    eval_n: int = field(default=10, metadata={"help": "samples per held-out task in the final evaluation"})
    eval_k: list[int] = field(default_factory=lambda: [1, 10], metadata={"help": "k values of pass@k"})
    curve_points: int = field(default=3, metadata={
        "help": "held-out pass@1 measurements during training (for the plot), besides the final one"})
    curve_n: int = field(default=2, metadata={"help": "samples per held-out task at those measurements"})
    bootstrap_resamples: int = field(default=10_000, metadata={"help": "bootstrap resamples of the intervals"})
    confidence: float = field(default=0.95, metadata={"help": "confidence level of the intervals"})
    output_dir: str = field(default="compare-out", metadata={
        "help": "results: runs/<variant>/seed<N>/result.json (a finished run is not rerun), results.json, "
                "results.md, pass1_vs_completions.png"})
    device: str = field(default="auto", metadata={"help": "auto (a GPU if torch sees one, bf16 there), cpu, cuda"})
    ppo_python: str = field(default="", metadata={
        "help": "the Python of an environment with trl==1.12.0 (PPOTrainer); default: $TRL_UNITTEST_PPO_PYTHON, "
                "else .venv-ppo/bin/python in the working folder or next to this package"})
    isolate: bool = field(default=True, metadata={
        "help": "run every (variant, seed) in its own process (clean peak memory); false runs all but PPO in this "
                "process (faster start; CPU peak memory is then not measured)"})
    workers: int = field(default=2, metadata={"help": "sandbox workers"})
    progress: bool = field(default=True, metadata={"help": "a progress bar per run"})

    # -------------------------------------------------------------------------------------------- checks
    def resolved_variants(self) -> dict[str, dict[str, Any]]:
        """The variants named in ``methods``, each with its method's defaults filled in."""
        table = {**BUILTIN_VARIANTS, **(self.variants or {})}
        out = {}
        for name in self.methods:
            v = dict(table[name])
            out[name] = {**METHOD_DEFAULTS.get(v["method"], {}), **v}
        return out

    def steps(self) -> int:
        return self.completions // self.batch_size

    def validate(self) -> dict[str, dict[str, Any]]:
        """Every check that needs no model or data; raises :class:`ConfigError` (one line) on the first problem and
        returns the resolved variants."""
        if not self.methods:
            raise ConfigError("methods is empty: name at least one of " + ", ".join(BUILTIN_VARIANTS))
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods lists a variant twice: {self.methods}")
        if not isinstance(self.variants, dict):
            raise ConfigError(f"variants must be a mapping name -> {{method: ..., ...}}, got {self.variants!r}")
        known = {**BUILTIN_VARIANTS, **self.variants}
        for name in self.methods:
            if name not in known:
                raise ConfigError(f"methods: unknown variant {name!r}; built-in ones are {', '.join(BUILTIN_VARIANTS)}"
                                  f"; define others under variants:")
        for name, v in self.variants.items():
            if not isinstance(v, dict) or v.get("method") not in METHODS:
                raise ConfigError(f"variants.{name}: needs method: one of {', '.join(METHODS)} (got "
                                  f"{v.get('method') if isinstance(v, dict) else v!r})")
            if not str(name).replace("_", "").replace("-", "").isalnum():
                raise ConfigError(f"variants.{name}: use letters, digits, '_' and '-' only (it names a folder)")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ConfigError(f"seeds must be distinct whole numbers >= 0, got {self.seeds}")
        for key in ("batch_size", "eval_n", "curve_n", "workers", "bootstrap_resamples", "max_completion_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.curve_points < 0 or self.heldout_tasks < 0 or self.fresh_count < 1:
            raise ConfigError("curve_points and heldout_tasks must be >= 0 and fresh_count >= 1")
        if self.completions < self.batch_size:
            raise ConfigError(f"completions={self.completions} is less than one batch (batch_size="
                              f"{self.batch_size}): raise completions or lower batch_size")
        if self.completions % self.batch_size:
            raise ConfigError(f"completions={self.completions} is not a whole number of batches of {self.batch_size}:"
                              f" use a multiple, e.g. {self.steps() * self.batch_size}")
        if not self.eval_k or any(k < 1 or k > self.eval_n for k in self.eval_k) or 1 not in self.eval_k:
            raise ConfigError(f"eval_k={self.eval_k}: needs 1 and values <= eval_n={self.eval_n}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be between 0 and 1, got {self.confidence}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0 and self.temperature > 0):
            raise ConfigError("learning_rate and temperature must be > 0")
        if self.reward_scheme not in REWARD_SCHEMES:
            raise ConfigError(f"reward_scheme {self.reward_scheme!r}: expected one of {', '.join(REWARD_SCHEMES)}")
        if self.model_name_or_path.startswith("quickstart:"):
            from trl_unittest.models import BUDGETS

            if self.model_name_or_path.split(":", 1)[1] not in BUDGETS:
                raise ConfigError(f"model_name_or_path {self.model_name_or_path!r}: the quickstart models are "
                                  + ", ".join(f"quickstart:{b}" for b in sorted(BUDGETS)))
        variants = self.resolved_variants()
        for name, v in variants.items():
            self._check_variant(name, v)
        if any(v["method"] == "ppo" for v in variants.values()):
            resolve_ppo_python(self.ppo_python, check=True)
        return variants

    def _check_variant(self, name: str, v: dict[str, Any]) -> None:
        method = v["method"]
        if v.get("reward_scheme", self.reward_scheme) not in REWARD_SCHEMES:
            raise ConfigError(f"variants.{name}.reward_scheme {v['reward_scheme']!r}: expected one of "
                              f"{', '.join(REWARD_SCHEMES)}")
        if v.get("rl_tasks", "default") not in ("default", "with_mined"):
            raise ConfigError(f"variants.{name}.rl_tasks {v['rl_tasks']!r}: expected 'default' or 'with_mined'")
        if v.get("rl_tasks") == "with_mined" and not self.mined_sources:
            raise ConfigError(f"variant {name} trains with mined tasks: list builder sources under mined_sources "
                              f"(e.g. [dist:click, path/to/code])")
        if v.get("rl_tasks") == "with_mined":
            from trl_unittest.data.cli import BadInput, check_source

            for spec in self.mined_sources:  # a missing distribution fails now, not after the model is built
                try:
                    check_source(spec, flag="mined_sources:")
                except BadInput as e:
                    raise ConfigError(str(e)) from None
        if ("replay_ast_filter" in v or "critic_pretrain_fraction" in v) and method != "actor_critic":
            raise ConfigError(f"variants.{name}: replay_ast_filter and critic_pretrain_fraction apply to "
                              f"actor_critic only")
        fraction = v.get("critic_pretrain_fraction")
        if fraction is not None and not 0 < fraction < 1:
            raise ConfigError(f"variants.{name}.critic_pretrain_fraction must be between 0 and 1, got {fraction}")
        group = v.get("num_generations", 1)
        if method in ("grpo", "rloo") and (group < 2 or self.batch_size % group):
            raise ConfigError(f"variants.{name}: {method} needs num_generations >= 2 dividing batch_size="
                              f"{self.batch_size}, got {group}")
        if method == "rloo" and not rloo_available():
            raise ConfigError(f"variant {name}: the installed TRL has no RLOOTrainer; drop it from methods or "
                              f"install a TRL that has one")
        fixed = sorted(set(v) & BUDGET_KEYS)
        if fixed:
            raise ConfigError(f"variants.{name}: {fixed} are set by the comparison for every method (the equal "
                              f"budget: completions, batch_size, learning_rate, seeds); set them at the top level")
        if method in ("base", "ppo"):
            if method == "base" and set(v) - {"method"}:
                raise ConfigError(f"variants.{name}: base takes no settings, got {sorted(set(v) - {'method'})}")
            return  # PPO's fields are checked by trl 1.12 in its own environment
        fields = {f.name for f in dataclasses.fields(trainer_config_class(method))}
        unknown = sorted(set(v) - COMPARE_KEYS - fields)
        if unknown:
            raise ConfigError(f"variants.{name}: {unknown} are not fields of {trainer_config_class(method).__name__}"
                              f" nor compare keys ({', '.join(sorted(COMPARE_KEYS))})")


def trainer_config_class(method: str):
    if method == "actor_critic":
        from trl_unittest.trainer import ActorCriticConfig

        return ActorCriticConfig
    if method == "grpo":
        from trl import GRPOConfig

        return GRPOConfig
    from trl import RLOOConfig

    return RLOOConfig


def rloo_available() -> bool:
    try:
        from trl import RLOOConfig, RLOOTrainer  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_ppo_python(given: str = "", check: bool = False) -> str:
    """The interpreter of the PPO environment: ``given``, else ``$TRL_UNITTEST_PPO_PYTHON``, else
    ``.venv-ppo/bin/python`` in the working folder or next to this package. ``check``: also import TRL 1.12's
    PPOTrainer there (a few seconds), raising :class:`ConfigError` with the fix when it cannot."""
    import subprocess

    candidates = [given] if given else (
        [os.environ["TRL_UNITTEST_PPO_PYTHON"]] if os.environ.get("TRL_UNITTEST_PPO_PYTHON") else
        [str(Path.cwd() / ".venv-ppo" / "bin" / "python"),
         str(Path(__file__).resolve().parents[2] / ".venv-ppo" / "bin" / "python")])
    found = next((c for c in candidates if Path(c).is_file() and os.access(c, os.X_OK)), None)
    if found is None:
        raise ConfigError(f"ppo needs an environment with trl==1.12.0 (TRL's last PPOTrainer): no Python at "
                          f"{' or '.join(candidates)}; create one (`bash .ci/setup` makes .venv-ppo, or `pip install "
                          f"'trl_unittest[ppo]'` in a new venv) and set ppo_python, or drop ppo from methods")
    if check and found not in _PPO_CHECKED:
        probe = subprocess.run([found, "-c", "import trl.experimental.ppo"], capture_output=True, text=True,
                               env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"})
        if probe.returncode:
            last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"ppo_python {found} cannot import TRL 1.12's PPOTrainer ({last}): install "
                              f"trl==1.12.0 there, or drop ppo from methods")
        _PPO_CHECKED.add(found)  # an import of torch and TRL takes seconds: once per interpreter and process
    return found


_PPO_CHECKED: set[str] = set()


def run_spec_key(config: CompareConfig, variant: dict[str, Any]) -> dict[str, Any]:
    """What determines one run's result besides its seed: a finished run whose key differs from this one was made
    under another configuration and is not reused."""
    fields = ("model_name_or_path", "heldout", "heldout_tasks", "temperature", "max_completion_length", "eval_n",
              "eval_k")
    if variant["method"] != "base":  # the base model's evaluation does not depend on the training settings
        fields += ("rl_tasks", "fresh_count", "mined_sources", "completions", "batch_size", "learning_rate", "beta",
                   "reward_scheme", "curve_points", "curve_n")
    return {"variant": variant, **{f: getattr(config, f) for f in fields}}
