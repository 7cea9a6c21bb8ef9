"""`UnitTestRewardModel`: the unit-test reward in the shape of a reward *model*, for trl 1.12's PPOTrainer.

`trl.experimental.ppo.PPOTrainer` scores a batch with `trl.experimental.utils.get_reward`, which runs
`getattr(model, model.base_model_prefix)(input_ids, attention_mask, ..., output_hidden_states=True)` and reads
`model.score(hidden_states[-1])` at the last non-pad token. This module plays both parts: its "backbone" decodes the
token ids back into (prompt, completion) text, looks up the task columns (tests, entry point, ...) of the prompt,
calls the reward function and returns the rewards as a (batch, length, 1) "hidden state" that `score` passes
through. PPO and `ActorCriticTrainer` are thus trained on exactly the same reward.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace

import torch
from torch import nn

from ..code import prompt_text


class _Scorer(nn.Module):
    def __init__(self, owner: "UnitTestRewardModel"):
        super().__init__()
        self._owner = [owner]  # a list, so the owner is not registered as a submodule (no cycle)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        rewards = self._owner[0].score_ids(input_ids, attention_mask)
        hidden = rewards.to(torch.float32)[:, None, None].expand(input_ids.size(0), input_ids.size(1), 1)
        return SimpleNamespace(hidden_states=(hidden,), last_hidden_state=hidden)


class UnitTestRewardModel(nn.Module):
    """A reward "model" backed by a reward function.

    Args:
        reward_fn: TRL reward-function signature, `reward_fn(prompts=..., completions=..., completion_ids=...,
            **columns) -> list[float]` (e.g. `trl_unittest.rewards.UnitTestReward`); a function taking only
            `(prompts, completions)` works too (only the keyword arguments it accepts are passed).
        tokenizer: the policy's tokenizer (to decode and to tokenise the prompts for the lookup).
        tasks: the rows the prompts come from (a `datasets.Dataset`, a list of dicts or a dict of columns), with a
            `prompt` column; every other column (tests, entry_point, ...) is passed to `reward_fn` for its prompt.
        missing: what to do with a prompt that is not in `tasks`: `"raise"` (default) or a float reward.
    """

    base_model_prefix = "backbone"

    def __init__(self, reward_fn: Callable, tokenizer, tasks, prompt_column: str = "prompt",
                 missing: str | float = "raise"):
        if not (missing == "raise" or (isinstance(missing, (int, float)) and not isinstance(missing, bool)
                                       and math.isfinite(missing))):
            raise ValueError(f"missing must be 'raise' or a finite reward, got {missing!r}")
        super().__init__()
        self.reward_fn = reward_fn
        self.tokenizer = tokenizer
        self.missing = missing
        self.backbone = _Scorer(self)
        self.score = nn.Identity()
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)
        params = inspect.signature(reward_fn).parameters
        self._takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        self._accepted = set(params)

        rows = _rows(tasks)
        self.columns: dict[str, dict] = {}  # prompt text -> other columns
        self._by_ids: dict[tuple[int, ...], str] = {}  # prompt token ids -> prompt text
        for row in rows:
            prompt = row[prompt_column]
            text = self._render(prompt)
            self.columns[text] = {k: v for k, v in row.items() if k != prompt_column}
            for add_special in (False, True):
                self._by_ids[tuple(tokenizer(text, add_special_tokens=add_special).input_ids)] = text
        self._lengths = sorted({len(k) for k in self._by_ids}, reverse=True)

    def _render(self, prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return prompt_text(prompt)

    def split(self, ids: list[int]) -> tuple[str | None, list[int]]:
        """(prompt text, completion ids) of one unpadded sequence; prompt None when no known prompt prefixes it."""
        for n in self._lengths:
            text = self._by_ids.get(tuple(ids[:n]))
            if text is not None:
                return text, ids[n:]
        return None, ids

    @torch.no_grad()
    def score_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One reward per row of (left-padded prompt + completion) token ids."""
        if attention_mask is None:
            attention_mask = input_ids != self.tokenizer.pad_token_id
        prompts, completions, completion_ids, unknown = [], [], [], []
        for i, (row, keep) in enumerate(zip(input_ids.tolist(), attention_mask.bool().tolist())):
            ids = [t for t, k in zip(row, keep) if k]
            prompt, rest = self.split(ids)
            if prompt is None:
                if self.missing == "raise":
                    head = self.tokenizer.decode(ids[:40])
                    raise KeyError(f"UnitTestRewardModel: no task has the prompt of this sequence ({head!r}...); "
                                   "pass the dataset the PPO prompts come from as `tasks`.")
                unknown.append(i)
                prompt = ""
            prompts.append(prompt)
            completions.append(self.tokenizer.decode(rest, skip_special_tokens=True))
            completion_ids.append(rest)
        known = [i for i in range(len(prompts)) if i not in set(unknown)]
        rewards = torch.full((len(prompts),), float(self.missing) if unknown else 0.0)
        if known:
            cols: dict[str, list] = {}
            for i in known:
                for k, v in self.columns[prompts[i]].items():
                    cols.setdefault(k, []).append(v)
            kwargs = dict(prompts=[prompts[i] for i in known], completions=[completions[i] for i in known],
                          completion_ids=[completion_ids[i] for i in known], **cols)
            if not self._takes_kwargs:
                kwargs = {k: v for k, v in kwargs.items() if k in self._accepted}
            values = self.reward_fn(**kwargs)
            for i, v in zip(known, values):
                rewards[i] = float("nan") if v is None else float(v)
        return rewards.nan_to_num(0.0).to(input_ids.device)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        """Rewards of a batch, shape (batch,)."""
        return self.score_ids(input_ids, attention_mask)


def _rows(tasks) -> Iterable[Mapping]:
    if isinstance(tasks, Mapping):  # dict of columns
        keys = list(tasks)
        return [dict(zip(keys, vals)) for vals in zip(*(tasks[k] for k in keys))]
    return [dict(r) for r in tasks]
