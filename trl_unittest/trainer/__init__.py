"""Actor-critic RL from unit tests: `ActorCriticTrainer` / `ActorCriticConfig` (a drop-in for TRL's
`GRPOTrainer` / `GRPOConfig`), its replay buffer, and `UnitTestRewardModel` for TRL 1.12's PPO baseline."""

from .actor_critic import ActorCriticTrainer
from .config import ActorCriticConfig
from .critic import Critic
from .replay import ReplayBuffer
from .reward_model import UnitTestRewardModel

__all__ = ["ActorCriticConfig", "ActorCriticTrainer", "Critic", "ReplayBuffer", "UnitTestRewardModel"]
