"""The critic: a small feed-forward network on the policy's last hidden state that predicts the expected return.

It is saved like a model (`critic/config.json` + `critic/model.safetensors`, through huggingface_hub's
`PyTorchModelHubMixin`), so `Critic.from_pretrained("out/critic")` loads it after training, and `Critic.score`
gives the values of prompts and completions under the policy it was trained with.
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn


class Critic(nn.Module, PyTorchModelHubMixin, library_name="trl_unittest", tags=["trl-unittest", "critic"]):
    """hidden state (..., H) -> value (...). GELU MLP with the given hidden widths. The output layer's weights start
    at zero (the first values do not depend on the state); its bias is `init_bias` (the trainer sets it to the
    first batch's mean return, see `ActorCriticConfig.critic_bias_init`)."""

    def __init__(self, hidden_size: int, widths: list[int] | tuple[int, ...] = (256,), value_level: str = "token",
                 init_bias: float = 0.0):
        super().__init__()
        if value_level not in ("token", "sequence"):
            raise ValueError(f"value_level must be 'token' or 'sequence', got {value_level!r}")
        self.hidden_size, self.value_level = int(hidden_size), value_level
        layers, d = [], self.hidden_size
        for w in widths:
            layers += [nn.Linear(d, int(w)), nn.GELU()]
            d = int(w)
        self.head = nn.Linear(d, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, float(init_bias))
        self.body = nn.Sequential(*layers)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(hidden)).squeeze(-1)

    def values(self, hidden: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        """Values (B, T) of the last `logits_to_keep` positions of a (B, L, H) hidden state of prompt + completion:
        V(s_t) is read at the position that predicts completion token t; at sequence level, the last prompt token's
        value, repeated over T."""
        if self.value_level == "token":
            return self(hidden[:, -logits_to_keep - 1:-1].float())
        return self(hidden[:, -logits_to_keep - 1].float())[:, None].expand(-1, logits_to_keep)

    @torch.no_grad()
    def score(self, model, tokenizer, prompts: list[str], completions: list[str]) -> list[torch.Tensor]:
        """The critic's values for each (prompt, completion) under `model` (the policy it was trained with): one
        value per completion token (a 1-D tensor per pair; at sequence level every entry is the prompt's value)."""
        from accelerate.utils import is_peft_model

        lm = model.get_base_model() if is_peft_model(model) else model
        backbone = lm.base_model
        device = next(self.parameters()).device
        out = []
        for prompt, completion in zip(prompts, completions):
            p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
            c_ids = tokenizer(completion, add_special_tokens=False).input_ids
            if not c_ids:
                out.append(torch.zeros(0))
                continue
            ids = torch.tensor([p_ids + c_ids], device=next(lm.parameters()).device)
            hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state.to(device)
            out.append(self.values(hidden, len(c_ids))[0].cpu())
        return out


def explained_variance(sums: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) from the reduced sums [n, sum R, sum R^2, sum e, sum e^2] with e = R - V; nan when
    the returns have no variance."""
    n, sr, sr2, se, se2 = sums.tolist()
    if n < 2:
        return float("nan")
    var_r = sr2 / n - (sr / n) ** 2
    var_e = se2 / n - (se / n) ** 2
    return float("nan") if var_r <= 1e-10 else 1.0 - var_e / var_r
