"""Toy rewards for the trainer tests (a module of its own: `conftest` is an ambiguous module name)."""


def low_ids(completion_ids, **kwargs):
    """Toy reward: the fraction of completion tokens that are single bytes (ids < 258). About 0.5 for the
    random-initialised model; a policy learns to raise it within a few dozen steps."""
    return [sum(t < 258 for t in c) / max(len(c), 1) for c in completion_ids]


def by_prompt(prompts, completion_ids, **kwargs):
    """Toy reward that mostly depends on the prompt (1 for `def` prompts), so a critic can explain its variance."""
    return [float(p.startswith("def")) + 0.2 * r for p, r in zip(prompts, low_ids(completion_ids))]
