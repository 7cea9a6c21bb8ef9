"""`UnitTestRewardModel`: the same reward for trl 1.12's PPOTrainer. The adapter itself is tested everywhere; the PPO
run needs the `ppo` extra (trl==1.12.0) and is skipped elsewhere."""

import copy

import pytest
import torch
from datasets import Dataset

from trl_unittest.trainer import UnitTestRewardModel

TASKS = [
    {"prompt": "def add(a, b):\n", "entry_point": "add", "tests": ["add(1, 2) == 3"]},
    {"prompt": "def neg(x):\n", "entry_point": "neg", "tests": ["neg(1) == -1"]},
]


class RecordingReward:
    """Stands in for `trl_unittest.rewards.UnitTestReward`: same call signature, records what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, completion_ids=None, **columns):
        self.calls.append({"prompts": prompts, "completions": completions, **columns})
        values = [float(c.count("return")) + (0.5 if e == "add" else 0.0)
                  for c, e in zip(completions, columns["entry_point"])]
        self.calls[-1]["rewards"] = values
        return values


def encode(tokenizer, prompt, completion, width):
    ids = tokenizer(prompt).input_ids + tokenizer(completion).input_ids
    pad = width - len(ids)
    return [tokenizer.pad_token_id] * pad + ids, len(ids)


def test_scores_by_prompt_lookup(tokenizer):
    reward = RecordingReward()
    rm = UnitTestRewardModel(reward, tokenizer, Dataset.from_list(TASKS))
    rows = [encode(tokenizer, "def add(a, b):\n", "    return a + b\n", 24),
            encode(tokenizer, "def neg(x):\n", "    pass\n", 24)]
    ids = torch.tensor([r[0] for r in rows])
    assert rm(ids).tolist() == [1.5, 0.0]
    call = reward.calls[-1]
    assert call["prompts"] == ["def add(a, b):\n", "def neg(x):\n"]
    assert call["completions"] == ["    return a + b\n", "    pass\n"]
    assert call["tests"] == [["add(1, 2) == 3"], ["neg(1) == -1"]] and call["entry_point"] == ["add", "neg"]


def test_trl_get_reward_reads_the_reward_at_the_last_token(tokenizer):
    # the path PPOTrainer takes: `get_reward(model, query_responses, pad_token_id, context_length)`
    rm = UnitTestRewardModel(lambda prompts, completions: [float(len(c)) for c in completions], tokenizer, TASKS)
    ids, _ = encode(tokenizer, "def add(a, b):\n", "    return 1\n", 20)
    query_responses = torch.tensor([ids + [tokenizer.pad_token_id] * 4])
    attention_mask = query_responses != tokenizer.pad_token_id
    out = getattr(rm, rm.base_model_prefix)(input_ids=query_responses, attention_mask=attention_mask,
                                            output_hidden_states=True)
    logits = rm.score(out.hidden_states[-1])
    assert logits.shape == (1, 24, 1) and logits[0, 19, 0].item() == len("    return 1\n")


def test_unknown_prompt_is_an_error_or_a_default(tokenizer):
    ids = torch.tensor([encode(tokenizer, "def other():\n", "    pass\n", 16)[0]])
    with pytest.raises(KeyError, match="no task has the prompt"):
        UnitTestRewardModel(RecordingReward(), tokenizer, TASKS)(ids)
    assert UnitTestRewardModel(RecordingReward(), tokenizer, TASKS, missing=-1.0)(ids).tolist() == [-1.0]


@pytest.mark.ppo
@pytest.mark.slow
def test_ppo_trainer_trains_on_the_unit_test_reward(tiny_llama, tokenizer, tmp_path):
    ppo = pytest.importorskip("trl.experimental.ppo", reason="needs the `ppo` extra (trl==1.12.0)")
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    reward = RecordingReward()
    tasks = Dataset.from_list(TASKS * 8)
    rm = UnitTestRewardModel(reward, tokenizer, tasks)
    train = tasks.map(lambda row: tokenizer(row["prompt"]), remove_columns=tasks.column_names)
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama)
    value = AutoModelForSequenceClassification.from_pretrained(tiny_llama, num_labels=1)
    args = ppo.PPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, total_episodes=16,
                         response_length=8, num_ppo_epochs=1, num_mini_batches=1, report_to="none", use_cpu=True,
                         num_sample_generations=0, save_strategy="no", stop_token="eos", missing_eos_penalty=None,
                         logging_steps=1)
    trainer = ppo.PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=copy.deepcopy(policy),
                             reward_model=rm, value_model=value, train_dataset=train)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer.train()
    assert len(reward.calls) == 4  # 16 episodes / batch of 4
    assert all(set(c["entry_point"]) <= {"add", "neg"} and len(c["tests"]) == len(c["prompts"]) for c in reward.calls)
    scores = [h["objective/scores"] for h in trainer.state.log_history if "objective/scores" in h]
    assert scores, trainer.state.log_history
    returned = [sum(c["rewards"]) / len(c["rewards"]) for c in reward.calls]
    assert sum(scores) / len(scores) == pytest.approx(sum(returned) / len(returned), abs=1e-5)  # same reward
    assert any(not torch.equal(v, policy.state_dict()[k]) for k, v in before.items())


UNIT_TASKS = [
    {"prompt": "def add(a, b):\n", "entry_point": "add", "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]},
    {"prompt": "def neg(x):\n", "entry_point": "neg", "tests": ["assert neg(1) == -1"]},
]


@pytest.fixture
def unit_test_reward():
    rewards = pytest.importorskip("trl_unittest.rewards")
    reward = rewards.UnitTestReward()
    try:
        probe = reward(prompts=["def f():\n"], completions=["    return 1\n"], tests=[["assert f() == 1"]],
                       entry_point=["f"])
    except Exception as exc:  # no sandbox on this machine
        reward.close()
        pytest.skip(f"UnitTestReward cannot run here: {exc}")
    assert probe == [1.0]
    yield reward
    reward.close()


def test_same_reward_as_unit_test_reward(tokenizer, unit_test_reward):
    rm = UnitTestRewardModel(unit_test_reward, tokenizer, UNIT_TASKS)
    completions = ["    return a + b\n", "    return x\n"]
    direct = unit_test_reward(prompts=[t["prompt"] for t in UNIT_TASKS], completions=completions,
                              tests=[t["tests"] for t in UNIT_TASKS],
                              entry_point=[t["entry_point"] for t in UNIT_TASKS])
    ids = torch.tensor([encode(tokenizer, t["prompt"], c, 24)[0] for t, c in zip(UNIT_TASKS, completions)])
    assert direct == [1.0, -0.3]
    assert rm(ids).tolist() == pytest.approx(direct)


@pytest.mark.slow
def test_actor_critic_trains_on_unit_test_reward(tiny_llama, tokenizer, unit_test_reward, tmp_path):
    from trl_unittest.trainer import ActorCriticConfig, ActorCriticTrainer

    ds = Dataset.from_list(UNIT_TASKS * 4)
    args = ActorCriticConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, max_completion_length=8,
                             max_steps=2, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
                             disable_tqdm=True)
    trainer = ActorCriticTrainer(tiny_llama, unit_test_reward, args=args, train_dataset=ds, processing_class=tokenizer)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 2
    assert all(-1.0 <= h["reward"] <= 1.0 and "pass_rate" in h and "critic/loss" in h for h in logs)
