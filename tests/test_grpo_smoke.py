"""UnitTestReward as `reward_funcs` of TRL's GRPOTrainer, on a tiny model built offline."""

import pytest

from trl_unittest import UnitTestReward
from trl_unittest.tasks import Task, Test, to_dataset
from trl_unittest.trainer.tiny import build_model


@pytest.mark.slow
def test_grpo_trains_with_the_unit_test_reward(tmp_path, pool):
    from trl import GRPOConfig, GRPOTrainer

    model_dir = build_model(tmp_path / "model", "llama")
    tasks = [Task(f"t/{i}", f"def f{i}(x):\n    return ", f"f{i}", [Test(expr=f"f{i}(1)", expected="1")]) for i in range(4)]
    dataset = to_dataset(tasks)
    reward = UnitTestReward(pool=pool)

    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, max_steps=2, learning_rate=1e-4, report_to=[], logging_steps=1,
                      use_cpu=True, save_strategy="no")
    trainer = GRPOTrainer(model=model_dir, reward_funcs=reward, args=args, train_dataset=dataset)
    trainer.train()
    steps = [e for e in trainer.state.log_history if "rewards/unit_tests_partial/mean" in e]
    assert len(steps) == 2
    for entry in steps:
        # rewards lie in the scheme's range, and the outcome metrics logged through log_metric add up
        assert -1.0 <= entry["rewards/unit_tests_partial/mean"] <= 1.0
        statuses = sum(entry[f"unit_tests_partial/{k}"] for k in ("compile_error", "import_error", "sandbox_error"))
        assert 0.0 <= statuses <= 1.0
        # random tokens after "return " almost never make f(1) == 1
        assert entry["unit_tests_partial/pass_rate"] < 1.0
