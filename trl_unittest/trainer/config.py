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
    Configuration class for the [`ActorCriticTrainer`].

    Every [`~trl.GRPOConfig`] parameter is accepted, so a script that trains with `GRPOConfig` switches by changing
    the class name. GRPO's group baseline is replaced by a learned critic (advantage = R - V): `loss_type` and
    `scale_rewards` have no effect here (a warning names them), and the GRPO options that change its loss in ways
    this trainer does not implement (`use_adaptive_entropy`, `top_entropy_quantile`,
    `importance_sampling_level`, `off_policy_mask_threshold`, `delta`, `sapo_*`, `vespo_*`,
    `multi_objective_aggregation`, `use_bias_correction_kl`, `use_liger_kernel`) are refused by name when set.
    `entropy_coef` works as in GRPO: the loss subtracts `entropy_coef` times the mean per-token entropy of the
    fresh completions (an entropy bonus, against a policy that collapses to one answer per prompt).
    `use_vllm` works, with GRPO's importance-sampling correction of vLLM's sampling log-probabilities
    (`vllm_importance_sampling_correction`, `vllm_importance_sampling_mode`, `vllm_importance_sampling_clip_*`).

    Parameters:
        > Parameters that differ from GRPOConfig's defaults

        num_generations (`int`, *optional*, defaults to `1`):
            Completions sampled per prompt. One is enough: the critic is the baseline, not the group mean.
        disable_dropout (`bool`, *optional*, defaults to `True`):
            Whether to disable dropout in the policy. On by default here: the sequence log-probability stored with a
            replayed program and the one it is compared with must come from the same (deterministic) policy, or the
            importance weights of an unchanged policy scatter around 1.

        > Parameters that control the critic

        critic_widths (`list[int]`, *optional*, defaults to `[256]`):
            Hidden widths of the critic's feed-forward network on the policy's last hidden state.
        critic_value_level (`str`, *optional*, defaults to `"token"`):
            `"token"`: a value V(s_t) before every completion token (advantage R - V(s_t)); `"sequence"`: one value
            per prompt, read at its last token.
        critic_backprop (`bool`, *optional*, defaults to `False`):
            Whether the critic's gradient flows into the policy backbone (by default it reads detached features).
        critic_learning_rate (`float`, *optional*, defaults to `1e-4`):
            Peak learning rate of the critic's AdamW. It follows the run's schedule (`lr_scheduler_type`,
            `warmup_steps` / `warmup_ratio`, `lr_scheduler_kwargs`), as the policy's does.
        critic_weight_decay (`float`, *optional*, defaults to `0.0`):
            Weight decay of the critic's AdamW.
        critic_max_grad_norm (`float`, *optional*, defaults to `1.0`):
            Gradient-norm clip of the critic (0: off). Under fp16 the gradients are unscaled first, and a step with
            non-finite gradients is skipped, as the policy's is.
        critic_loss_coef (`float`, *optional*, defaults to `1.0`):
            Weight of the critic's mean-squared error in the total loss.
        critic_bias_init (`str`, *optional*, defaults to `"first_batch"`):
            `"first_batch"`: the critic's output bias starts at the mean return of the first training batch (over
            all processes), so the first advantages are centred; `"zero"`: it starts at 0, and with `partial` rewards
            (mostly negative early on) every early token gets an advantage near the raw reward.
        critic_warmup_steps (`int`, *optional*, defaults to `0`):
            Optimiser steps at the start that train the critic only (the policy gets no gradient).
        freeze_critic_after_warmup (`bool`, *optional*, defaults to `False`):
            Freeze the critic after `critic_warmup_steps` of pre-training (the paper's ablation against a critic kept
            in sync with the policy).
        whiten_advantages (`bool`, *optional*, defaults to `False`):
            Whether to normalise advantages to zero mean and unit std over the batch.
        baseline (`str`, *optional*, defaults to `"critic"`):
            What a return is compared with: `"critic"`, the critic's value (advantage R - V); `"group"`, the mean
            return of the prompt's `num_generations` completions (needs `num_generations > 1`; the critic still
            trains and is logged, so the two baselines can be compared in one run's logs).
        pass_at_k (`int`, *optional*, defaults to `1`):
            Train for pass@k instead of pass@1 (Chen et al. 2025, "Pass@k Training for Adaptively Balancing
            Exploration and Exploitation of Large Reasoning Models", arXiv 2508.10751). With `num_generations` = n
            >= k > 1 a completion's return becomes the expected pass@k of k of its group's completions drawn at
            random with it: 1 when it passes (total reward >= `pass_reward_threshold`), otherwise the chance that
            one of the k - 1 others passes, 1 - C(f - 1, k - 1) / C(n - 1, k - 1) with f the group's failures. The
            group's mean return is then its unbiased pass@k estimate, so with `baseline="group"` the advantages are
            the paper's analytical pass@k advantages. A prompt most of whose samples pass stops pulling its samples
            together (with k = 2, n = 4: three passes give every sample return 1); a failure beside a success costs
            less than one among failures. 1: the rewards as they are.
        positive_advantage_weight (`float`, *optional*, defaults to `1.0`):
            Factor on positive advantages (after whitening) in the policy loss; negative ones keep weight 1. Below 1
            the policy learns more from what failed than from what passed: W-REINFORCE of Zhu et al. 2025, "The
            Surprising Effectiveness of Negative Reinforcement in LLM Reasoning" (arXiv 2506.01347), who use 0.1 and
            report pass@k kept at large k. On this project's main job 0.1 did not keep pass@10 (benchmarks/
            RESULTS.md, "three RL seeds"). The critic is unaffected.
        epsilon (`float`, *optional*, defaults to `0.2`):
            PPO-style clip range of the policy ratio, used only when a batch was sampled by an older policy
            (`num_iterations > 1`, `steps_per_generation > gradient_accumulation_steps`, or vLLM).

        > Parameters that control the replay buffer

        replay_capacity (`int`, *optional*, defaults to `1024`):
            Completions kept per process in the replay buffer, deduplicated by the normalised AST of the program the
            reward ran (0: off).
        replay_eviction (`str`, *optional*, defaults to `"fifo"`):
            Which entry a full buffer evicts: `"fifo"` (oldest) or `"lowest_reward"`.
        replay_critic_batch_size (`int`, *optional*, defaults to `8`):
            Replayed completions added to the critic's batch at every step (0: fresh samples only). Entries of the
            generation batch being trained on are never replayed.
        replay_policy_batch_size (`int`, *optional*, defaults to `0`):
            High-reward replayed completions added to the policy loss at every step (0: off).
        replay_policy_weighting (`str`, *optional*, defaults to `"uniform"`):
            How programs replayed to the policy are drawn: `"uniform"` over entries, `"task"` (each task's entries
            share one weight) or `"hard"` (that weight is the failure rate of the task's recent samples).
        replay_min_reward (`float`, *optional*, defaults to `1.0`):
            Minimum reward of a completion replayed to the policy.
        replay_is_clip (`float`, *optional*, defaults to `1.0`):
            Upper clip of the importance weight pi_now / pi_sampled of a replayed completion.
        replay_self_imitation (`bool`, *optional*, defaults to `False`):
            Replayed completions weigh 1 in the policy loss and only their positive advantages count (self-imitation
            learning, Oh et al. 2018) instead of the truncated importance weight: programs the policy has since made
            unlikely still pull.
        replay_policy_coef (`float`, *optional*, defaults to `1.0`):
            Weight of the replayed-program term in the policy loss.
        push_replay_buffer (`bool`, *optional*, defaults to `False`):
            Whether `save_model` / `push_to_hub` also write the replay buffer (training prompts and completions) to
            the output folder. Checkpoints always keep it for resuming, as `_replay-<rank>.pt`: the leading
            underscore keeps it out of every Hub upload (the Trainer skips `_*`).

        > Parameters that control logging

        pass_reward_threshold (`float`, *optional*, defaults to `1.0`):
            A completion whose total reward is >= this counts as passing in the logged `pass_rate`.
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
    critic_bias_init: str = field(
        default="first_batch",
        metadata={"help": "'first_batch': the critic's output bias starts at the first training batch's mean return "
                          "(centred first advantages); 'zero': it starts at 0.",
                  "choices": ["first_batch", "zero"]},
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
    baseline: str = field(
        default="critic",
        metadata={"help": "'critic': advantage R - V; 'group': R minus the mean return of the prompt's "
                          "num_generations completions (num_generations > 1; the critic still trains).",
                  "choices": ["critic", "group"]},
    )
    pass_at_k: int = field(
        default=1,
        metadata={"help": "Train for pass@k (Chen et al. 2025, arXiv 2508.10751): with num_generations = n >= k > 1 "
                          "a completion's return is the expected pass@k of k of its group's completions drawn with "
                          "it (1 if it passes, else the chance that another of the k passes). 1: rewards as they are."},
    )
    positive_advantage_weight: float = field(
        default=1.0,
        metadata={"help": "Factor on positive advantages in the policy loss (negative ones keep 1): below 1 the "
                          "policy learns more from failures than from successes (W-REINFORCE, Zhu et al. 2025, "
                          "arXiv 2506.01347, use 0.1)."},
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
    replay_policy_weighting: str = field(
        default="uniform",
        metadata={"help": "How programs replayed to the policy are drawn: 'uniform' over entries, 'task' (each "
                          "task's entries share one weight) or 'hard' (weighted by the failure rate of the task's "
                          "recent samples: rarely found solutions are replayed most).",
                  "choices": ["uniform", "task", "hard"]},
    )
    replay_min_reward: float = field(
        default=1.0, metadata={"help": "Minimum reward of a completion replayed to the policy."},
    )
    replay_is_clip: float = field(
        default=1.0,
        metadata={"help": "Upper clip of the importance weight pi_now / pi_sampled of a replayed completion."},
    )
    replay_self_imitation: bool = field(
        default=False,
        metadata={"help": "Replayed completions weigh 1 and only their positive advantages R - V count "
                          "(self-imitation learning, Oh et al. 2018, arXiv 1806.05635) instead of the truncated "
                          "importance weight pi_now / pi_sampled: solutions the policy has since made unlikely still "
                          "pull."},
    )
    replay_policy_coef: float = field(
        default=1.0, metadata={"help": "Weight of the replayed-program term in the policy loss."},
    )
    push_replay_buffer: bool = field(
        default=False,
        metadata={"help": "Write the replay buffer (training prompts and completions) to the output folder on "
                          "save_model / push_to_hub. Checkpoints keep it for resuming either way, out of Hub uploads."},
    )
    disable_dropout: bool = field(
        default=True,
        metadata={"help": "Disable dropout in the policy (on by default here: replayed programs' importance weights "
                          "compare log-probabilities that must come from a deterministic policy)."},
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
        if self.replay_policy_weighting not in ("uniform", "task", "hard"):
            raise ValueError(f"replay_policy_weighting must be 'uniform', 'task' or 'hard', got "
                             f"{self.replay_policy_weighting!r}")
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
        if not (math.isfinite(self.positive_advantage_weight) and self.positive_advantage_weight >= 0):
            raise ValueError(f"positive_advantage_weight must be a finite number >= 0, got "
                             f"{self.positive_advantage_weight}")
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
        if self.critic_bias_init not in ("first_batch", "zero"):
            raise ValueError(f"critic_bias_init must be 'first_batch' or 'zero', got {self.critic_bias_init!r}")
        if self.baseline not in ("critic", "group"):
            raise ValueError(f"baseline must be 'critic' or 'group', got {self.baseline!r}")
        if self.baseline == "group" and self.num_generations < 2:
            raise ValueError("baseline='group' compares each return with its prompt's group mean: set "
                             "num_generations >= 2 (or keep baseline='critic')")
        if isinstance(self.pass_at_k, bool) or not isinstance(self.pass_at_k, int) or self.pass_at_k < 1:
            raise ValueError(f"pass_at_k must be a whole number >= 1, got {self.pass_at_k!r}")
        if self.pass_at_k > 1 and self.num_generations < self.pass_at_k:
            raise ValueError(f"pass_at_k={self.pass_at_k} draws k completions from each prompt's group: set "
                             f"num_generations >= {self.pass_at_k} (it is {self.num_generations})")
        if self.pass_at_k > 1 and self.pass_at_k == self.num_generations and self.baseline == "group":
            warnings.warn(f"pass_at_k = num_generations = {self.pass_at_k} with baseline='group': every completion "
                          "of a group gets the same return, so every advantage is 0; use num_generations > "
                          "pass_at_k", stacklevel=3)
        self._check_grpo_options()

    # GRPO options whose effect this trainer's loss does not implement: a value other than GRPOConfig's default
    # would be silently ignored, so it is refused by name
    _UNUSED_GRPO_OPTIONS = ("use_adaptive_entropy", "top_entropy_quantile",
                            "importance_sampling_level", "off_policy_mask_threshold", "delta",
                            "multi_objective_aggregation", "use_bias_correction_kl", "use_liger_kernel",
                            "sapo_temperature_neg", "sapo_temperature_pos", "vespo_k_pos", "vespo_lambda_pos",
                            "vespo_k_neg", "vespo_lambda_neg")
    # GRPO options that the critic replaces: common in GRPO scripts, so a swap keeps running, with a warning
    _REPLACED_GRPO_OPTIONS = {"loss_type": "the loss is REINFORCE with the critic's baseline, normalised by the "
                                           "number of completion tokens",
                              "scale_rewards": "advantages are R - V (set whiten_advantages=True to normalise them)"}

    def _check_grpo_options(self):
        defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
        for name in self._UNUSED_GRPO_OPTIONS:
            if name in defaults and getattr(self, name, defaults[name]) != defaults[name]:
                raise ValueError(f"{name}={getattr(self, name)!r} is a GRPOTrainer option that ActorCriticTrainer's "
                                 f"loss does not use; leave it at its default ({defaults[name]!r})")
        for name, instead in self._REPLACED_GRPO_OPTIONS.items():
            if name in defaults and getattr(self, name, defaults[name]) != defaults[name]:
                warnings.warn(f"{name}={getattr(self, name)!r} has no effect in ActorCriticTrainer: {instead}",
                              stacklevel=4)
