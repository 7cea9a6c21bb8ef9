"""Training tests on tiny offline models: every one checks that something learnable moved."""

import math
import os
from pathlib import Path

import pytest
import torch
from ac_toys import by_prompt, low_ids
from transformers import AutoModelForCausalLM

from trl_unittest.trainer import ActorCriticConfig, ActorCriticTrainer


def make_trainer(model, reward, dataset, tokenizer, tmp_path, **overrides):
    kw = dict(output_dir=str(tmp_path), per_device_train_batch_size=16, max_completion_length=8, learning_rate=1e-2,
              critic_learning_rate=1e-2, max_steps=30, logging_steps=1, report_to="none", save_strategy="no",
              use_cpu=True, disable_tqdm=True, lr_scheduler_type="constant", seed=0)
    kw.update(overrides)
    return ActorCriticTrainer(model, reward, args=ActorCriticConfig(**kw), train_dataset=dataset,
                              processing_class=tokenizer)


def history(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h and h[key] is not None]


def mean(xs):
    return sum(xs) / len(xs)


def test_reward_rises_with_one_generation_per_prompt(tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path)
    assert trainer.args.num_generations == 1  # the critic is the baseline
    trainer.train()
    rewards = history(trainer, "reward")
    assert len(rewards) == 30
    assert mean(rewards[-5:]) > mean(rewards[:5]) + 0.1, rewards
    for key in ("critic/loss", "critic/explained_variance", "advantages/mean", "advantages/std", "advantages/min",
                "advantages/max", "pass_rate", "reward_std", "replay/size", "replay/unique_ast_ratio", "replay/hits"):
        assert history(trainer, key), key


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_critic_explained_variance_rises(level, tiny_llama, tokenizer, prompts_ds, tmp_path):
    # policy (almost) frozen, reward set mostly by the prompt: the critic alone must learn to explain it
    trainer = make_trainer(tiny_llama, by_prompt, prompts_ds, tokenizer, tmp_path, learning_rate=1e-9, max_steps=20,
                           critic_value_level=level)
    trainer.train()
    ev = history(trainer, "critic/explained_variance")
    assert abs(ev[0]) < 1e-6  # a zero-initialised critic explains nothing
    assert mean(ev[-5:]) > 0.6, ev


def test_gpt2_and_gradient_accumulation(tiny_gpt2, prompts_ds, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    trainer = make_trainer(tiny_gpt2, low_ids, prompts_ds, tok, tmp_path, per_device_train_batch_size=8,
                           gradient_accumulation_steps=2, max_steps=25)
    steps = []
    original = trainer._critic_step
    trainer._critic_step = lambda: (steps.append(trainer._step), original())[1]
    trainer.train()
    assert steps == [2 * (i + 1) for i in range(25)]  # the critic steps once per optimiser step
    rewards = history(trainer, "reward")
    assert mean(rewards[-5:]) > mean(rewards[:5]) + 0.05, rewards


def test_frozen_pretrained_critic_ablation(tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, by_prompt, prompts_ds, tokenizer, tmp_path, max_steps=6,
                           critic_warmup_steps=3, freeze_critic_after_warmup=True)
    policy_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    snapshots = []
    trainer.add_callback(type("Snap", (__import__("transformers").TrainerCallback,), {
        "on_step_end": lambda self, args, state, control, **kw: snapshots.append(
            ({k: v.clone() for k, v in trainer.critic.state_dict().items()},
             {k: v.clone() for k, v in trainer.model.state_dict().items()}))})())
    trainer.train()
    critic = [c for c, _ in snapshots]
    policy = [p for _, p in snapshots]

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    assert not same(critic[0], critic[2])  # pre-training moves the critic
    assert same(critic[2], critic[3]) and same(critic[3], critic[5])  # then it is frozen
    assert same(policy_before, policy[2])  # the policy waits for the pre-trained critic
    assert not same(policy[2], policy[5])  # and trains afterwards


def test_replay_to_policy_with_importance_weights_and_reused_batches(tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=30, num_iterations=2,
                           replay_policy_batch_size=4, replay_min_reward=0.6, beta=0.02)
    trainer.train()
    assert history(trainer, "replay/policy_samples")
    weights = history(trainer, "replay/importance_weight_mean")
    assert all(0.0 <= w <= 1.0 for w in weights)
    assert history(trainer, "clip_ratio/region_mean") and history(trainer, "kl")  # PPO clip and KL paths ran
    rewards = history(trainer, "reward")
    assert mean(rewards[-5:]) > mean(rewards[:5]) + 0.05, rewards


def test_peft_lora_policy(tiny_llama_wide, tokenizer, prompts_ds, tmp_path):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = ActorCriticTrainer(
        tiny_llama_wide, low_ids, train_dataset=prompts_ds, processing_class=tokenizer, peft_config=config,
        args=ActorCriticConfig(output_dir=str(tmp_path), per_device_train_batch_size=16, max_completion_length=8,
                               learning_rate=5e-2, critic_learning_rate=1e-2, max_steps=30, logging_steps=1,
                               report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
                               lr_scheduler_type="constant"),
    )
    lora_before = {k: v.clone() for k, v in trainer.model.named_parameters() if "lora_B" in k}
    trainer.train()
    assert any(not torch.equal(v, dict(trainer.model.named_parameters())[k]) for k, v in lora_before.items())
    rewards = history(trainer, "reward")
    assert mean(rewards[-5:]) > mean(rewards[:5]) + 0.15, rewards
    trainer.save_model(str(tmp_path / "final"))
    assert os.path.exists(tmp_path / "final" / "critic" / "model.safetensors")
    assert os.path.exists(tmp_path / "final" / "adapter_config.json")


def test_checkpoint_restores_critic_and_replay(tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=4, save_strategy="steps",
                           save_steps=4)
    trainer.train()
    ckpt = tmp_path / "checkpoint-4"
    assert (ckpt / "critic" / "model.safetensors").exists() and (ckpt / "_replay-0.pt").exists()
    saved = {k: v.clone() for k, v in trainer.critic.state_dict().items()}
    assert any(v.abs().sum() > 0 for k, v in saved.items() if k.startswith("head"))  # it trained

    resumed = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=4)
    assert not all(torch.equal(v, resumed.critic.state_dict()[k]) for k, v in saved.items())
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert all(torch.equal(v, resumed.critic.state_dict()[k]) for k, v in saved.items())
    assert len(resumed.replay) == len(trainer.replay) > 0
    assert resumed.critic_optimizer.state_dict()["state"]  # Adam moments restored too
    # and a resumed run keeps training the critic
    more = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=6)
    more.train(resume_from_checkpoint=str(ckpt))
    assert not all(torch.equal(v, more.critic.state_dict()[k]) for k, v in saved.items())


def test_bad_configuration_fails_at_construction(tiny_llama, tokenizer, prompts_ds, tmp_path):
    with pytest.raises(ValueError, match="critic_value_level"):
        ActorCriticConfig(output_dir=str(tmp_path), critic_value_level="prompt", report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="freeze_critic_after_warmup=True needs critic_warmup_steps"):
        ActorCriticConfig(output_dir=str(tmp_path), freeze_critic_after_warmup=True, report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="replay_capacity=0"):
        ActorCriticConfig(output_dir=str(tmp_path), replay_capacity=0, report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="critic_widths"):
        ActorCriticConfig(output_dir=str(tmp_path), critic_widths=[0], report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="incompatible"):
        ActorCriticConfig(output_dir=str(tmp_path), critic_warmup_steps=2, freeze_critic_after_warmup=True,
                          critic_backprop=True, report_to="none", use_cpu=True)
    from trl import GRPOConfig

    with pytest.raises(TypeError, match="ActorCriticConfig"):
        ActorCriticTrainer(tiny_llama, low_ids,
                           args=GRPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True),
                           train_dataset=prompts_ds, processing_class=tokenizer)
    # fewer distinct prompts than one generation batch: GRPO would silently train 0 steps
    with pytest.raises(ValueError, match="train_dataset has 3 prompts, but one generation batch takes 16"):
        make_trainer(tiny_llama, low_ids, prompts_ds.select(range(3)), tokenizer, tmp_path)
    assert make_trainer(tiny_llama, low_ids, prompts_ds.select(range(4)), tokenizer, tmp_path,
                        num_generations=4).num_generations == 4  # 16 completions of 4 prompts: fine
    # a model that does not expose its backbone's hidden states
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model.base_model_prefix = "no_such_backbone"
    with pytest.raises(ValueError, match="hidden states"):
        make_trainer(model, low_ids, prompts_ds, tokenizer, tmp_path)


def test_replayed_rows_wider_than_the_fresh_batch(tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=1,
                           replay_policy_batch_size=2, replay_min_reward=0.0, beta=0.1,
                           replay_policy_weighting="hard")
    trainer.train()  # fills the buffer and records the sampling log-probabilities
    trainer._replay_before = None  # a later generation batch: the stored entries may be replayed
    for entry in trainer.replay.entries.values():  # longer prompts and completions than the batch below
        entry.prompt_ids, entry.completion_ids = [7] * 5 + entry.prompt_ids, entry.completion_ids + [5] * 6
    g = torch.Generator().manual_seed(0)
    inputs = {"prompt_ids": torch.randint(2, 500, (2, 3), generator=g),
              "prompt_mask": torch.ones(2, 3, dtype=torch.long),
              "completion_ids": torch.randint(2, 500, (2, 4), generator=g),
              "completion_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
              "returns": torch.tensor([0.5, 1.0]), "scorable": torch.ones(2), "replay_index": torch.tensor([-1, -1]),
              "old_per_token_logps": torch.full((2, 4), -6.0), "ref_per_token_logps": torch.full((2, 4), -6.0)}
    trainer.model.train()
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    assert torch.isfinite(loss)
    assert trainer._metrics["train"]["replay/policy_samples"][-1] == 2.0
    assert all(p.grad is not None for p in trainer.critic.parameters())


@pytest.mark.parametrize("backprop", [False, True])
def test_critic_gradient_reaches_the_backbone_only_when_asked(backprop, tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, by_prompt, prompts_ds, tokenizer, tmp_path, max_steps=2,
                           critic_backprop=backprop)
    trainer.model.train()
    torch.nn.init.normal_(trainer.critic.head.weight)  # it starts at zero, which passes no gradient back
    hidden = torch.randn(2, 6, trainer.critic.body[0].in_features, requires_grad=True)
    values = trainer._values(hidden, 3, torch.ones(2, 3))
    (grad,) = torch.autograd.grad(values.sum(), hidden, allow_unused=True)
    assert (grad is not None and bool(grad.abs().sum() > 0)) == backprop


@pytest.mark.parametrize("backprop", [False, True])
def test_critic_warmup_leaves_the_policy_untouched(backprop, tiny_llama, tokenizer, prompts_ds, tmp_path):
    """During the critic-only warm-up no policy parameter moves: no policy loss, no critic gradient into the
    backbone, and no AdamW weight decay (parameters without a gradient are skipped)."""
    with pytest.warns(UserWarning, match="only the critic trains"):
        trainer = make_trainer(tiny_llama, by_prompt, prompts_ds, tokenizer, tmp_path, max_steps=2,
                               critic_warmup_steps=2, critic_backprop=backprop, weight_decay=0.1)
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    critic_before = [p.clone() for p in trainer.critic.parameters()]
    trainer.train()
    moved = [k for k, v in trainer.model.named_parameters() if not torch.equal(before[k], v)]
    assert moved == []
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, trainer.critic.parameters()))


def test_critic_steps_with_the_policy_at_epoch_ends(tiny_llama, tokenizer, tmp_path):
    """The last accumulation of an epoch is shorter; the critic must still step exactly when the policy does."""
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": [f"def f{i}(x):\n" for i in range(18)]})  # 9 micro-steps an epoch
    trainer = make_trainer(tiny_llama, low_ids, ds, tokenizer, tmp_path, per_device_train_batch_size=4,
                           num_generations=2, gradient_accumulation_steps=2, steps_per_generation=3, max_steps=-1,
                           num_train_epochs=2)
    policy, critic = [], []
    critic_step = trainer._critic_step
    trainer._critic_step = lambda: (critic.append(trainer._step), critic_step())[1]

    from transformers import TrainerCallback

    class Spy(TrainerCallback):
        def on_optimizer_step(self, args, state, control, **kwargs):
            policy.append(trainer._step)

    trainer.add_callback(Spy())
    trainer.train()
    assert policy and critic == policy, (policy, critic)
    assert any(b - a == 1 for a, b in zip(policy, policy[1:])), policy  # an epoch ended on a short accumulation


def test_truncated_completions_are_not_replayed_and_advantages_are_not_grpos(tiny_llama, tokenizer, prompts_ds,
                                                                             tmp_path):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=2, max_completion_length=2,
                           mask_truncated_completions=True, log_completions=True)
    trainer.train()
    assert len(trainer.replay) == 0  # every completion was cut at 2 tokens: nothing to learn from or replay
    logged = list(trainer._logs["advantages"])
    assert logged and all(a != a for a in logged)  # NaN: GRPO's group advantages are not this trainer's
    assert all(abs(x) != float("inf") for x in history(trainer, "advantages/min") + history(trainer, "advantages/max"))


@pytest.mark.parametrize("field, value, message", [
    ("critic_loss_coef", -1.0, "critic_loss_coef must be a finite number > 0"),
    ("critic_loss_coef", 0.0, "critic_loss_coef must be a finite number > 0"),
    ("replay_is_clip", float("nan"), "replay_is_clip must be a finite number"),
    ("replay_min_reward", float("nan"), "replay_min_reward must be a finite number"),
    ("critic_warmup_steps", -5, "critic_warmup_steps must be a whole number >= 0"),
    ("replay_policy_coef", -2.0, "replay_policy_coef must be a finite number >= 0"),
    ("critic_widths", [64.7], "critic_widths must be positive integers"),
    ("importance_sampling_level", "sequence", "importance_sampling_level='sequence' is a GRPOTrainer option"),
    ("use_liger_kernel", True, "use_liger_kernel=True is a GRPOTrainer option"),
    ("use_adaptive_entropy", True, "use_adaptive_entropy=True is a GRPOTrainer option that ActorCriticTrainer's loss "
                                   "does not use"),
    ("critic_bias_init", "mean", "critic_bias_init must be 'first_batch' or 'zero'"),
    ("replay_policy_weighting", "rare", "replay_policy_weighting must be 'uniform', 'task' or 'hard'"),
])
def test_bad_actor_critic_settings_are_named(field, value, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        ActorCriticConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, **{field: value})


def test_reward_model_missing_is_checked():
    from trl_unittest.trainer.reward_model import UnitTestRewardModel

    with pytest.raises(ValueError, match="missing must be 'raise' or a finite reward"):
        UnitTestRewardModel(lambda *a, **k: [0.0], None, tasks={}, missing="skip")


def test_replayed_rows_do_not_move_the_fresh_rows_positions(tiny_gpt2, prompts_ds, tmp_path):
    """GPT-2 has absolute position embeddings: replayed rows with longer prompts must not widen the fresh rows'
    left padding, or their log-probabilities drift from the sampling ones (KL > 0 with an unchanged policy)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    trainer = make_trainer(tiny_gpt2, low_ids, prompts_ds, tok, tmp_path, max_steps=4, learning_rate=1e-12,
                           critic_learning_rate=1e-12, beta=0.1, replay_policy_batch_size=4, replay_min_reward=0.0,
                           disable_dropout=True)
    trainer.train()
    assert history(trainer, "replay/policy_samples"), "nothing was replayed"
    assert max(abs(k) for k in history(trainer, "kl")) < 1e-4, history(trainer, "kl")


def test_critic_is_saved_as_a_model_and_scores_after_training(tiny_llama, tokenizer, prompts_ds, tmp_path):
    import json

    from trl_unittest.trainer import Critic

    trainer = make_trainer(tiny_llama, by_prompt, prompts_ds, tokenizer, tmp_path, max_steps=3)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    config = json.loads((tmp_path / "final" / "critic" / "config.json").read_text())
    assert config["hidden_size"] == 64 and config["widths"] == [256] and config["value_level"] == "token"
    assert not list((tmp_path / "final").glob("*replay*"))  # not asked for: training data stays out
    critic = Critic.from_pretrained(str(tmp_path / "final" / "critic"))
    assert all(torch.equal(a, b) for a, b in zip(critic.state_dict().values(), trainer.critic.state_dict().values()))
    policy = AutoModelForCausalLM.from_pretrained(str(tmp_path / "final"))
    (values,) = critic.score(policy, tokenizer, ["def f(x):\n"], ["    return x\n"])
    n = len(tokenizer("    return x\n", add_special_tokens=False).input_ids)
    assert values.shape == (n,) and torch.isfinite(values).all()
    # the same values the trainer's critic gives on the trained policy's hidden states
    ids = torch.tensor([tokenizer("def f(x):\n", add_special_tokens=False).input_ids
                        + tokenizer("    return x\n", add_special_tokens=False).input_ids])
    with torch.no_grad():
        hidden = trainer._hidden_states(trainer.model.eval(), ids, torch.ones_like(ids))
        assert torch.allclose(trainer.critic.values(hidden, n)[0], values, atol=3e-3)


def test_checkpoints_load_weights_only_and_keep_the_schedule(tiny_llama, tokenizer, prompts_ds, tmp_path,
                                                              monkeypatch):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=4, save_strategy="steps",
                           save_steps=2, lr_scheduler_type="linear", warmup_steps=2, critic_learning_rate=1e-2)
    trainer.train()
    # the critic's learning rate follows the run's schedule: linear warm-up over 2 steps, then linear decay
    assert history(trainer, "critic/learning_rate") == pytest.approx([0.0, 5e-3, 1e-2, 5e-3])
    assert all(n > 0 for n in history(trainer, "critic/grad_norm"))
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: (loads.append(k.get("weights_only")), real_load(*a, **k))[1])
    resumed = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=4,
                           lr_scheduler_type="linear", warmup_steps=2, critic_learning_rate=1e-2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert loads and all(loads), loads  # every checkpoint file, the Trainer's own included, loads weights-only
    assert history(resumed, "critic/learning_rate")[-2:] == pytest.approx([1e-2, 5e-3])  # the schedule resumed


def test_critic_step_unscales_fp16_gradients_and_skips_overflows(tiny_llama, tokenizer, prompts_ds, tmp_path):
    from types import SimpleNamespace

    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, critic_max_grad_norm=0.0)
    scaler = SimpleNamespace(is_enabled=lambda: True, get_scale=lambda: 1024.0)
    trainer.accelerator.scaler = scaler
    seen = []
    trainer.critic_optimizer.step = lambda: seen.append([p.grad.clone() for p in trainer.critic.parameters()])
    for p in trainer.critic.parameters():
        p.grad = torch.full_like(p, 1024.0 * 0.5)
    trainer._critic_step()
    assert len(seen) == 1 and all(torch.allclose(g, torch.full_like(g, 0.5)) for g in seen[0])
    for p in trainer.critic.parameters():
        p.grad = torch.full_like(p, float("inf"))
    trainer._critic_step()
    assert len(seen) == 1  # the overflow step is skipped
    assert all(p.grad is None for p in trainer.critic.parameters())


@pytest.mark.parametrize("init", ["first_batch", "zero"])
def test_critic_bias_starts_at_the_first_batch_mean_return(init, tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, by_prompt, prompts_ds, tokenizer, tmp_path, max_steps=1, learning_rate=1e-9,
                           critic_learning_rate=1e-9, critic_bias_init=init)
    trainer.train()
    reward = history(trainer, "reward")[0]
    adv_mean = history(trainer, "advantages/mean")[0]
    if init == "first_batch":  # centred: the first advantages average ~0, not the raw reward (about 0.6 here)
        assert trainer.critic.head.bias.item() == pytest.approx(reward, abs=1e-6)
        assert abs(adv_mean) < 1e-3
    else:
        assert abs(trainer.critic.head.bias.item()) < 1e-6 and adv_mean == pytest.approx(reward, abs=1e-3)


def test_no_dropout_noise_in_replay_importance_weights(tiny_gpt2, prompts_ds, tmp_path):
    """GPT-2 has dropout 0.1: with the default config an unchanged policy's replay weights are exactly 1."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    trainer = make_trainer(tiny_gpt2, low_ids, prompts_ds, tok, tmp_path, max_steps=4, learning_rate=1e-12,
                           critic_learning_rate=1e-12, replay_policy_batch_size=4, replay_min_reward=0.0)
    assert trainer.args.disable_dropout and not trainer._has_dropout
    trainer.train()
    weights = history(trainer, "replay/importance_weight_mean")
    assert weights and all(w == pytest.approx(1.0, abs=1e-4) for w in weights), weights
    noisy = make_trainer(tiny_gpt2, low_ids, prompts_ds, tok, tmp_path, disable_dropout=False,
                         replay_policy_batch_size=4, replay_min_reward=0.0)
    assert noisy._has_dropout  # the user's choice: behaviour log-probs then come from an eval-mode forward


def test_current_generation_is_not_replayed_in_its_own_step(tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=4, steps_per_generation=2,
                           replay_policy_batch_size=8, replay_min_reward=0.0, replay_critic_batch_size=8)
    calls = []
    sample = trainer.replay.sample

    def spy(n, **kw):
        out = sample(n, **kw)
        calls.append((trainer._replay_before, [e.id for e in out]))
        return out

    trainer.replay.sample = spy
    trainer.train()
    assert any(ids for _, ids in calls), "nothing was replayed"
    assert all(i < before for before, ids in calls for i in ids), calls


def test_tool_output_tokens_of_replayed_rows_get_no_policy_gradient(tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=1,
                           replay_policy_batch_size=2, replay_min_reward=0.0, replay_critic_batch_size=0)
    trainer.train()
    trainer._replay_before = None
    g = torch.Generator().manual_seed(0)
    inputs = {"prompt_ids": torch.randint(2, 500, (2, 3), generator=g),
              "prompt_mask": torch.ones(2, 3, dtype=torch.long),
              "completion_ids": torch.randint(2, 500, (2, 4), generator=g),
              "completion_mask": torch.ones(2, 4, dtype=torch.long),
              "returns": torch.tensor([0.5, 1.0]), "scorable": torch.ones(2), "replay_index": torch.tensor([-1, -1])}
    trainer.model.train()

    def policy_loss(replay: int, tool_mask):
        for e in trainer.replay.entries.values():
            e.tool_mask = None if tool_mask is None else [tool_mask] * len(e.completion_ids)
        trainer.args.replay_policy_batch_size = replay
        trainer.replay.rng.seed(0)
        trainer._compute_loss(trainer.model, inputs)
        return trainer._metrics["train"]["policy_loss"][-1]

    fresh_only = policy_loss(0, None)
    assert policy_loss(2, None) != pytest.approx(fresh_only)  # replayed rows count...
    assert policy_loss(2, 0) == pytest.approx(fresh_only, abs=1e-6)  # ...except on tool-output tokens


def test_self_imitation_replays_forgotten_programs_and_only_their_positive_advantages(tiny_llama, tokenizer,
                                                                                       prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, max_steps=1,
                           replay_policy_batch_size=2, replay_min_reward=-100.0, replay_critic_batch_size=0)
    trainer.train()
    trainer._replay_before = None
    g = torch.Generator().manual_seed(0)
    inputs = {"prompt_ids": torch.randint(2, 500, (2, 3), generator=g),
              "prompt_mask": torch.ones(2, 3, dtype=torch.long),
              "completion_ids": torch.randint(2, 500, (2, 4), generator=g),
              "completion_mask": torch.ones(2, 4, dtype=torch.long),
              "returns": torch.tensor([0.5, 1.0]), "scorable": torch.ones(2), "replay_index": torch.tensor([-1, -1])}
    trainer.model.train()

    def policy_loss(replay: int, self_imitation: bool, reward: float):
        for e in trainer.replay.entries.values():  # sampled when far likelier than now: pi_now / pi_sampled ~ 0
            e.logp, e.reward = 50.0, reward
        trainer.args.replay_policy_batch_size = replay
        trainer.args.replay_self_imitation = self_imitation
        trainer.replay.rng.seed(0)
        trainer._compute_loss(trainer.model, inputs)
        return trainer._metrics["train"]["policy_loss"][-1], trainer._metrics["train"]["replay/importance_weight_mean"]

    fresh_only, _ = policy_loss(0, False, 10.0)
    forgotten, weights = policy_loss(2, False, 10.0)
    assert forgotten == pytest.approx(fresh_only, abs=1e-6) and weights[-1] < 1e-6  # importance weight: no pull
    imitated, weights = policy_loss(2, True, 10.0)
    assert imitated != pytest.approx(fresh_only, abs=1e-3) and weights[-1] == 1.0  # self-imitation: full pull
    assert policy_loss(2, True, -10.0)[0] == pytest.approx(fresh_only, abs=1e-6)  # negative advantages dropped


def test_vllm_importance_sampling_correction_on_synthetic_sampling_logps(tiny_llama, tokenizer, prompts_ds, tmp_path):
    """vLLM is not installable here: the trainer's generation is wrapped to return sampling log-probabilities a
    known factor below the policy's (ratio pi / pi_vllm = 1.5 per token). GRPOTrainer's own code turns them into the
    importance-sampling ratio; ActorCritic's policy loss must be weighted by it, as GRPO's is."""
    import math

    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, vllm_importance_sampling_mode=
                           "token_truncate", vllm_importance_sampling_clip_max=3.0, replay_critic_batch_size=0,
                           critic_bias_init="zero")  # advantages = raw rewards > 0: a policy loss far from 0
    generate = trainer._generate

    def fake_vllm_generate(prompts):
        trainer.use_vllm = False  # the transformers path samples; vLLM's log-probabilities are synthesised
        try:
            out = list(generate(prompts))
        finally:
            trainer.use_vllm = True
        logprobs = []
        with torch.no_grad():
            for p, c in zip(out[0], out[1]):
                ids = torch.tensor([list(p) + list(c)])
                lp, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, torch.ones_like(ids), len(c))
                logprobs.append((lp[0] - math.log(1.5)).tolist())
        out[4] = logprobs
        return tuple(out)

    trainer._generate = fake_vllm_generate
    trainer.use_vllm, trainer.vllm_importance_sampling_correction = True, True
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    batch = [{"prompt": p} for p in prompts_ds["prompt"][:16]]
    out = trainer._generate_and_score_completions(batch)
    mask = out["completion_mask"].bool()
    # 1.5 up to the float noise of a padded against an unpadded forward
    assert torch.allclose(out["importance_sampling_ratio"][mask], torch.tensor(1.5), atol=5e-3)
    trainer._compute_loss(trainer.model, out)
    corrected = trainer._metrics["train"]["policy_loss"][-1]
    out["importance_sampling_ratio"] = torch.ones_like(out["importance_sampling_ratio"])
    trainer._compute_loss(trainer.model, out)
    plain = trainer._metrics["train"]["policy_loss"][-1]
    assert corrected == pytest.approx(1.5 * plain, rel=5e-3)


def test_model_card_and_push_to_hub(tiny_llama, tokenizer, prompts_ds, tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    uploads = []

    def fake_upload_folder(self, *, folder_path, ignore_patterns=None, **kwargs):
        files = [str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()]
        uploads.append(set(filter_repo_objects(files, ignore_patterns=ignore_patterns)))

    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    for push_replay in (False, True):
        out = tmp_path / f"run-{push_replay}"
        trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, out, max_steps=2, save_strategy="steps",
                               save_steps=2, push_replay_buffer=push_replay)
        trainer.train()
        trainer.hub_model_id = "someone/actor-critic-test"
        trainer.push_to_hub()
        card = (out / "README.md").read_text()
        assert "ActorCritic" in card and "2310.13669" in card and "Gorinski" in card and "DeepSeekMath" not in card
        assert {"critic/config.json", "critic/model.safetensors", "model.safetensors", "README.md"} <= uploads[-1]
        assert ("replay-0.pt" in uploads[-1]) == push_replay
        assert not any("checkpoint" in f for f in uploads[-1])
        # a checkpoint's replay buffer is out of checkpoint pushes too (hub_strategy="checkpoint" uploads the folder)
        ckpt = out / "checkpoint-2"
        assert (ckpt / "_replay-0.pt").exists()
        assert "_replay-0.pt" not in set(filter_repo_objects(["_replay-0.pt"], ignore_patterns=["_*", "checkpoint-*"]))


def test_signature_deepspeed_and_replaced_grpo_options(tiny_llama, tokenizer, prompts_ds, tmp_path, monkeypatch):
    import inspect

    from trl import GRPOTrainer

    ours = inspect.signature(ActorCriticTrainer.__init__).parameters
    assert list(inspect.signature(GRPOTrainer.__init__).parameters) == list(ours)
    with pytest.warns(UserWarning, match="loss_type='grpo' has no effect"):
        ActorCriticConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, loss_type="grpo")
    with pytest.warns(UserWarning, match="scale_rewards='batch' has no effect"):
        ActorCriticConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, scale_rewards="batch")
    args = ActorCriticConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    for engine, message in (("DEEPSPEED", "does not support DeepSpeed"), ("FSDP", "does not support FSDP")):
        with monkeypatch.context() as env:
            env.setenv(f"ACCELERATE_USE_{engine}", "true")  # as `accelerate launch --use_deepspeed/--use_fsdp` sets it
            with pytest.raises(ValueError, match=message + ".*accelerate_cpu.yaml"):
                ActorCriticTrainer(tiny_llama, low_ids, args=args, train_dataset=prompts_ds, processing_class=tokenizer)


def test_bf16_policy_with_an_fp32_critic(tiny_llama, tokenizer, prompts_ds, tmp_path):
    """Mixed precision: the policy runs under bf16 autocast, the critic keeps fp32 weights and reads the hidden
    states cast to fp32; it trains, and its loss stays finite."""
    trainer = make_trainer(tiny_llama, by_prompt, prompts_ds, tokenizer, tmp_path, max_steps=3, bf16=True)
    before = [p.clone() for p in trainer.critic.parameters()]
    trainer.train()
    assert all(p.dtype == torch.float32 for p in trainer.critic.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.critic.parameters()))
    losses = history(trainer, "critic/loss")
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)


def test_positive_advantages_are_down_weighted_only(tiny_llama, tokenizer, prompts_ds, tmp_path):
    """W-REINFORCE: the policy loss is L_neg + w * L_pos, where L_neg comes from the tokens whose advantage is
    negative. At w=0 only failures teach (a loss < 0, since -A log pi < 0 for A < 0); the loss is linear in w."""
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, replay_critic_batch_size=0)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts_ds["prompt"][:16]])
    losses = {}
    for w in (0.0, 0.25, 1.0):
        trainer.args.positive_advantage_weight = w
        trainer._compute_loss(trainer.model, out)
        losses[w] = trainer._metrics["train"]["policy_loss"][-1]
    assert losses[0.0] < 0 < losses[1.0] - losses[0.0]  # both signs present: the batch's advantages are centred
    assert losses[0.25] == pytest.approx(0.75 * losses[0.0] + 0.25 * losses[1.0], rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match="positive_advantage_weight must be a finite number >= 0"):
        ActorCriticConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, positive_advantage_weight=-0.1)


def test_entropy_coef_subtracts_the_mean_token_entropy(tiny_llama, tokenizer, prompts_ds, tmp_path):
    """GRPOConfig's `entropy_coef` works as in GRPOTrainer: loss - coef * mean per-token entropy of the batch."""
    trainer = make_trainer(tiny_llama, low_ids, prompts_ds, tokenizer, tmp_path, replay_critic_batch_size=0)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts_ds["prompt"][:16]])
    losses = {}
    for coef in (0.0, 0.5):
        trainer.args.entropy_coef = coef
        losses[coef] = trainer._compute_loss(trainer.model, out).item()
        entropy = trainer._metrics["train"]["entropy"][-1]
    assert entropy > 0.1  # a random-initialised model: far from deterministic
    assert losses[0.5] == pytest.approx(losses[0.0] - 0.5 * entropy, rel=1e-4)


def test_pass_at_k_returns_are_each_completions_expected_pass_at_k():
    """Against brute force over every k-subset: a completion's return is the mean pass@k of the k-subsets of its
    group that hold it, and a group's mean return is the unbiased pass@k estimate 1 - C(f, k) / C(n, k)."""
    import itertools

    from trl_unittest.trainer.actor_critic import pass_at_k_returns

    for n in range(2, 7):
        patterns = list(itertools.product([False, True], repeat=n))
        passed = torch.tensor([p for pattern in patterns for p in pattern])
        for k in range(2, n + 1):
            got = pass_at_k_returns(passed, n, k).view(len(patterns), n)
            for row, pattern in zip(got.tolist(), patterns):
                subsets = list(itertools.combinations(range(n), k))
                for i in range(n):
                    holding = [any(pattern[j] for j in s) for s in subsets if i in s]
                    assert row[i] == pytest.approx(sum(holding) / len(holding))
                f = n - sum(pattern)
                assert sum(row) / n == pytest.approx(1 - math.comb(f, k) / math.comb(n, k))


def test_group_baseline_and_pass_at_k_training(tiny_llama, tokenizer, prompts_ds, tmp_path):
    """baseline='group': a reward that depends on the prompt only gives every completion of a group the group's
    mean, so no policy gradient (the critic's baseline does give one); pass_at_k turns the rewards into pass@k
    returns before anything else sees them, and a run trains with both."""
    from trl_unittest.trainer.actor_critic import pass_at_k_returns

    def first_byte_of_prompt(prompts, completion_ids, **kwargs):
        return [float(p.startswith("def")) for p in prompts]

    losses = {}
    for baseline in ("group", "critic"):
        trainer = make_trainer(tiny_llama, first_byte_of_prompt, prompts_ds, tokenizer, tmp_path,
                               replay_critic_batch_size=0, num_generations=4, baseline=baseline,
                               critic_bias_init="zero")
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1
        out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts_ds["prompt"][:4]
                                                       for _ in range(4)])
        assert ("baselines" in out) == (baseline == "group")
        trainer._compute_loss(trainer.model, out)
        losses[baseline] = trainer._metrics["train"]["policy_loss"][-1]
    assert losses["group"] == 0.0 and losses["critic"] != 0.0

    seen = []

    def recorded_low_ids(completion_ids, **kwargs):
        seen.append(low_ids(completion_ids))
        return seen[-1]

    trainer = make_trainer(tiny_llama, recorded_low_ids, prompts_ds, tokenizer, tmp_path, max_steps=2,
                           num_generations=4, pass_at_k=2, baseline="group", pass_reward_threshold=0.5)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts_ds["prompt"][:4]
                                                   for _ in range(4)])
    passed = torch.tensor(seen[-1]) >= 0.5
    assert 0 < passed.sum() < len(passed)  # both kinds: the returns below are not all 0 or all 1
    assert torch.allclose(out["returns"], pass_at_k_returns(passed, 4, 2))
    groups = out["returns"].view(4, 4)
    assert torch.allclose(out["baselines"].view(4, 4), groups.mean(1, keepdim=True).expand(4, 4))
    trainer.train()
    assert len(history(trainer, "policy_loss")) == 2


@pytest.mark.parametrize("overrides, message", [
    (dict(baseline="group"), "baseline='group' compares each return with its prompt's group mean"),
    (dict(baseline="mean", num_generations=4), "baseline must be 'critic' or 'group'"),
    (dict(pass_at_k=4, num_generations=2), "pass_at_k=4 draws k completions from each prompt's group"),
    (dict(pass_at_k=0), "pass_at_k must be a whole number >= 1"),
])
def test_bad_group_settings_are_named(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        ActorCriticConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, **overrides)
