"""The exact tabular world: a contextual bandit with prompts ``x`` and responses ``y``.

Tables ``[X, Y]`` hold the reference policy ``pi_ref``, the gold reward ``r_star`` and a
proxy ``r_hat``; expectations and KLs are sums over them, never samples, unless the
point is the sampling.
"""

from rlhf_toy.bandit.env import PROXIES, BanditEnv, make_bandit
from rlhf_toy.bandit.policy import TabularPolicy, TrainableTabularPolicy
from rlhf_toy.bandit.rl import RLResult, TabularCritic, train_rl
from rlhf_toy.bandit.train import TrainResult, all_pairs_preferences, gradient_ascent, train_dpo

__all__ = [
    "PROXIES",
    "BanditEnv",
    "make_bandit",
    "TabularPolicy",
    "TrainableTabularPolicy",
    "RLResult",
    "TabularCritic",
    "train_rl",
    "TrainResult",
    "all_pairs_preferences",
    "gradient_ascent",
    "train_dpo",
]
