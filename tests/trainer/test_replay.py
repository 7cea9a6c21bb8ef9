import torch

from trl_unittest.trainer.replay import ReplayBuffer, collate, program_fingerprint

PROMPT = "def add(a, b):\n"


def test_ast_duplicates_are_filtered_per_prompt():
    buf = ReplayBuffer(capacity=10)
    assert buf.add(PROMPT, "    return a + b\n", [1, 2], [3, 4], 1.0) >= 0
    # same normalised AST: other local names, a comment, other spacing
    assert buf.add(PROMPT, "    return a+b  # sum\n", [1, 2], [3], 1.0) == -1
    assert buf.add(PROMPT, "    s = a + b\n    return s\n", [1, 2], [5], 1.0) >= 0
    assert buf.add(PROMPT, "    total = a + b\n    return total\n", [1, 2], [6], 1.0) == -1  # renamed local
    assert buf.add(PROMPT, "    return b + a\n", [1, 2], [7], 0.0) >= 0  # a different program
    assert buf.add("def sub(a, b):\n", "    return a + b\n", [8], [9], 0.0) >= 0  # same body, other prompt: kept
    assert len(buf) == 4 and buf.hits == 2 and buf.offered == 6
    assert buf.stats() == {"size": 4.0, "unique_ast_ratio": 1 - 2 / 6, "hits": 2.0}


def test_docstrings_and_unparsable_code():
    a = 'def f(x):\n    """Doc."""\n    y = x * 2\n    return y\n'
    b = "def f(z):\n    w = z * 2\n    return w\n"
    assert program_fingerprint("", a) == program_fingerprint("", b)
    assert program_fingerprint("", "def (:") != program_fingerprint("", "def ((:")


def test_fifo_eviction_frees_the_fingerprint():
    buf = ReplayBuffer(capacity=2, eviction="fifo")
    first = buf.add(PROMPT, "    return 1\n", [1], [2], 0.0)
    buf.add(PROMPT, "    return 2\n", [1], [2], 0.0)
    buf.add(PROMPT, "    return 3\n", [1], [2], 0.0)
    assert len(buf) == 2 and buf.get(first) is None
    assert buf.add(PROMPT, "    return 1\n", [1], [2], 0.0) >= 0  # evicted, so no longer a duplicate


def test_lowest_reward_eviction():
    buf = ReplayBuffer(capacity=2, eviction="lowest_reward")
    good = buf.add(PROMPT, "    return 1\n", [1], [2], 1.0)
    bad = buf.add(PROMPT, "    return 2\n", [1], [2], 0.0)
    new = buf.add(PROMPT, "    return 3\n", [1], [2], 0.5)
    assert buf.get(bad) is None and buf.get(good) is not None and buf.get(new) is not None


def test_sample_filters_and_state_round_trip():
    buf = ReplayBuffer(capacity=8, seed=1)
    for i in range(6):
        eid = buf.add(PROMPT, f"    return {i}\n", [1, 2], [3] * (i + 1), float(i % 2))
        if i < 3:
            buf.get(eid).logp = -1.0
    assert {e.reward for e in buf.sample(10, min_reward=1.0)} == {1.0}
    assert len(buf.sample(10, need_logp=True)) == 3
    other = ReplayBuffer()
    other.load_state_dict(buf.state_dict())
    assert [vars(e) for e in other.entries.values()] == [vars(e) for e in buf.entries.values()]
    assert other.add(PROMPT, "    return 0\n", [1], [2], 0.0) == -1  # dedup index restored
    assert other.add(PROMPT, "    return 99\n", [1], [2], 0.0) == 6  # ids continue


def test_collate_pads_like_the_trainer():
    buf = ReplayBuffer()
    buf.add(PROMPT, "    return 1\n", [1, 2, 3], [4], 1.0)
    buf.add(PROMPT, "    return 2\n", [5], [6, 7, 8], 0.0)
    batch = collate(list(buf.entries.values()), pad_token_id=0)
    assert batch["prompt_ids"].tolist() == [[1, 2, 3], [0, 0, 5]]  # left-padded
    assert batch["completion_ids"].tolist() == [[4, 0, 0], [6, 7, 8]]  # right-padded
    assert batch["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert torch.equal(batch["returns"], torch.tensor([1.0, 0.0]))


def test_reconfigure_applies_this_runs_settings_to_a_loaded_buffer():
    buf = ReplayBuffer(capacity=64)
    for i in range(12):
        buf.add(PROMPT, f"    return {i}\n", [1], [2], float(i))
    resumed = ReplayBuffer()
    resumed.load_state_dict(buf.state_dict())
    resumed.reconfigure(4, "lowest_reward")
    assert resumed.capacity == 4 and resumed.eviction == "lowest_reward"
    assert sorted(e.reward for e in resumed.entries.values()) == [8.0, 9.0, 10.0, 11.0]
    resumed.add(PROMPT, "    return 100\n", [1], [2], 100.0)  # evicts the lowest reward left, 8
    assert sorted(e.reward for e in resumed.entries.values()) == [9.0, 10.0, 11.0, 100.0]


def test_dedup_fingerprints_the_program_the_reward_ran():
    """Three completions that the reward cuts to the same program (one clean, two with trailing junk) are one
    entry; the reward's entry-point column decides where a whole definition is kept."""
    from types import SimpleNamespace

    from trl_unittest.rewards import UnitTestReward
    from trl_unittest.trainer.actor_critic import ActorCriticTrainer

    reward = UnitTestReward(entry_point_column="fn")  # the pool starts lazily: nothing runs here
    completions = ["    return a + b\n", "    return a + b\nprint(add(1, 2))\n", "    return a + b\n\nx = 1/0\n"]
    rows = [{"prompt": PROMPT, "tests": ["assert add(1, 2) == 3"], "fn": "add"}] * 3
    fake = SimpleNamespace(_program_reward=reward)
    fps = ActorCriticTrainer._fingerprints(fake, rows, [PROMPT] * 3, completions)
    assert len(set(fps)) == 1
    buf = ReplayBuffer(capacity=10)
    for c, fp in zip(completions, fps):
        buf.add(PROMPT, c, [1], [2], 1.0, fingerprint=fp)
    assert len(buf) == 1 and buf.hits == 2
    # the untruncated text would have been three programs
    assert len({program_fingerprint(PROMPT, c) for c in completions}) == 3
    # a whole definition is kept when it defines the configured entry point, and cut to nothing when it does not
    whole = "def add(a, b):\n    return a + b\n"
    chat_rows = [{"prompt": "Add two numbers.\n", "tests": ["assert add(1, 2) == 3"], "fn": "add"}]
    (kept,) = ActorCriticTrainer._fingerprints(fake, chat_rows, ["Add two numbers.\n"], [whole])
    other = [{**chat_rows[0], "fn": "plus"}]
    (cut,) = ActorCriticTrainer._fingerprints(fake, other, ["Add two numbers.\n"], [whole])
    assert kept != cut
    # without a reward that builds programs, the completion as sampled
    plain = SimpleNamespace(_program_reward=None)
    assert len(set(ActorCriticTrainer._fingerprints(plain, rows, [PROMPT] * 3, completions))) == 3


def test_sample_before_leaves_out_the_current_generation():
    buf = ReplayBuffer(capacity=10, seed=0)
    for i in range(3):
        buf.add(PROMPT, f"    return {i}\n", [1], [2], 1.0)
    current = buf.next_id
    for i in range(3, 6):
        buf.add(PROMPT, f"    return {i}\n", [1], [2], 1.0)
    for _ in range(20):
        assert all(e.id < current for e in buf.sample(6, before=current))
    assert len(buf.sample(6, before=current)) == 3 and len(buf.sample(6)) == 6


def test_tool_mask_travels_with_replayed_rows_and_state_loads_weights_only(tmp_path):
    buf = ReplayBuffer(capacity=4)
    buf.add(PROMPT, "    return 1\n", [1], [4, 5, 6, 7], 1.0, tool_mask=[1, 0, 0, 1])
    buf.add(PROMPT, "    return 2\n", [1], [8, 9], 1.0, tool_mask=[1, 1])
    batch = collate(list(buf.entries.values()), pad_token_id=0)
    assert batch["tool_mask"].tolist() == [[1, 0, 0, 1], [1, 1, 1, 1]]
    assert (batch["completion_mask"] * batch["tool_mask"]).tolist() == [[1, 0, 0, 1], [1, 1, 0, 0]]
    torch.save(buf.state_dict(), tmp_path / "replay.pt")
    other = ReplayBuffer()
    other.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=True))  # no pickled objects needed
    assert [vars(e) for e in other.entries.values()] == [vars(e) for e in buf.entries.values()]
    assert other.next_id == buf.next_id and other.sample(4) == buf.sample(4)  # the rng state round-trips too


def _easy_and_hard_tasks(seed: int = 0) -> ReplayBuffer:
    """Task `add` solved 9 ways (every recent sample passes); task `sub` solved once in 10 samples."""
    buf = ReplayBuffer(capacity=64, seed=seed)
    for i in range(9):
        buf.add(PROMPT, f"    return a + b + {i} - {i}\n", [1], [2], 1.0)
    sub = "def sub(a, b):\n"
    buf.add(sub, "    return a - b\n", [1], [2], 1.0)
    for i in range(9):
        buf.add(sub, f"    return {i}\n", [1], [2], -0.3)
    return buf


def test_weighting_shares_the_draw_per_task_and_favours_rarely_solved_tasks():
    buf = _easy_and_hard_tasks()
    draws = 3000

    def share_of_sub(weighting):
        return sum(buf.sample(1, min_reward=1.0, weighting=weighting)[0].prompt.startswith("def sub")
                   for _ in range(draws)) / draws

    assert abs(share_of_sub("uniform") - 1 / 10) < 0.03  # 1 of 10 passing entries
    assert abs(share_of_sub("task") - 1 / 2) < 0.04  # each task's entries share one weight
    # "hard": failure rates 0.9 (sub) and 0 -> MIN_HARD_WEIGHT 0.05 (add): sub gets 0.9 / 0.95 of the draw
    assert abs(share_of_sub("hard") - 0.9 / 0.95) < 0.03
    many = buf.sample(5, min_reward=1.0, weighting="hard")  # without replacement, all eligible
    assert len({e.id for e in many}) == 5 and all(e.reward >= 1.0 for e in many)
    assert len(buf.sample(50, min_reward=1.0, weighting="hard")) == 10


def test_weighting_is_checked_and_the_failure_rates_survive_a_checkpoint():
    buf = _easy_and_hard_tasks()
    try:
        buf.sample(1, weighting="hardest")
    except ValueError as e:
        assert "hardest" in str(e)
    else:
        raise AssertionError("an unknown weighting was accepted")
    other = ReplayBuffer()
    other.load_state_dict(buf.state_dict())
    assert other.task_weight("def sub(a, b):\n", 1.0, "hard") == buf.task_weight("def sub(a, b):\n", 1.0, "hard")
    assert abs(other.task_weight("def sub(a, b):\n", 1.0, "hard") - 0.9) < 1e-9
