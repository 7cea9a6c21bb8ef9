"""Run by test_accelerate.py under `accelerate launch --config_file trl_unittest/configs/accelerate_cpu*.yaml`: a
few ActorCritic steps, then each rank writes its critic's and policy's weight checksums, how the policy was
distributed, and the logged metrics to OUT/rank-<i>.json."""

import json
import sys

import torch
from datasets import Dataset
from transformers import AutoTokenizer

from trl_unittest.trainer import ActorCriticConfig, ActorCriticTrainer


def low_ids(completion_ids, **kwargs):
    return [sum(t < 258 for t in c) / max(len(c), 1) for c in completion_ids]


def main(model_dir, out_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = Dataset.from_dict({"prompt": ["def f(x):\n", "def g(y):\n", "class A:\n", "import os\n"] * 16})
    args = ActorCriticConfig(output_dir=out_dir, per_device_train_batch_size=8, gradient_accumulation_steps=2,
                             max_completion_length=8, learning_rate=2e-2, critic_learning_rate=1e-2, max_steps=16,
                             logging_steps=1, report_to="none", save_strategy="steps", save_steps=16, use_cpu=True,
                             disable_tqdm=True, lr_scheduler_type="constant")
    trainer = ActorCriticTrainer(model_dir, low_ids, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    rank = trainer.accelerator.process_index
    critic = torch.cat([p.detach().flatten() for p in trainer.critic.parameters()])
    # under FSDP2 the parameters are DTensors (each rank holds a shard): full_tensor() gathers them
    policy = torch.cat([(p.full_tensor() if hasattr(p, "full_tensor") else p).detach().flatten()
                        for p in trainer.model.parameters()])
    sharded = any(hasattr(p, "full_tensor") for p in trainer.model.parameters())
    with open(f"{out_dir}/rank-{rank}.json", "w") as f:
        json.dump({"world": trainer.accelerator.num_processes, "critic": critic.double().sum().item(),
                   "critic_abs": critic.abs().double().sum().item(), "policy": policy.double().sum().item(),
                   "log": trainer.state.log_history, "replay": len(trainer.replay),
                   "distributed_type": str(trainer.accelerator.distributed_type), "sharded": sharded}, f)
    # tear the gloo group down before exit: left to interpreter shutdown, its threads can abort the process
    # ("terminate called without an active exception", seen once in CI)
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
