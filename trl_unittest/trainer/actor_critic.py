"""`ActorCriticTrainer`: REINFORCE with a learned critic, the training scheme of Gorinski et al. 2023
("Automatic Unit Test Data Generation and Actor-Critic RL for Code Synthesis", arXiv 2310.13669).

It is a `GRPOTrainer` (same constructor, same dataset and reward-function conventions, same generation, vLLM,
PEFT and logging machinery) with these changes:

* **Baseline.** GRPO's group-mean baseline is replaced by a critic: a small feed-forward network on the policy's
  last hidden state predicting the expected return, per completion token (V(s_t), default) or per prompt. The
  advantage is R - V, so one completion per prompt (`num_generations=1`) is enough. With groups
  (`num_generations > 1`) the group mean can be the baseline instead (`baseline="group"`), and the returns can be
  those of pass@k training (`pass_at_k`, Chen et al. 2025: `pass_at_k_returns`).
* **Loss** (`_compute_loss`). REINFORCE, -A log pi, normalised by the number of completion tokens, plus the
  critic's mean-squared error. PPO's ratio clip is used only when the batch was sampled by an older policy
  (`num_iterations > 1`); KL to the reference model when `beta > 0`; positive advantages down-weighted when
  `positive_advantage_weight < 1` (W-REINFORCE); GRPOConfig's `entropy_coef` adds GRPO's entropy bonus. The hidden
  states come from the policy's own forward through a forward hook on the backbone, so the critic costs one small
  MLP, not another forward.
* **Critic in sync.** The critic has its own AdamW, stepped at every optimiser step of the policy, on the fresh
  samples and on samples replayed from an AST-filtered replay buffer (`replay.py`); it can instead be pre-trained
  for `critic_warmup_steps` and frozen (the paper's ablation). Its learning rate follows the run's schedule and
  warm-up, its gradients are clipped and, under fp16, unscaled (a step with inf/NaN gradients is skipped). Its
  output bias starts at the first batch's mean return (`critic_bias_init`), so the first advantages are centred.
* **Time split.** Every step's seconds in generation, reward (the sandbox), replay, the policy's forward /
  backward / optimiser step and the critic's step are logged as ``time/*`` and summed in `step_timer`
  (`timing.py`).
* **Artifacts.** `save_model` writes the critic next to the policy as a model of its own (`critic/config.json`,
  `critic/model.safetensors`: `Critic.from_pretrained`); checkpoints add its optimiser and scheduler
  (`critic_optimizer.pt`) and the replay buffer (`_replay-<rank>.pt`, which Hub uploads skip); every file is loaded
  with `torch.load(weights_only=True)`. The model card names ActorCritic and cites Gorinski et al. 2023.

vLLM generation works with GRPO's importance-sampling correction of vLLM's sampling log-probabilities. Data
parallelism works (`tests/trainer/test_accelerate.py`, 2 CPU processes); DeepSpeed and FSDP are refused at
construction with a message that says what to use (see `_refuse_sharded_engines`).

Works with trl 1.12.0 (the last release with `PPOTrainer`) and the newest trl.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable

import torch
from accelerate.utils import is_peft_model
from transformers import get_scheduler
from trl import GRPOTrainer

from ..code import ast_fingerprint
from .config import ActorCriticConfig
from .critic import Critic, explained_variance
from .replay import ReplayBuffer, collate, program_fingerprint
from .timing import StepTimer

CRITIC_DIR = "critic"
CRITIC_OPTIMIZER_FILE = "critic_optimizer.pt"


def replay_file(rank: int, checkpoint: bool) -> str:
    """Checkpoints keep the replay buffer as `_replay-<rank>.pt`: the Trainer's Hub uploads skip names starting with
    `_`, so training prompts and completions never leave the machine unless `push_replay_buffer` asks."""
    return f"{'_' if checkpoint else ''}replay-{rank}.pt"


def pass_at_k_returns(passed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Each completion's expected pass@k over the k-subsets of its group that hold it (Chen et al. 2025, arXiv
    2508.10751, whose analytical advantages are these returns minus their group mean). ``passed``: (groups * n,)
    booleans, each group's n completions consecutive. A pass returns 1; a failure returns 1 minus the chance that
    the k - 1 others drawn from the group's other n - 1 all fail, C(f - 1, k - 1) / C(n - 1, k - 1) for a group
    with f failures. The mean over a group is 1 - C(f, k) / C(n, k), the unbiased pass@k estimate of Chen et al.
    2021 (each k-subset is counted once per member)."""
    groups = passed.reshape(-1, n)
    all_fail = torch.tensor([math.comb(f - 1, k - 1) / math.comb(n - 1, k - 1) if f else 0.0 for f in range(n + 1)],
                            dtype=torch.float32, device=passed.device)
    fail_return = 1.0 - all_fail[(~groups).sum(dim=1)]
    return torch.where(groups, torch.ones_like(fail_return)[:, None], fail_return[:, None]).reshape(-1)


def _pad_cat(a: torch.Tensor, b: torch.Tensor, value, left: bool) -> torch.Tensor:
    """Concatenate two (B, L) tensors along the batch, padding the shorter one on the left or on the right."""
    width = max(a.size(1), b.size(1))

    def pad(x):
        extra = width - x.size(1)
        if extra == 0:
            return x
        fill = x.new_full((x.size(0), extra), value)
        return torch.cat([fill, x], 1) if left else torch.cat([x, fill], 1)

    return torch.cat([pad(a), pad(b)], 0)


def _refuse_sharded_engines(args) -> None:
    """DeepSpeed and FSDP are refused before the model loads. The critic is trained outside their engines: under
    DeepSpeed its loss scaling and ZeRO partitioning would not cover it; FSDP could not be verified (accelerate runs
    FSDP on accelerators only, and this trainer is tested on CPU processes), and an untested sharded run is worse
    than a clear refusal."""
    use = ("Use data parallelism instead: `accelerate launch --multi_gpu --num_processes N script.py` on GPUs, or "
           "`accelerate launch --config_file trl_unittest/configs/accelerate_cpu.yaml script.py` on CPUs; a model "
           "too large for one device can train a LoRA adapter (`peft_config=`).")
    if args.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise ValueError("ActorCriticTrainer does not support DeepSpeed: the critic is trained outside the DeepSpeed "
                         "engine, whose loss scaling, ZeRO partitioning and gradient reduction would not cover it. "
                         + use)
    if args.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        raise ValueError("ActorCriticTrainer does not support FSDP yet: its critic and replay passes have not been "
                         "verified under sharded parameters. " + use)


class ActorCriticTrainer(GRPOTrainer):
    """Trainer for actor-critic RL from unit tests (Gorinski et al. 2023). Takes `trl.GRPOTrainer`'s arguments,
    with an [`ActorCriticConfig`]; see the module docstring for what changes.

    Args:
        model: the policy, a model id or path, or a `PreTrainedModel` / `PeftModel` (a causal LM whose backbone
            returns its last hidden state: the critic reads it).
        reward_funcs: reward function(s) or reward model(s), as for GRPOTrainer (e.g. `UnitTestReward()`).
        args: an `ActorCriticConfig` (default: one named after the model).
        train_dataset, eval_dataset, processing_class, reward_processing_classes, callbacks, optimizers,
        quantization_config, peft_config, tools, rollout_func, environment_factory: as for GRPOTrainer.
            `optimizers` sets the policy's optimiser and scheduler; the critic has its own (`critic_*` settings).
    """

    _tag_names = ["trl", "actor-critic", "trl-unittest"]
    _name = "ActorCritic"
    _paper = {
        "title": "Automatic Unit Test Data Generation and Actor-Critic Reinforcement Learning for Code Synthesis",
        "id": "2310.13669",
        "citation": textwrap.dedent("""\
            @inproceedings{gorinski2023automatic,
                title        = {{Automatic Unit Test Data Generation and Actor-Critic Reinforcement Learning for Code Synthesis}},
                author       = {Philip John Gorinski and Matthieu Zimmer and Gerasimos Lampouras and Derrick Goh Xin Deik and Ignacio Iacobacci},
                year         = 2023,
                booktitle    = {Findings of the Association for Computational Linguistics: EMNLP 2023},
                eprint       = {arXiv:2310.13669},
            }"""),
    }

    def __init__(self, model, reward_funcs=None, args: ActorCriticConfig | None = None, train_dataset=None,
                 eval_dataset=None, processing_class=None, reward_processing_classes=None, callbacks=None,
                 optimizers=(None, None), quantization_config=None, peft_config=None,
                 tools: list[Callable] | None = None, rollout_func: Callable | None = None,
                 environment_factory=None):
        if args is None:
            from trl.trainer.utils import get_config_model_id

            name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = ActorCriticConfig(f"{name.split('/')[-1]}-ActorCritic")
        if not isinstance(args, ActorCriticConfig):
            raise TypeError(f"ActorCriticTrainer needs an ActorCriticConfig, got {type(args).__name__}: swap "
                            "GRPOConfig for ActorCriticConfig (it takes the same arguments).")
        _refuse_sharded_engines(args)
        optional = dict(quantization_config=quantization_config, tools=tools, rollout_func=rollout_func,
                        environment_factory=environment_factory)
        super().__init__(model, reward_funcs, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, reward_processing_classes=reward_processing_classes,
                         callbacks=callbacks, optimizers=optimizers, peft_config=peft_config,
                         **{k: v for k, v in optional.items() if v is not None})
        # GRPO's sampler drops a generation batch it cannot fill with distinct prompts, so a smaller dataset
        # trains 0 steps with only a warning (seen with a curriculum that kept 4 tasks for a batch of 64)
        need = args.generation_batch_size // self.num_generations
        have = len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else None
        if have is not None and have < need:
            raise ValueError(
                f"train_dataset has {have} prompts, but one generation batch takes {need} distinct prompts "
                f"(generation_batch_size {args.generation_batch_size} / num_generations {self.num_generations}): "
                "no step could run. Use a smaller per_device_train_batch_size, more num_generations, or a larger "
                "(or repeated) dataset.")

        # The critic reads the last hidden state of the policy's backbone, captured by a forward hook.
        causal_lm = self._causal_lm()
        backbone = getattr(causal_lm, "base_model", None)
        hidden_size = getattr(causal_lm.config.get_text_config(), "hidden_size", None)
        if backbone is None or backbone is causal_lm or not isinstance(hidden_size, int):
            raise ValueError(
                f"The critic needs the policy's hidden states, but {type(causal_lm).__name__} does not expose a "
                "backbone (`model.base_model` returning `last_hidden_state`) with a `config.hidden_size`. Use a "
                "transformers causal LM (e.g. *ForCausalLM)."
            )
        self._backbone = backbone
        self._captured: list[torch.Tensor] | None = None
        self._hook = backbone.register_forward_hook(self._capture_hidden_state)
        # dropout left on by the user (disable_dropout=False): the behaviour log-probabilities stored for replay
        # come from an eval-mode forward, as the sampling policy's did
        self._has_dropout = any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in causal_lm.modules())

        with torch.random.fork_rng(devices=[]):  # GRPOTrainer seeds each process differently; the critic must
            torch.manual_seed(args.seed)        # start identical on every rank
            self.critic = Critic(hidden_size, list(args.critic_widths), args.critic_value_level).to(
                self.accelerator.device)
        self.critic_optimizer = torch.optim.AdamW(
            self.critic.parameters(), lr=args.critic_learning_rate, weight_decay=args.critic_weight_decay
        )
        self.critic_lr_scheduler = None  # created with the policy's, when the number of steps is known
        self._critic_bias_ready = args.critic_bias_init == "zero"
        self.replay = ReplayBuffer(args.replay_capacity, args.replay_eviction,
                                   seed=args.seed + self.accelerator.process_index)
        self._replay_before = None  # replay ids >= this belong to the generation batch being trained on
        self._last_scored = None  # (rewards_per_func, prompts, completions) of the latest _calculate_rewards
        # the reward whose program builder the replay dedup uses: the first that exposes one (UnitTestReward)
        self._program_reward = next((f for f in self.reward_funcs if callable(getattr(f, "programs", None))), None)
        # seconds per part of each step (logged as time/*, summed over the run in step_timer.split())
        self.step_timer = StepTimer(self._metrics["train"])
        self.add_callback(self.step_timer)

    # ------------------------------------------------------------------ helpers
    def _causal_lm(self):
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if is_peft_model(model) else model

    def _capture_hidden_state(self, module, args, output):
        if self._captured is not None:
            self._captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    def _in_warmup(self) -> bool:
        return self.model.training and self.state.global_step < self.args.critic_warmup_steps

    @property
    def critic_frozen(self) -> bool:
        return self.args.freeze_critic_after_warmup and self.state.global_step >= self.args.critic_warmup_steps

    def _values(self, hidden: torch.Tensor, logits_to_keep: int, mask: torch.Tensor) -> torch.Tensor:
        """Critic values (B, T) for the completion positions: V(s_t) is read from the hidden state that predicts
        completion token t; at sequence level, the hidden state of the last prompt token, repeated over T."""
        if not self.args.critic_backprop or self.critic_frozen or self._in_warmup():
            hidden = hidden.detach()
        return self.critic.values(hidden, logits_to_keep)

    def _hidden_states(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's last hidden state for a batch, through the (wrapped) model's own forward, so that DDP,
        FSDP and PEFT see an ordinary call; only the last position's logits are computed."""
        self._captured = []
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1)
            return torch.cat(self._captured, dim=0)
        finally:
            self._captured = None

    @torch.no_grad()
    def _eval_logps(self, model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
        """Per-token log-probabilities of the policy in eval mode (no dropout), as generation sampled them."""
        model.eval()
        try:
            logps, _, _ = self._get_per_token_logps_and_entropies(
                model, torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1),
                completion_ids.size(1))
        finally:
            model.train()
        return logps

    def _gather_mean(self, x: torch.Tensor, mask: torch.Tensor) -> float:
        t = self.accelerator.reduce(torch.stack([(x * mask).sum(), mask.sum()]).float().detach(), reduction="sum")
        return (t[0] / t[1].clamp(min=1.0)).item()

    # ------------------------------------------------------------------ generation: returns instead of advantages
    def _generate(self, prompts: list):
        with self.step_timer.part("generation"):
            return super()._generate(prompts)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        with self.step_timer.part("reward"):
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_scored = (rewards_per_func, prompts, completions)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        with self.step_timer.part("scoring"):  # less the generation and reward timed inside it
            output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        rewards_per_func, prompts, completions = self._last_scored
        self._last_scored = None
        device = self.accelerator.device
        # rewards_per_func holds every process's rows; keep ours (as GRPOTrainer slices its advantages)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
        scored = rewards[~unscorable]
        if scored.numel():
            self._metrics[mode]["pass_rate"].append((scored >= self.args.pass_reward_threshold).float().mean().item())
        start = self.accelerator.process_index * len(prompts)
        local = slice(start, start + len(prompts))
        output.pop("advantages", None)  # GRPO's group advantages: replaced by R - V in _compute_loss
        # ...and not logged as if they were ours: R - V exists only in the loss (NaN in the completions table)
        logged = self._logs.get("advantages") if hasattr(self, "_logs") else None
        if logged is not None and len(logged) >= len(rewards):
            for k in range(len(logged) - len(rewards), len(logged)):
                logged[k] = float("nan")
        if self.num_generations == 1 and self._metrics[mode].get("frac_reward_zero_std"):
            self._metrics[mode]["frac_reward_zero_std"].pop()  # a group of one always has zero std
        returns = rewards.nan_to_num(0.0)
        if self.args.pass_at_k > 1:  # an unscored completion counts as failing its group
            passed = (rewards >= self.args.pass_reward_threshold) & ~unscorable
            returns = pass_at_k_returns(passed, self.num_generations, self.args.pass_at_k)
        output["returns"] = returns[local]
        output["scorable"] = (~unscorable[local]).float()
        if self.args.baseline == "group":  # every process's rows are here, so groups are whole (as in GRPO)
            means = returns.view(-1, self.num_generations).mean(dim=1)
            output["baselines"] = means.repeat_interleave(self.num_generations)[local]

        if mode == "train" and not self._critic_bias_ready:
            self._init_critic_bias(returns[~unscorable])

        replay_index = torch.full((len(prompts),), -1, dtype=torch.long, device=device)
        if mode == "train" and self.args.replay_capacity > 0:
            with self.step_timer.part("replay"):
                self._add_to_replay(inputs, prompts, completions, output, replay_index, device)
        output["replay_index"] = replay_index
        return output

    def _add_to_replay(self, inputs, prompts, completions, output, replay_index, device) -> None:
        """Store the scored batch in the replay buffer (``replay_index``: each row's entry id, -1 if not stored)."""
        self._replay_before = self.replay.next_id  # this batch's entries: not replayed while it trains
        hits_before = self.replay.hits
        p_ids, p_mask = output["prompt_ids"], output["prompt_mask"]
        c_ids, c_mask = output["completion_ids"], output["completion_mask"]
        t_mask = output.get("tool_mask")
        fingerprints = self._fingerprints(inputs, prompts, completions)
        for i in range(len(prompts)):
            if not output["scorable"][i] or not c_mask[i].any():  # unscored, or masked out (truncated)
                continue
            keep = c_mask[i].bool()
            replay_index[i] = self.replay.add(
                prompts[i], completions[i], p_ids[i][p_mask[i].bool()].tolist(), c_ids[i][keep].tolist(),
                output["returns"][i].item(), fingerprint=fingerprints[i],
                tool_mask=None if t_mask is None else t_mask[i][keep].tolist(),
            )
        stats = torch.tensor([len(self.replay), self.replay.offered, self.replay.hits,
                              self.replay.hits - hits_before], dtype=torch.float32, device=device)
        size, offered, hits, new_hits = self.accelerator.reduce(stats, reduction="sum").tolist()
        self._metrics["train"]["replay/size"].append(size)
        self._metrics["train"]["replay/unique_ast_ratio"].append(1.0 - hits / max(offered, 1.0))
        self._metrics["train"]["replay/hits"].append(new_hits)

    def _fingerprints(self, inputs, prompts, completions) -> list[str]:
        """The AST fingerprint of the program each completion was scored as: built by the reward's own program
        builder (truncation, fences, its entry-point column or the entry point its tests call), so completions that
        differ only in what the reward cut away are one program. Without such a reward, the completion as sampled."""
        reward = self._program_reward
        if reward is not None:
            columns = {k: [row.get(k) for row in inputs] for k in inputs[0]
                       if k not in ("prompt", "completion", "completion_ids")} if inputs and isinstance(inputs[0],
                                                                                                     dict) else {}
            programs = reward.programs(prompts, completions, **columns)
            return [ast_fingerprint(p.code) for p in programs]
        return [program_fingerprint(p, c) for p, c in zip(prompts, completions)]

    @torch.no_grad()
    def _init_critic_bias(self, returns: torch.Tensor) -> None:
        """Start the critic's output at the first batch's mean return (every process's rows: the same on all
        ranks). A zero start gives every early token an advantage of about the raw reward: with `partial` rewards,
        mostly negative at first, the policy is pushed down everywhere before the critic catches up."""
        if returns.numel() == 0:
            return  # nothing scored yet: try the next batch
        self.critic.head.bias.fill_(returns.float().mean().item())
        self._critic_bias_ready = True
        self._metrics["train"]["critic/init_bias"].append(self.critic.head.bias.item())

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("The ActorCriticTrainer does not support returning outputs")
        return self._compute_loss(model, inputs)

    def _compute_loss(self, model, inputs):
        args = self.args
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        returns = inputs["returns"]
        n_fresh = prompt_ids.size(0)

        # Hidden states of a replayed batch for the critic (no grad; taken before the policy's forward so that its
        # activations are freed before the policy's graph is built). Entries of the generation batch being trained
        # on are left out: they are in this step's fresh rows already.
        replay_hidden, extra = None, []
        if mode == "train" and args.replay_critic_batch_size > 0 and len(self.replay) and not self.critic_frozen:
            with self.step_timer.part("replay"):
                extra = self.replay.sample(args.replay_critic_batch_size, before=self._replay_before)
                if extra:
                    extra = collate(extra, self._tokenizer.pad_token_id, device)
                    with torch.no_grad():
                        replay_hidden = self._hidden_states(
                            model, torch.cat([extra["prompt_ids"], extra["completion_ids"]], 1),
                            torch.cat([extra["prompt_mask"], extra["completion_mask"]], 1))

        # Replayed high-reward programs: a forward of their own, so that the fresh rows keep the padding they were
        # sampled (and their old/ref log-probabilities computed) with; positions shift with left padding in
        # models with absolute position embeddings
        replayed = []
        if mode == "train" and args.replay_policy_batch_size > 0:
            replayed = self.replay.sample(args.replay_policy_batch_size, min_reward=args.replay_min_reward,
                                          need_logp=True, before=self._replay_before,
                                          weighting=args.replay_policy_weighting)
        parts = [(prompt_ids, prompt_mask, completion_ids, completion_mask)]
        if replayed:
            r = collate(replayed, self._tokenizer.pad_token_id, device)
            parts.append((r["prompt_ids"], r["prompt_mask"], r["completion_ids"], r["completion_mask"]))
        logps_parts, entropy_parts, value_parts = [], [], []
        for p_ids, p_mask, c_ids, c_mask in parts:
            self._captured = []
            try:
                part_logps, part_entropies, _ = self._get_per_token_logps_and_entropies(
                    model, torch.cat([p_ids, c_ids], dim=1), torch.cat([p_mask, c_mask], dim=1), c_ids.size(1),
                    compute_entropy=True)
                hidden = torch.cat(self._captured, dim=0)
            finally:
                self._captured = None
            if hidden.size(0) != p_ids.size(0):
                raise RuntimeError("the critic's hook captured hidden states for a different batch than the policy's")
            logps_parts.append(part_logps)
            entropy_parts.append(part_entropies)
            value_parts.append(self._values(hidden, c_ids.size(1), c_mask))  # (B, T)
        per_token_logps, entropies, values = logps_parts[0], entropy_parts[0], value_parts[0]
        if replayed:  # one batch again, completions right-padded to the wider side
            per_token_logps = _pad_cat(per_token_logps, logps_parts[1], 0.0, left=False)
            entropies = _pad_cat(entropies, entropy_parts[1], 0.0, left=False)
            values = _pad_cat(values, value_parts[1], 0.0, left=False)
            mask = _pad_cat(mask, r["completion_mask"] * r["tool_mask"], 0, left=False)  # no gradient on tool output
            completion_mask = _pad_cat(completion_mask, r["completion_mask"], 0, left=False)
            returns = torch.cat([returns, r["returns"]])

        # fresh rows and their completion columns (replayed rows may have widened the batch on either side)
        fresh = (slice(0, n_fresh), slice(0, inputs["completion_ids"].size(1)))
        mask_f = mask[fresh].float() * inputs["scorable"][:, None]
        baseline = values
        if "baselines" in inputs:  # the fresh rows' group means (baseline="group"); replayed rows keep V
            baseline = values.clone()
            baseline[:n_fresh] = inputs["baselines"][:, None]
        advantages = (returns[:, None] - baseline).detach()
        if args.whiten_advantages:
            mean = self._gather_mean(advantages[fresh], mask_f)
            var = self._gather_mean((advantages[fresh] - mean) ** 2, mask_f)
            advantages = (advantages - mean) / (var ** 0.5 + 1e-6)
        if args.positive_advantage_weight != 1.0:  # W-REINFORCE (arXiv 2506.01347): successes pull less
            advantages = torch.where(advantages > 0, args.positive_advantage_weight * advantages, advantages)

        # Policy loss on fresh rows: REINFORCE, or PPO's clip when the batch came from an older policy.
        logps = per_token_logps[fresh]
        old_logps = inputs.get("old_per_token_logps")
        adv = advantages[fresh]
        if old_logps is None:
            per_token_loss = -adv * logps
        else:
            ratio = torch.exp(logps - old_logps)
            clipped = torch.clamp(ratio, 1 - self.epsilon_low, 1 + self.epsilon_high)
            per_token_loss = -torch.min(ratio * adv, clipped * adv)
            region = ((ratio < 1 - self.epsilon_low) & (adv < 0)) | ((ratio > 1 + self.epsilon_high) & (adv > 0))
            self._metrics[mode]["clip_ratio/region_mean"].append(self._gather_mean(region.float(), mask_f))
        if self.use_vllm and self.vllm_importance_sampling_correction:
            # vLLM sampled the batch, not this policy: weight by the truncated (or masked) ratio pi_old / pi_vllm
            # that GRPOTrainer computed from vLLM's sampling log-probabilities, as its own loss does (before KL)
            per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
        if self.beta != 0.0:
            ref = inputs["ref_per_token_logps"]
            per_token_kl = torch.exp(ref - logps) - (ref - logps) - 1
            per_token_loss = per_token_loss + self.beta * per_token_kl
            self._metrics[mode]["kl"].append(self._gather_mean(per_token_kl, mask_f))
        policy_loss = (per_token_loss * mask_f).sum() / mask_f.sum().clamp(min=1.0)

        # Replayed rows: the same REINFORCE term, weighted by the truncated importance weight pi_now / pi_sampled,
        # or self-imitation's: weight 1 and the positive part of the advantage (Oh et al. 2018, eq. 2 without its
        # value term, which the critic's own loss below already trains)
        if replayed:
            rows = slice(n_fresh, None)
            r_mask = mask[rows].float()
            r_adv = advantages[rows]
            if args.replay_self_imitation:
                weight = torch.ones(len(replayed), device=r_mask.device)
                r_adv = r_adv.clamp(min=0.0)
            else:
                seq_logp = (per_token_logps[rows] * r_mask).sum(-1)
                weight = torch.exp(seq_logp.detach() - r["behaviour_logp"]).clamp(max=args.replay_is_clip)
            replay_loss = -(weight[:, None] * r_adv * per_token_logps[rows] * r_mask).sum()
            policy_loss = policy_loss + args.replay_policy_coef * replay_loss / r_mask.sum().clamp(min=1.0)
            self._metrics[mode]["replay/importance_weight_mean"].append(weight.mean().item())
            self._metrics[mode]["replay/policy_samples"].append(float(len(replayed)))

        # Remember the sampling policy's log-probability of freshly stored programs (for replay to the policy).
        if mode == "train" and args.replay_policy_batch_size > 0:
            behaviour = inputs.get("sampling_per_token_logps")  # vLLM's own, when it sampled
            if behaviour is None:
                behaviour = old_logps if old_logps is not None else logps.detach()
            if self._has_dropout and model.training and "sampling_per_token_logps" not in inputs:
                behaviour = self._eval_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
            behaviour = behaviour.nan_to_num(0.0)
            seq_behaviour = (behaviour * mask[fresh]).sum(-1).tolist()
            for i, eid in enumerate(inputs["replay_index"].tolist()):
                entry = self.replay.get(eid) if eid >= 0 else None
                if entry is not None and entry.logp is None:
                    entry.logp = seq_behaviour[i]

        # Critic: squared error on every scorable row of this batch and on a replayed batch.
        crit_mask = mask.float()
        crit_mask[:n_fresh] *= inputs["scorable"][:, None]
        sq_err = (values - returns[:, None]) ** 2
        critic_sum, critic_count = (sq_err * crit_mask).sum(), crit_mask.sum()
        if replay_hidden is not None:
            r_values = self._values(replay_hidden, extra["completion_ids"].size(1), extra["completion_mask"])
            r_mask = (extra["completion_mask"] * extra["tool_mask"]).float()
            critic_sum = critic_sum + (((r_values - extra["returns"][:, None]) ** 2) * r_mask).sum()
            critic_count = critic_count + r_mask.sum()
        critic_loss = critic_sum / critic_count.clamp(min=1.0)

        # critic-only warm-up: the policy's loss is left out of the graph (and the critic reads detached hidden
        # states), so policy parameters get no gradient and AdamW skips them (no weight decay either)
        if self._in_warmup():
            loss = critic_loss.new_zeros(())
        else:
            loss = policy_loss
            if args.entropy_coef:  # GRPOConfig's entropy bonus, as GRPOTrainer applies it
                loss = loss - args.entropy_coef * (entropies[fresh] * mask_f).sum() / mask_f.sum().clamp(min=1.0)
        if not self.critic_frozen:
            loss = loss + args.critic_loss_coef * critic_loss
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss = loss / normalizer

        # Metrics (averaged over processes)
        m = self._metrics[mode]
        m["policy_loss"].append(self.accelerator.reduce(policy_loss.detach(), reduction="mean").item())
        m["critic/loss"].append(self.accelerator.reduce(critic_loss.detach(), reduction="mean").item())
        err = (returns[:n_fresh, None] - values[fresh]).detach()
        ret = returns[:n_fresh, None].expand_as(err)
        sums = torch.stack([mask_f.sum(), (ret * mask_f).sum(), (ret ** 2 * mask_f).sum(), (err * mask_f).sum(),
                            (err ** 2 * mask_f).sum()])
        ev = explained_variance(self.accelerator.reduce(sums.float(), reduction="sum"))
        if ev == ev:  # not nan
            m["critic/explained_variance"].append(ev)
        m["critic/value_mean"].append(self._gather_mean(values[fresh].detach(), mask_f))
        adv_f = advantages[fresh]
        m["advantages/mean"].append(self._gather_mean(adv_f, mask_f))
        m["advantages/std"].append(self._gather_mean((adv_f - m["advantages/mean"][-1]) ** 2, mask_f) ** 0.5)
        valid = mask_f.bool()
        lo = adv_f[valid].min() if valid.any() else adv_f.new_tensor(float("inf"))
        hi = adv_f[valid].max() if valid.any() else adv_f.new_tensor(float("-inf"))
        lo, hi = self.accelerator.gather(lo.reshape(1)).min().item(), self.accelerator.gather(hi.reshape(1)).max().item()
        if lo <= hi:  # some token counted somewhere (every completion masked out: nothing to report)
            m["advantages/min"].append(lo)
            m["advantages/max"].append(hi)
        m["entropy"].append(self._gather_mean(entropies[fresh].detach(), mask_f))
        return loss

    # ------------------------------------------------------------------ the critic's optimiser step
    def training_step(self, model, inputs, num_items_in_batch):
        # "policy": the forward and backward, less the generation, reward and replay timed inside (the optimiser
        # step is added by the timer's callback)
        with self.step_timer.part("policy"):
            loss = super().training_step(model, inputs, num_items_in_batch)
        # the Trainer's own flag for "the optimiser steps after this micro-step": it also covers the shorter
        # accumulation at the end of an epoch, where counting micro-steps drifts
        if self.accelerator.sync_gradients:
            with self.step_timer.part("critic"):
                self._critic_step()
        return loss

    def _critic_step(self):
        params = [p for p in self.critic.parameters() if p.grad is not None]
        if self.critic_frozen or not params:
            self.critic_optimizer.zero_grad(set_to_none=True)
            return
        if self.accelerator.num_processes > 1:
            for p in params:
                p.grad = self.accelerator.reduce(p.grad, reduction="mean")
        # fp16: the loss was multiplied by the policy's GradScaler before backward, and so were these gradients;
        # the scaler is updated after this (in the policy's optimizer.step), so its scale is the one used
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            inv_scale = 1.0 / scaler.get_scale()
            for p in params:
                p.grad.mul_(inv_scale)
            if not all(torch.isfinite(p.grad).all() for p in params):  # an overflow step: skipped, as the policy's
                self._metrics["train"]["critic/skipped_steps"].append(1.0)
                self.critic_optimizer.zero_grad(set_to_none=True)
                return
        if self.args.critic_max_grad_norm and self.args.critic_max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.args.critic_max_grad_norm)
            self._metrics["train"]["critic/grad_norm"].append(norm.item())
        self.critic_optimizer.step()
        if self.critic_lr_scheduler is not None:
            self._metrics["train"]["critic/learning_rate"].append(self.critic_optimizer.param_groups[0]["lr"])
            self.critic_lr_scheduler.step()
        self.critic_optimizer.zero_grad(set_to_none=True)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The policy's scheduler, and the critic's: the same type, warm-up and length, on its own peak rate."""
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if self.critic_lr_scheduler is None:
            self.critic_lr_scheduler = get_scheduler(
                self.args.lr_scheduler_type, optimizer=self.critic_optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps, scheduler_specific_kwargs=self.args.lr_scheduler_kwargs)
        return scheduler

    # ------------------------------------------------------------------ artifacts and checkpoints
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """The policy as GRPOTrainer saves it, and the critic beside it in `critic/` (config + safetensors). The
        replay buffer only with `push_replay_buffer` (checkpoints keep theirs, see `_save_optimizer_and_scheduler`)."""
        super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            self.critic.save_pretrained(os.path.join(output_dir, CRITIC_DIR))
        if self.args.push_replay_buffer and self.args.replay_capacity > 0:
            os.makedirs(output_dir, exist_ok=True)
            torch.save(self.replay.state_dict(),
                       os.path.join(output_dir, replay_file(self.accelerator.process_index, checkpoint=False)))

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """Checkpoints only: the critic's optimiser and scheduler, and each process's replay buffer."""
        super()._save_optimizer_and_scheduler(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        if self.args.should_save:
            torch.save({"optimizer": self.critic_optimizer.state_dict(),
                        "scheduler": None if self.critic_lr_scheduler is None else
                        self.critic_lr_scheduler.state_dict()},
                       os.path.join(output_dir, CRITIC_OPTIMIZER_FILE))
        if self.args.replay_capacity > 0:
            torch.save(self.replay.state_dict(),
                       os.path.join(output_dir, replay_file(self.accelerator.process_index, checkpoint=True)))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        self.load_critic(checkpoint)
        if self.args.replay_capacity > 0:
            rank = self.accelerator.process_index
            for name in (replay_file(rank, checkpoint=True), replay_file(rank, checkpoint=False)):
                path = os.path.join(checkpoint, name)
                if os.path.exists(path):
                    self.replay.load_state_dict(torch.load(path, weights_only=True))
                    self.replay.reconfigure(self.args.replay_capacity, self.args.replay_eviction)  # this run's
                    break

    def load_critic(self, directory: str) -> None:
        """Restore the critic from `directory/critic/` (a checkpoint or a saved model) and, from a checkpoint, its
        optimiser and scheduler (`critic_optimizer.pt`). The moments and the schedule's position resume; the peak
        learning rate and weight decay are this run's."""
        from safetensors.torch import load_model

        weights = os.path.join(directory, CRITIC_DIR, "model.safetensors")
        legacy = os.path.join(directory, "critic.pt")  # checkpoints of earlier versions: weights and optimiser
        if os.path.exists(weights):
            load_model(self.critic, weights, device=str(self.accelerator.device))
            path = os.path.join(directory, CRITIC_OPTIMIZER_FILE)
            state = torch.load(path, map_location=self.accelerator.device, weights_only=True) \
                if os.path.exists(path) else None
        elif os.path.exists(legacy):
            state = torch.load(legacy, map_location=self.accelerator.device, weights_only=True)
            self.critic.load_state_dict(state["critic"])
        else:
            raise FileNotFoundError(f"no critic in {directory}: expected {weights}")
        self._critic_bias_ready = True  # a trained critic: its bias is not re-initialised
        if state is None:
            return
        self.critic_optimizer.load_state_dict(state["optimizer"])
        for group in self.critic_optimizer.param_groups:
            group["weight_decay"] = self.args.critic_weight_decay
            group["initial_lr"] = group["lr"] = self.args.critic_learning_rate
        scheduler = self.critic_lr_scheduler
        if hasattr(scheduler, "lr_lambdas") and state.get("scheduler") is not None:  # LambdaLR: all of get_scheduler's
            scheduler.load_state_dict(state["scheduler"])
            scheduler.base_lrs = [self.args.critic_learning_rate] * len(scheduler.base_lrs)
            for group, base, factor in zip(self.critic_optimizer.param_groups, scheduler.base_lrs,
                                           [f(scheduler.last_epoch) for f in scheduler.lr_lambdas]):
                group["lr"] = base * factor
