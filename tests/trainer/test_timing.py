"""The per-step time split of ActorCriticTrainer (trainer/timing.py): every part recorded, exclusive, summing to
the step's wall time."""

import time

from ac_toys import low_ids
from test_trainer import history, make_trainer

from trl_unittest.trainer.timing import PARTS, StepTimer

SLEEP = 0.2  # seconds the reward below takes per batch: a part of known size


def slow_reward(completion_ids, **kwargs):
    time.sleep(SLEEP)
    return low_ids(completion_ids)


def test_nested_parts_are_counted_once(monkeypatch):
    """On a clock the test moves (a loaded CI machine stretches real sleeps): exact seconds per part."""
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    timer = StepTimer()
    timer.on_step_begin(None, None, None)
    now[0] += 0.5  # before any part: "other"
    with timer.part("policy"):
        now[0] += 0.25
        with timer.part("reward"):
            now[0] += 1.0
    timer.on_step_end(None, None, None)
    split = timer.split()
    assert split["reward"] == 1.0
    assert split["policy"] == 0.25  # the reward's second is not the policy's too
    assert split["step"] == 1.75 and split["other"] == 0.5
    assert sum(split[p] for p in (*PARTS, "other")) == split["step"]
    assert split["steps"] == 1


def test_trainer_logs_each_part_of_each_step(tiny_llama, tokenizer, prompts_ds, tmp_path):
    trainer = make_trainer(tiny_llama, slow_reward, prompts_ds, tokenizer, tmp_path, max_steps=3,
                           replay_critic_batch_size=4)
    trainer.train()
    steps = history(trainer, "time/step")
    assert len(steps) == 3
    for part in PARTS:
        if part == "scoring":  # no reference model, one iteration: little besides tokenising
            continue
        assert all(t > 0 for t in history(trainer, f"time/{part}")), part
    rewards = history(trainer, "time/reward")
    assert all(t >= SLEEP for t in rewards), rewards
    for i, step in enumerate(steps):
        # exclusive times: the reward's sleep is timed inside scoring, itself inside the policy's training_step;
        # counted twice, the parts would add up to more than the step ("other" is never negative)
        parts = sum(history(trainer, f"time/{p}")[i] for p in (*PARTS, "other"))
        assert abs(parts - step) < 1e-6 * max(1.0, step) + 1e-9
        assert history(trainer, "time/other")[i] < 0.5 * step  # the timed parts cover most of the step
    split = trainer.step_timer.split()
    assert split["steps"] == 3
    assert abs(split["step"] - sum(steps)) < 0.05
    assert split["reward"] >= 3 * SLEEP - 0.01  # split() rounds to 0.01 s
