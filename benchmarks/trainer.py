"""Throughput and peak memory of ActorCriticTrainer against TRL 1.12's PPOTrainer and GRPOTrainer.

All trainers get the same randomly initialised model (by default Llama-style, about 25M parameters, built offline;
`--arch qwen2 --size 0.5b` in the GPU run of `device_check.sh`), the same prompts, the same number of completions
per optimiser step, the same completion length (generation is forced to run to the full length), the same
gradient-checkpointing setting (TRL's default, on) and the same reward (`UnitTestRewardModel` wraps it for PPO).
Each trainer runs in its own process, so peak memory is its own: on CPU the peak resident set size minus the
resident size after the imports, on GPU `torch.cuda.max_memory_allocated`. PPO runs under the interpreter of
`--ppo-python` (default: the repo's `.venv-ppo`, with trl==1.12.0) when this one has no `trl.experimental.ppo`.

    python benchmarks/trainer.py --quick              # CPU, a few steps
    python benchmarks/trainer.py --device cuda --bf16 # GPU

Samples/s is completions per step over the median step time of the timed steps (warm-up excluded; the median
resists the bursts of a shared machine; `samples_per_s_mean` is the plain average; `samples_per_cpu_s` divides
by the process's CPU time instead of wall time, which other users' load barely changes); a step is one
optimiser step of ActorCritic/GRPO and one rollout + update of PPO (`num_ppo_epochs` passes, default 4; the
`ppo_1epoch` row uses 1). `actor_critic_kl` is ActorCritic with a KL penalty (`--beta`, default 0.04), so with a
reference model in memory as PPO always has one: the memory ratio is then not only "no value model". The last line
of the output is one JSON object; `--out DIR` also writes it to DIR/trainer.json and the table to DIR/trainer.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "def add(a, b):\n", "def is_even(n):\n", "def reverse(s):\n", "def fib(n):\n", "def count_vowels(text):\n",
    "def flatten(xs):\n", "def mean(values):\n", "def is_prime(n):\n", "class Stack:\n", "def gcd(a, b):\n",
    "def unique(items):\n", "def clamp(x, lo, hi):\n",
]
METHODS = ("actor_critic", "actor_critic_kl", "grpo", "ppo", "ppo_1epoch")


def low_ids(completion_ids=None, prompts=None, completions=None, **kwargs):
    """The shared toy reward: the fraction of completion tokens that are single bytes (cheap, so the benchmark
    measures the trainers, not the reward)."""
    return [sum(t < 258 for t in c) / max(len(c), 1) for c in completion_ids]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Timer:
    """A TrainerCallback (duck-typed, so it works with PPOTrainer's handler too) timing steps after the warm-up."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.steps, self.last, self.durations = warmup, None, None, 0, None, []
        self.cpu_start = self.cpu_end = None  # process CPU time (all threads): robust to other users' load

    def __getattr__(self, name):  # every other callback event: no-op
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now, cpu = time.perf_counter(), time.process_time()
        if state.global_step == self.warmup:
            self.start, self.cpu_start = now, cpu
        elif state.global_step > self.warmup:
            self.end, self.cpu_end, self.steps = now, cpu, state.global_step - self.warmup
            self.durations.append(now - self.last)
        self.last = now


def worker(opts) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    base_rss = rss_mb()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    cuda = opts.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    dtype = torch.bfloat16 if opts.bf16 else torch.float32
    tok = AutoTokenizer.from_pretrained(opts.model_dir)
    n_prompts = opts.batch * (opts.warmup + opts.steps)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_prompts)]
    timer = Timer(opts.warmup)
    callback = type("TimerCallback", (TrainerCallback,), {"on_step_end": lambda self, *a, **k: timer.on_step_end(*a, **k)})()
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=opts.batch, learning_rate=1e-5,
                  report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
                  use_cpu=not cuda, bf16=opts.bf16, gradient_checkpointing=not opts.no_gradient_checkpointing)
    policy = AutoModelForCausalLM.from_pretrained(opts.model_dir, dtype=dtype)

    if opts.method in ("actor_critic", "actor_critic_kl", "grpo"):
        gen = dict(max_completion_length=opts.length, generation_kwargs={"min_new_tokens": opts.length},
                   max_steps=opts.warmup + opts.steps)
        if opts.method.startswith("actor_critic"):
            from trl_unittest.trainer import ActorCriticConfig, ActorCriticTrainer

            beta = opts.beta if opts.method == "actor_critic_kl" else 0.0
            args = ActorCriticConfig(**common, **gen, num_generations=1, beta=beta)
            trainer_cls = ActorCriticTrainer
        else:
            from trl import GRPOConfig, GRPOTrainer

            args = GRPOConfig(**common, **gen, num_generations=opts.grpo_generations)
            trainer_cls = GRPOTrainer
        trainer = trainer_cls(policy, low_ids, args=args, processing_class=tok, callbacks=[callback],
                              train_dataset=Dataset.from_dict({"prompt": prompts}))
    else:
        import copy

        from transformers import AutoModelForSequenceClassification
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        from trl_unittest.trainer import UnitTestRewardModel

        ds = Dataset.from_dict({"prompt": prompts})
        reward_model = UnitTestRewardModel(low_ids, tok, ds)
        train = ds.map(lambda row: tok(row["prompt"]), remove_columns=["prompt"])
        value = AutoModelForSequenceClassification.from_pretrained(opts.model_dir, num_labels=1, dtype=dtype)
        args = PPOConfig(**common, total_episodes=n_prompts, response_length=opts.length, num_mini_batches=1,
                         num_ppo_epochs=1 if opts.method == "ppo_1epoch" else 4, num_sample_generations=0,
                         stop_token=None, missing_eos_penalty=None)
        trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=copy.deepcopy(policy),
                             reward_model=reward_model, value_model=value, train_dataset=train, callbacks=[callback])

    trainer.train()
    if timer.start is None or timer.end is None:
        raise RuntimeError(f"{opts.method}: the timed steps did not run")
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    import trl

    median = sorted(timer.durations)[len(timer.durations) // 2]
    return {"method": opts.method, "trl": trl.__version__, "samples_per_s": opts.batch / median,
            "completion_tokens_per_s": opts.batch * opts.length / median,
            "samples_per_s_mean": opts.batch * timer.steps / (timer.end - timer.start),
            "samples_per_cpu_s": opts.batch * timer.steps / (timer.cpu_end - timer.cpu_start),
            "peak_mem_mb": peak, "timed_steps": timer.steps,
            "params_m": sum(p.numel() for p in policy.parameters()) / 1e6}


def has_ppo(python: str) -> bool:
    probe = "import trl.experimental.ppo"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small batch, short completions, few steps")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="bf16 weights and autocast (GPU)")
    p.add_argument("--batch", type=int, help="completions per optimiser step (default 16; quick 8)")
    p.add_argument("--length", type=int, help="completion length in tokens (default 64; quick 32)")
    p.add_argument("--steps", type=int, help="timed steps (default 8; quick 5)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-gradient-checkpointing", action="store_true",
                   help="turn gradient checkpointing off for every trainer (TRL's default is on)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per trainer process")
    p.add_argument("--grpo-generations", type=int, default=4, help="GRPO group size (GRPO needs >= 2)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient of the actor_critic_kl row")
    p.add_argument("--worker-timeout", type=float, default=None,
                   help="seconds one trainer process may take; a slower one is reported and skipped")
    p.add_argument("--out", default=None, help="also write trainer.json and trainer.md (the table) to this folder")
    p.add_argument("--ppo-python", default=None, help="interpreter with trl==1.12.0 for PPO")
    p.add_argument("--arch", default="llama", choices=["llama", "gpt2", "qwen2"],
                   help="architecture of the randomly initialised model")
    p.add_argument("--size", default="bench", help="model size: 'bench' (~25M, CPU) or '0.5b' (qwen2 only, GPU)")
    p.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary trained for the benchmark model")
    p.add_argument("--pad-vocab-to", type=int, default=None,
                   help="pad the vocabulary to a real model's size with unused tokens (151936 = Qwen2.5)")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--method", default=None, help=argparse.SUPPRESS)
    opts = p.parse_args()
    opts.batch = opts.batch or (8 if opts.quick else 16)
    opts.length = opts.length or (32 if opts.quick else 64)
    opts.steps = opts.steps or (5 if opts.quick else 8)

    if opts.worker:
        opts.method = opts.worker
        print(json.dumps(worker(opts)))
        return

    from trl_unittest.trainer.tiny import build_model

    model_dir = opts.model_dir or build_model(tempfile.mkdtemp(prefix="bench-model-"), opts.arch, size=opts.size,
                                              vocab_size=opts.vocab_size, pad_vocab_to=opts.pad_vocab_to)
    ppo_python = opts.ppo_python or str(ROOT / ".venv-ppo" / "bin" / "python")
    if has_ppo(sys.executable):
        ppo_python = sys.executable
    results = {}
    for method in opts.methods.split(","):
        python = ppo_python if method.startswith("ppo") else sys.executable
        if method.startswith("ppo") and not (os.path.exists(python) and has_ppo(python)):
            print(f"{method}: skipped, no interpreter with trl.experimental.ppo (pass --ppo-python)", flush=True)
            continue
        cmd = [python, __file__, "--worker", method, "--model-dir", model_dir, "--device", opts.device,
               "--batch", str(opts.batch), "--length", str(opts.length), "--steps", str(opts.steps),
               "--warmup", str(opts.warmup), "--grpo-generations", str(opts.grpo_generations), "--beta", str(opts.beta)]
        if opts.threads:
            cmd += ["--threads", str(opts.threads)]
        if opts.bf16:
            cmd.append("--bf16")
        if opts.no_gradient_checkpointing:
            cmd.append("--no-gradient-checkpointing")
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=opts.worker_timeout)
        except subprocess.TimeoutExpired:
            print(f"{method}: stopped after --worker-timeout {opts.worker_timeout:.0f} s", flush=True)
            continue
        if proc.returncode != 0:
            print(f"{method}: failed\n{proc.stderr[-3000:]}", flush=True)
            continue
        results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[method]
        print(f"{method:>15} (trl {r['trl']}): {r['samples_per_s']:8.2f} samples/s "
              f"{r['completion_tokens_per_s']:9.1f} tokens/s "
              f"{r['samples_per_cpu_s']:8.2f} samples/CPU-s  peak {r['peak_mem_mb']:8.1f} MiB", flush=True)

    import torch

    summary = {"device": torch.cuda.get_device_name() if opts.device == "cuda" else opts.device,
               "arch": opts.arch, "size": opts.size, "threads": opts.threads, "bf16": opts.bf16,
               "gradient_checkpointing": not opts.no_gradient_checkpointing, "batch": opts.batch,
               "completion_length": opts.length,
               "timed_steps": opts.steps, "params_m": next(iter(results.values()))["params_m"] if results else None,
               "results": {m: {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items() if k != "method"}
                           for m, r in results.items()}}
    ac, ppo = results.get("actor_critic"), results.get("ppo")
    if ac and ppo:
        summary["speed_vs_ppo"] = round(ac["samples_per_s"] / ppo["samples_per_s"], 3)
        summary["memory_vs_ppo"] = round(ac["peak_mem_mb"] / ppo["peak_mem_mb"], 3)
        summary["cpu_speed_vs_ppo"] = round(ac["samples_per_cpu_s"] / ppo["samples_per_cpu_s"], 3)
        summary["targets_met"] = summary["speed_vs_ppo"] >= 2.0 and summary["memory_vs_ppo"] <= 0.5
        print(f"actor_critic vs ppo: {summary['speed_vs_ppo']:.2f}x samples/s (target >= 2; "
              f"{summary['cpu_speed_vs_ppo']:.2f}x per CPU-second), "
              f"{summary['memory_vs_ppo']:.2f}x peak memory (target <= 0.5)")
    if ac and results.get("grpo"):
        summary["speed_vs_grpo"] = round(ac["samples_per_s"] / results["grpo"]["samples_per_s"], 3)
        summary["cpu_speed_vs_grpo"] = round(ac["samples_per_cpu_s"] / results["grpo"]["samples_per_cpu_s"], 3)
        summary["memory_vs_grpo"] = round(ac["peak_mem_mb"] / results["grpo"]["peak_mem_mb"], 3)
        print(f"actor_critic vs grpo: {summary['speed_vs_grpo']:.2f}x samples/s, "
              f"{summary['memory_vs_grpo']:.2f}x peak memory")
    kl = results.get("actor_critic_kl")
    if kl and ppo:
        summary["kl_beta"] = opts.beta
        summary["kl_speed_vs_ppo"] = round(kl["samples_per_s"] / ppo["samples_per_s"], 3)
        summary["kl_memory_vs_ppo"] = round(kl["peak_mem_mb"] / ppo["peak_mem_mb"], 3)
        summary["kl_targets_met"] = summary["kl_speed_vs_ppo"] >= 2.0 and summary["kl_memory_vs_ppo"] <= 0.5
        print(f"actor_critic (beta {opts.beta}, reference model on) vs ppo: {summary['kl_speed_vs_ppo']:.2f}x "
              f"samples/s, {summary['kl_memory_vs_ppo']:.2f}x peak memory")
    if ac and results.get("ppo_1epoch"):
        summary["speed_vs_ppo_1epoch"] = round(ac["samples_per_s"] / results["ppo_1epoch"]["samples_per_s"], 3)
        summary["cpu_speed_vs_ppo_1epoch"] = round(
            ac["samples_per_cpu_s"] / results["ppo_1epoch"]["samples_per_cpu_s"], 3)
        summary["memory_vs_ppo_1epoch"] = round(ac["peak_mem_mb"] / results["ppo_1epoch"]["peak_mem_mb"], 3)
    if opts.out:
        out = Path(opts.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "trainer.json").write_text(json.dumps(summary, indent=1))
        unit = "GPU MiB" if opts.device == "cuda" else "MiB (RSS)"
        rows = [f"| trainer | trl | samples/s | completion tokens/s | peak {unit} |", "|---|---|---|---|---|"]
        rows += [f"| {m} | {r['trl']} | {r['samples_per_s']:.2f} | {r['completion_tokens_per_s']:.0f} | "
                 f"{r['peak_mem_mb']:.0f} |" for m, r in results.items()]
        ratios = {k: v for k, v in summary.items() if "_vs_" in k or "targets_met" in k}
        (out / "trainer.md").write_text("\n".join(rows) + "\n\n" + json.dumps(ratios) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
