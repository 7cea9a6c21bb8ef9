"""`ActorCriticConfig`: `GRPOConfig` plus the critic, the advantage and the replay buffer."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

from trl import GRPOConfig


class _OneGeneration(int):
    """The integer 1 that passes `GRPOConfig.__post_init__`'s `num_generations >= 2` check. GRPO needs a group of
    completions per prompt for its baseline; here the critic is the baseline, so one completion per prompt is fine.
    Only lives during `super().__post_init__()`; a plain `1` is stored afterwards."""

    def __lt__(self, other):
        return False


@dataclass
class ActorCriticConfig(GRPOConfig):
    r"""
    Configuration for [`ActorCriticTrainer`]. Every [`~trl.GRPOConfig`] parameter is accepted; a script that trains
    with `GRPOConfig` switches by changing the class name. The GRPO group baseline and its reward scaling
    (`scale_rewards`, `loss_type`, `epsilon_*` except for the clip below) are replaced by a learned critic:
    advantage = R - V.

    Parameters (on top of GRPOConfig):
        critic_widths: hidden widths of the critic's feed-forward network on the policy's last hidden state.
        critic_value_level: `"token"` (V(s_t) for every completion token) or `"sequence"` (one V per prompt).
        critic_backprop: let the critic's gradient reach the policy backbone (default: detached features).
        critic_learning_rate, critic_weight_decay, critic_max_grad_norm, critic_loss_coef: the critic's optimiser.
        critic_warmup_steps: the first optimiser steps train the critic only (the policy loss is zeroed).
        freeze_critic_after_warmup: pre-train the critic for `critic_warmup_steps`, then freeze it (the paper's
            ablation against the in-sync critic).
        whiten_advantages: normalise advantages to zero mean / unit std over the batch.
        replay_capacity, replay_eviction: the AST-filtered replay buffer.
        replay_critic_batch_size: replayed samples added to the critic's batch at every step (0: fresh only).
        replay_policy_batch_size, replay_min_reward, replay_is_clip, replay_policy_coef: replay high-reward programs
            to the policy, weighted by a truncated importance weight.
        pass_reward_threshold: a completion whose total reward is >= this counts as a pass in `pass_rate`.
        epsilon: PPO-style clip range, used only when a batch is reused (`num_iterations > 1`, or
            `steps_per_generation > gradient_accumulation_steps`).
    """

    num_generations: int | None = field(
        default=1,
        metadata={"help": "Completions sampled per prompt. 1 is allowed (and the default): the critic is the "
                          "baseline, not the group mean."},
    )
    critic_widths: list[int] = field(
        default_factory=lambda: [256],
        metadata={"help": "Hidden widths of the critic's feed-forward network (on the policy's last hidden state)."},
    )
    critic_value_level: str = field(
        default="token",
        metadata={"help": "'token': a value V(s_t) before every completion token (advantage R - V(s_t)); "
                          "'sequence': one value per prompt, from the hidden state of the last prompt token.",
                  "choices": ["token", "sequence"]},
    )
    critic_backprop: bool = field(
        default=False,
        metadata={"help": "Let the critic's gradient flow into the policy backbone. By default the critic reads "
                          "detached hidden states and the backbone is trained by the policy loss only."},
    )
    critic_learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of the critic's AdamW."})
    critic_weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the critic's AdamW."})
    critic_max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip of the critic (0: off)."})
    critic_loss_coef: float = field(
        default=1.0, metadata={"help": "Weight of the critic's mean-squared error in the total loss."},
    )
    critic_warmup_steps: int = field(
        default=0,
        metadata={"help": "Optimiser steps at the start that train the critic only (the policy loss is zeroed)."},
    )
    freeze_critic_after_warmup: bool = field(
        default=False,
        metadata={"help": "Freeze the critic after `critic_warmup_steps` of pre-training (ablation: a pre-trained, "
                          "frozen critic instead of one kept in sync with the policy)."},
    )
    whiten_advantages: bool = field(
        default=False, metadata={"help": "Normalise the advantages to zero mean and unit std over the batch."},
    )
    replay_capacity: int = field(
        default=1024, metadata={"help": "Completions kept in the AST-filtered replay buffer (per process; 0: off)."},
    )
    replay_eviction: str = field(
        default="fifo",
        metadata={"help": "Which entry a full replay buffer evicts: 'fifo' (oldest) or 'lowest_reward'.",
                  "choices": ["fifo", "lowest_reward"]},
    )
    replay_critic_batch_size: int = field(
        default=8,
        metadata={"help": "Replayed completions added to the critic's batch at every step (0: fresh samples only)."},
    )
    replay_policy_batch_size: int = field(
        default=0,
        metadata={"help": "High-reward replayed completions added to the policy loss at every step (0: off)."},
    )
    replay_min_reward: float = field(
        default=1.0, metadata={"help": "Minimum reward of a completion replayed to the policy."},
    )
    replay_is_clip: float = field(
        default=1.0,
        metadata={"help": "Upper clip of the importance weight pi_now / pi_sampled of a replayed completion."},
    )
    replay_policy_coef: float = field(
        default=1.0, metadata={"help": "Weight of the replayed-program term in the policy loss."},
    )
    pass_reward_threshold: float = field(
        default=1.0, metadata={"help": "A completion with total reward >= this counts as passing (`pass_rate`)."},
    )

    def __post_init__(self):
        if self.num_generations == 1:
            self.num_generations = _OneGeneration(1)
        try:
            super().__post_init__()
        finally:
            if isinstance(self.num_generations, _OneGeneration):
                self.num_generations = 1
        if self.critic_value_level not in ("token", "sequence"):
            raise ValueError(f"critic_value_level must be 'token' or 'sequence', got {self.critic_value_level!r}")
        if isinstance(self.critic_widths, int):
            self.critic_widths = [self.critic_widths]
        if any(isinstance(w, bool) or int(w) != w or int(w) <= 0 for w in self.critic_widths):
            raise ValueError(f"critic_widths must be positive integers, got {self.critic_widths}")
        self.critic_widths = [int(w) for w in self.critic_widths]
        if self.replay_eviction not in ("fifo", "lowest_reward"):
            raise ValueError(f"replay_eviction must be 'fifo' or 'lowest_reward', got {self.replay_eviction!r}")
        if self.replay_capacity < 0 or self.replay_critic_batch_size < 0 or self.replay_policy_batch_size < 0:
            raise ValueError("replay_capacity, replay_critic_batch_size and replay_policy_batch_size must be >= 0")
        if self.replay_capacity == 0 and (self.replay_critic_batch_size or self.replay_policy_batch_size):
            raise ValueError(
                "replay_capacity=0 disables the replay buffer, but replay_critic_batch_size="
                f"{self.replay_critic_batch_size} / replay_policy_batch_size={self.replay_policy_batch_size} ask to "
                "replay from it: set them to 0 or give the buffer a capacity."
            )
        if self.freeze_critic_after_warmup and self.critic_warmup_steps <= 0:
            raise ValueError(
                "freeze_critic_after_warmup=True needs critic_warmup_steps > 0: the critic would be frozen at its "
                "random initialisation."
            )
        if self.freeze_critic_after_warmup and self.critic_backprop:
            raise ValueError("freeze_critic_after_warmup and critic_backprop are incompatible: a frozen critic "
                             "cannot train the backbone.")
        if not self.critic_learning_rate > 0:
            raise ValueError(f"critic_learning_rate must be > 0, got {self.critic_learning_rate}")
        if not (math.isfinite(self.replay_is_clip) and self.replay_is_clip > 0):
            raise ValueError(f"replay_is_clip must be a finite number > 0, got {self.replay_is_clip}")
        if not (math.isfinite(self.critic_loss_coef) and self.critic_loss_coef > 0):
            raise ValueError(f"critic_loss_coef must be a finite number > 0 (0 would never train the critic, a "
                             f"negative one makes it ascend), got {self.critic_loss_coef}")
        if not (math.isfinite(self.replay_policy_coef) and self.replay_policy_coef >= 0):
            raise ValueError(f"replay_policy_coef must be a finite number >= 0, got {self.replay_policy_coef}")
        if self.replay_min_reward is not None and not math.isfinite(self.replay_min_reward):
            raise ValueError(f"replay_min_reward must be a finite number, got {self.replay_min_reward}")
        if not (isinstance(self.critic_warmup_steps, int) and self.critic_warmup_steps >= 0):
            raise ValueError(f"critic_warmup_steps must be a whole number >= 0, got {self.critic_warmup_steps}")
        if self.critic_weight_decay < 0:
            raise ValueError(f"critic_weight_decay must be >= 0, got {self.critic_weight_decay}")
        if self.max_steps > 0 and self.critic_warmup_steps >= self.max_steps:
            warnings.warn(f"critic_warmup_steps={self.critic_warmup_steps} covers every one of max_steps="
                          f"{self.max_steps}: only the critic trains in this run", stacklevel=3)
        self._check_grpo_options()
        if getattr(self, "use_vllm", False) and getattr(self, "vllm_importance_sampling_correction", False):
            warnings.warn("vllm_importance_sampling_correction is not applied by ActorCriticTrainer's loss: the "
                          "completions are scored as if the policy had sampled them (set it to False to silence "
                          "this)", stacklevel=3)

    # GRPO options this trainer's loss and advantages do not use: a value other than GRPOConfig's default would be
    # silently ignored, so it is refused instead (loss_type, scale_rewards, epsilon_* are documented replacements)
    _UNUSED_GRPO_OPTIONS = ("entropy_coef", "top_entropy_quantile", "importance_sampling_level",
                            "off_policy_mask_threshold", "delta", "multi_objective_aggregation")

    def _check_grpo_options(self):
        defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
        for name in self._UNUSED_GRPO_OPTIONS:
            if name in defaults and getattr(self, name, defaults[name]) != defaults[name]:
                raise ValueError(f"{name}={getattr(self, name)!r} is a GRPOTrainer option that ActorCriticTrainer's "
                                 f"loss does not use; leave it at its default ({defaults[name]!r})")
