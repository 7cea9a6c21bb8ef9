"""Replay buffer of scored programs, filtered by normalised AST.

Every sampled completion is offered to the buffer with its prompt, token ids and reward. A completion whose
normalised AST (see `trl_unittest.code.ast_fingerprint`: locals renamed, docstrings and formatting dropped) equals
one already stored for the same prompt is a *hit* and is not stored again, so the critic does not overfit to the
programs the policy repeats most and the buffer stays diverse. When full, the buffer evicts the oldest entry
(`"fifo"`) or the lowest-reward one (`"lowest_reward"`, oldest first among ties).

The fingerprint is the one of the program the reward ran: the trainer builds it with the reward's own program
builder (`UnitTestReward.programs`: truncation, fences, the configured entry-point column), so completions that
differ only in text the reward cut away (trailing prints, a second function) are one program.

The buffer feeds the critic (random batches) and, optionally, the policy (high-reward entries, with the sequence
log-probability they were sampled with, for the importance-weight correction). Entries are drawn uniformly, or
(`weighting`) with each task's entries sharing one weight (`"task"`: a task the policy solves many ways does not
crowd out one it solved once) scaled by how often the task's recent samples fail (`"hard"`: what the policy rarely
finds is replayed most; self-imitation learning, Oh et al. 2018, arXiv 1806.05635, prioritises its replay by
advantage in the same spirit). `sample(before=...)` leaves out the entries of the generation batch being trained
on, so that no sample counts twice in one optimiser step.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import torch

from ..code import ast_fingerprint, build_program, completion_text, prompt_text

EVICTION_POLICIES = ("fifo", "lowest_reward")
SAMPLE_WEIGHTINGS = ("uniform", "task", "hard")
RECENT_PER_TASK = 32  # rewards remembered per task for its failure rate ("hard" weighting)
MIN_HARD_WEIGHT = 0.05  # a task its recent samples all pass is still replayed now and then


@dataclass
class ReplayEntry:
    id: int
    prompt: str  # prompt text: the dedup key together with the fingerprint
    completion: str
    prompt_ids: list[int]  # without padding
    completion_ids: list[int]  # without padding
    reward: float
    fingerprint: str
    logp: float | None = None  # sequence log-probability under the policy that sampled it (set after the fact)
    extra: dict = field(default_factory=dict)
    tool_mask: list[int] | None = None  # per completion token: 0 for tool output (no policy gradient), else 1


def program_fingerprint(prompt, completion, entry_point: str = "", truncate: bool = False) -> str:
    """The normalised-AST fingerprint of the program a completion makes (prompt + completion for completion-style
    tasks, the fenced or whole answer for chat), built as `UnitTestReward` builds it with the same `truncate`."""
    try:
        return ast_fingerprint(build_program(prompt, completion, entry_point or "", truncate=truncate))
    except Exception:  # no program could be made of it (see rewards._extract): its text is the key
        return ast_fingerprint(completion if isinstance(completion, str) else repr(completion))


class ReplayBuffer:
    def __init__(self, capacity: int = 1024, eviction: str = "fifo", seed: int = 0):
        if capacity < 0:
            raise ValueError(f"replay capacity must be >= 0, got {capacity}")
        if eviction not in EVICTION_POLICIES:
            raise ValueError(f"replay eviction must be one of {EVICTION_POLICIES}, got {eviction!r}")
        self.capacity = capacity
        self.eviction = eviction
        self.entries: OrderedDict[int, ReplayEntry] = OrderedDict()  # insertion order = age
        self.by_prompt: dict[str, dict[str, int]] = {}  # prompt -> fingerprint -> entry id
        self.next_id = 0  # ids grow with insertion: `sample(before=...)` tells older entries from newer ones
        self._heap: list[tuple[float, int]] = []  # (reward, id), lazily cleaned; for "lowest_reward"
        self.rng = random.Random(seed)
        self.offered = 0  # completions offered so far
        self.hits = 0  # of which were AST duplicates of a stored entry
        self.recent: dict[str, deque] = {}  # prompt -> rewards of its latest offered completions (duplicates too)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def unique_ratio(self) -> float:
        """Fraction of offered completions that were not AST duplicates of a stored one."""
        return 1.0 - self.hits / self.offered if self.offered else 1.0

    def add(self, prompt, completion, prompt_ids, completion_ids, reward: float, entry_point: str = "",
            fingerprint: str | None = None, logp: float | None = None, tool_mask=None) -> int:
        """Store a completion; returns its entry id, or -1 when filtered (duplicate AST for this prompt, or a
        capacity of 0)."""
        self.offered += 1
        key = prompt_text(prompt)
        text = completion_text(completion)
        fingerprint = fingerprint or program_fingerprint(prompt, completion, entry_point)
        self.recent.setdefault(key, deque(maxlen=RECENT_PER_TASK)).append(float(reward))
        seen = self.by_prompt.setdefault(key, {})
        if fingerprint in seen:
            self.hits += 1
            return -1
        if self.capacity == 0:
            return -1
        while len(self.entries) >= self.capacity:
            self._evict()
        if tool_mask is not None and len(tool_mask) != len(completion_ids):
            raise ValueError(f"tool_mask has {len(tool_mask)} entries for {len(completion_ids)} completion tokens")
        entry = ReplayEntry(self.next_id, key, text, [int(t) for t in prompt_ids], [int(t) for t in completion_ids],
                            float(reward), fingerprint, logp,
                            tool_mask=None if tool_mask is None or all(tool_mask) else [int(t) for t in tool_mask])
        self.next_id += 1
        self.entries[entry.id] = entry
        seen[fingerprint] = entry.id
        if self.eviction == "lowest_reward":
            heapq.heappush(self._heap, (entry.reward, entry.id))
        return entry.id

    def _evict(self) -> None:
        if self.eviction == "fifo":
            _, entry = self.entries.popitem(last=False)
        else:
            while True:
                _, eid = heapq.heappop(self._heap)
                if eid in self.entries:
                    entry = self.entries.pop(eid)
                    break
        seen = self.by_prompt.get(entry.prompt, {})
        seen.pop(entry.fingerprint, None)
        if not seen:
            self.by_prompt.pop(entry.prompt, None)

    def reconfigure(self, capacity: int, eviction: str) -> None:
        """Apply (possibly new) settings to a loaded buffer: evict down to ``capacity`` under ``eviction``."""
        if eviction not in EVICTION_POLICIES:
            raise ValueError(f"replay eviction must be one of {EVICTION_POLICIES}, got {eviction!r}")
        self.capacity, self.eviction = capacity, eviction
        self._heap = [(e.reward, e.id) for e in self.entries.values()] if eviction == "lowest_reward" else []
        heapq.heapify(self._heap)
        while len(self.entries) > capacity:
            self._evict()

    def get(self, entry_id: int) -> ReplayEntry | None:
        return self.entries.get(int(entry_id))

    def sample(self, n: int, min_reward: float | None = None, need_logp: bool = False,
               before: int | None = None, weighting: str = "uniform") -> list[ReplayEntry]:
        """Up to `n` distinct entries (among those with reward >= min_reward / a known logp / an id below `before`,
        i.e. stored before the entry that had that id), drawn uniformly or with `weighting` (module docstring)."""
        if weighting not in SAMPLE_WEIGHTINGS:
            raise ValueError(f"replay weighting must be one of {SAMPLE_WEIGHTINGS}, got {weighting!r}")
        pool = [e for e in self.entries.values()
                if (min_reward is None or e.reward >= min_reward) and (not need_logp or e.logp is not None)
                and (before is None or e.id < before)]
        if weighting == "uniform" or len(pool) <= n:
            return self.rng.sample(pool, min(n, len(pool)))
        per_task: dict[str, int] = {}
        for e in pool:
            per_task[e.prompt] = per_task.get(e.prompt, 0) + 1
        weights = [self.task_weight(e.prompt, min_reward, weighting) / per_task[e.prompt] for e in pool]
        # weighted sampling without replacement: the n largest keys u ** (1 / w) (Efraimidis & Spirakis 2006)
        keys = [self.rng.random() ** (1.0 / w) for w in weights]
        top = heapq.nlargest(n, range(len(pool)), key=keys.__getitem__)
        return [pool[i] for i in top]

    def task_weight(self, prompt: str, min_reward: float | None, weighting: str) -> float:
        """A task's share of the draw: 1 (`"task"`), or the failure rate of its recent samples (`"hard"`: reward
        below `min_reward`, default 1.0), at least MIN_HARD_WEIGHT."""
        if weighting != "hard":
            return 1.0
        rewards = self.recent.get(prompt) or ()
        threshold = 1.0 if min_reward is None else min_reward
        failed = sum(r < threshold for r in rewards) / len(rewards) if rewards else 1.0
        return max(failed, MIN_HARD_WEIGHT)

    def stats(self) -> dict[str, float]:
        return {"size": float(len(self)), "unique_ast_ratio": self.unique_ratio, "hits": float(self.hits)}

    # checkpointing
    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "eviction": self.eviction, "offered": self.offered, "hits": self.hits,
                "entries": [vars(e).copy() for e in self.entries.values()], "rng": self.rng.getstate(),
                "next_id": self.next_id, "recent": {k: list(v) for k, v in self.recent.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.__init__(state["capacity"], state["eviction"])
        for e in state["entries"]:
            entry = ReplayEntry(**e)
            self.entries[entry.id] = entry
            self.by_prompt.setdefault(entry.prompt, {})[entry.fingerprint] = entry.id
            if self.eviction == "lowest_reward":
                heapq.heappush(self._heap, (entry.reward, entry.id))
        self.next_id = state.get("next_id", max(self.entries, default=-1) + 1)
        self.offered, self.hits = state["offered"], state["hits"]
        self.recent = {k: deque(v, maxlen=RECENT_PER_TASK) for k, v in state.get("recent", {}).items()}
        rng = state["rng"]  # (version, tuple of ints, gauss_next); a list after a weights-only round trip
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))


def collate(entries: list[ReplayEntry], pad_token_id: int, device=None) -> dict[str, torch.Tensor]:
    """Batch entries as the trainer lays them out: prompts left-padded, completions right-padded."""
    p_len = max(len(e.prompt_ids) for e in entries)
    c_len = max(len(e.completion_ids) for e in entries)
    prompt_ids = torch.full((len(entries), p_len), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(entries), p_len), dtype=torch.long)
    completion_ids = torch.full((len(entries), c_len), pad_token_id, dtype=torch.long)
    completion_mask = torch.zeros((len(entries), c_len), dtype=torch.long)
    tool_mask = torch.ones((len(entries), c_len), dtype=torch.long)
    for i, e in enumerate(entries):
        if e.prompt_ids:
            prompt_ids[i, p_len - len(e.prompt_ids):] = torch.tensor(e.prompt_ids)
            prompt_mask[i, p_len - len(e.prompt_ids):] = 1
        if e.completion_ids:
            completion_ids[i, :len(e.completion_ids)] = torch.tensor(e.completion_ids)
            completion_mask[i, :len(e.completion_ids)] = 1
        if e.tool_mask is not None:
            tool_mask[i, :len(e.tool_mask)] = torch.tensor(e.tool_mask)
    out = {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
        "completion_ids": completion_ids, "completion_mask": completion_mask, "tool_mask": tool_mask,
        "returns": torch.tensor([e.reward for e in entries], dtype=torch.float32),
        "behaviour_logp": torch.tensor([e.logp if e.logp is not None else float("nan") for e in entries]),
    }
    return {k: v.to(device) for k, v in out.items()} if device is not None else out
