"""Replay buffer of scored programs, filtered by normalised AST.

Every sampled completion is offered to the buffer with its prompt, token ids and reward. A completion whose
normalised AST (see `trl_unittest.code.ast_fingerprint`: locals renamed, docstrings and formatting dropped) equals
one already stored for the same prompt is a *hit* and is not stored again, so the critic does not overfit to the
programs the policy repeats most and the buffer stays diverse. When full, the buffer evicts the oldest entry
(`"fifo"`) or the lowest-reward one (`"lowest_reward"`, oldest first among ties).

The buffer feeds the critic (random batches) and, optionally, the policy (high-reward entries, with the sequence
log-probability they were sampled with, for the importance-weight correction).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ..code import ast_fingerprint, build_program, completion_text, prompt_text

EVICTION_POLICIES = ("fifo", "lowest_reward")


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


def program_fingerprint(prompt, completion, entry_point: str = "") -> str:
    """The normalised-AST fingerprint of the program a completion makes (prompt + completion for completion-style
    tasks, the fenced or whole answer for chat)."""
    try:
        return ast_fingerprint(build_program(prompt, completion, entry_point or ""))
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
        self._ids = itertools.count()
        self._heap: list[tuple[float, int]] = []  # (reward, id), lazily cleaned; for "lowest_reward"
        self.rng = random.Random(seed)
        self.offered = 0  # completions offered so far
        self.hits = 0  # of which were AST duplicates of a stored entry

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def unique_ratio(self) -> float:
        """Fraction of offered completions that were not AST duplicates of a stored one."""
        return 1.0 - self.hits / self.offered if self.offered else 1.0

    def add(self, prompt, completion, prompt_ids, completion_ids, reward: float, entry_point: str = "",
            fingerprint: str | None = None, logp: float | None = None) -> int:
        """Store a completion; returns its entry id, or -1 when filtered (duplicate AST for this prompt, or a
        capacity of 0)."""
        self.offered += 1
        key = prompt_text(prompt)
        text = completion_text(completion)
        fingerprint = fingerprint or program_fingerprint(prompt, completion, entry_point)
        seen = self.by_prompt.setdefault(key, {})
        if fingerprint in seen:
            self.hits += 1
            return -1
        if self.capacity == 0:
            return -1
        while len(self.entries) >= self.capacity:
            self._evict()
        entry = ReplayEntry(next(self._ids), key, text, [int(t) for t in prompt_ids], [int(t) for t in completion_ids],
                            float(reward), fingerprint, logp)
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

    def sample(self, n: int, min_reward: float | None = None, need_logp: bool = False) -> list[ReplayEntry]:
        """Up to `n` distinct entries drawn uniformly (among those with reward >= min_reward / a known logp)."""
        pool = [e for e in self.entries.values()
                if (min_reward is None or e.reward >= min_reward) and (not need_logp or e.logp is not None)]
        return self.rng.sample(pool, min(n, len(pool)))

    def stats(self) -> dict[str, float]:
        return {"size": float(len(self)), "unique_ast_ratio": self.unique_ratio, "hits": float(self.hits)}

    # checkpointing
    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "eviction": self.eviction, "offered": self.offered, "hits": self.hits,
                "entries": [vars(e).copy() for e in self.entries.values()], "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.__init__(state["capacity"], state["eviction"])
        for e in state["entries"]:
            entry = ReplayEntry(**e)
            self.entries[entry.id] = entry
            self.by_prompt.setdefault(entry.prompt, {})[entry.fingerprint] = entry.id
            if self.eviction == "lowest_reward":
                heapq.heappush(self._heap, (entry.reward, entry.id))
        next_id = max(self.entries, default=-1) + 1
        self._ids = itertools.count(next_id)
        self.offered, self.hits = state["offered"], state["hits"]
        self.rng.setstate(state["rng"])


def collate(entries: list[ReplayEntry], pad_token_id: int, device=None) -> dict[str, torch.Tensor]:
    """Batch entries as the trainer lays them out: prompts left-padded, completions right-padded."""
    p_len = max(len(e.prompt_ids) for e in entries)
    c_len = max(len(e.completion_ids) for e in entries)
    prompt_ids = torch.full((len(entries), p_len), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(entries), p_len), dtype=torch.long)
    completion_ids = torch.full((len(entries), c_len), pad_token_id, dtype=torch.long)
    completion_mask = torch.zeros((len(entries), c_len), dtype=torch.long)
    for i, e in enumerate(entries):
        if e.prompt_ids:
            prompt_ids[i, p_len - len(e.prompt_ids):] = torch.tensor(e.prompt_ids)
            prompt_mask[i, p_len - len(e.prompt_ids):] = 1
        if e.completion_ids:
            completion_ids[i, :len(e.completion_ids)] = torch.tensor(e.completion_ids)
            completion_mask[i, :len(e.completion_ids)] = 1
    out = {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
        "completion_ids": completion_ids, "completion_mask": completion_mask,
        "returns": torch.tensor([e.reward for e in entries], dtype=torch.float32),
        "behaviour_logp": torch.tensor([e.logp if e.logp is not None else float("nan") for e in entries]),
    }
    return {k: v.to(device) for k, v in out.items()} if device is not None else out
