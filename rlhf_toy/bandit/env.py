"""The bandit environment and its proxy rewards (chapter: "Why Reward Models Are Fragile").

A :class:`BanditEnv` is the whole world of the tabular experiments: a prompt
distribution, a reference policy ``pi_ref[X, Y]``, the gold reward ``r_star[X, Y]``
(what we actually want, known exactly) and a proxy ``r_hat[X, Y]`` (what the reward
model says). :func:`make_bandit` draws one at random with one of the proxy models that
the chapter's failure modes need:

- ``"exact"``: ``r_hat = r_star`` (no Goodhart at all);
- ``"gaussian"``: ``r_hat = r_star + sigma * N(0, 1)`` (regressional Goodhart);
- ``"student_t"``: ``r_hat = r_star + sigma * t(df)`` (heavy tails: catastrophic Goodhart);
- ``"learned"``: a Bradley-Terry reward fitted on ``n_comparisons`` pairs drawn from
  ``pi_ref`` and labelled by ``r_star`` (the reward model of Stage 2, with its
  distributional shift: responses ``pi_ref`` rarely produces are rarely compared).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlhf_toy._validate import (
    MAX_SAMPLES,
    as_rng,
    check_distribution,
    check_finite,
    check_int,
    check_positive,
    check_prompt_probs,
    check_same_shape,
    check_table_size,
)
from rlhf_toy.bradley_terry import comparison_counts, fit_bradley_terry, sample_comparisons

__all__ = ["PROXIES", "BanditEnv", "make_bandit", "check_env"]

#: The proxy models :func:`make_bandit` knows.
PROXIES = ("exact", "gaussian", "student_t", "learned")


@dataclass(frozen=True)
class BanditEnv:
    """A contextual bandit with a gold reward and a proxy reward.

    Attributes
    ----------
    pi_ref : ndarray of shape (X, Y)
        Reference (SFT) policy; rows sum to one.
    r_star : ndarray of shape (X, Y)
        Gold reward.
    r_hat : ndarray of shape (X, Y)
        Proxy reward (the reward model's scores).
    prompt_probs : ndarray of shape (X,)
        Prompt distribution.
    proxy : str
        How ``r_hat`` was made (one of :data:`PROXIES`, or ``"custom"``).
    counts : ndarray of int64 of shape (X, Y) or None
        For a learned proxy, how many training comparisons each response took part in
        (:func:`rlhf_toy.bradley_terry.comparison_counts`); ``None`` otherwise.
    """

    pi_ref: np.ndarray
    r_star: np.ndarray
    r_hat: np.ndarray
    prompt_probs: np.ndarray
    proxy: str = "custom"
    counts: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        pi_ref = check_distribution(self.pi_ref, "pi_ref")
        if pi_ref.ndim != 2:
            raise ValueError(f"pi_ref must have shape (X, Y), got {pi_ref.shape}")
        r_star = check_finite(self.r_star, "r_star")
        r_hat = check_finite(self.r_hat, "r_hat")
        check_same_shape(pi_ref, r_star, "pi_ref", "r_star")
        check_same_shape(pi_ref, r_hat, "pi_ref", "r_hat")
        prompt_probs = check_prompt_probs(self.prompt_probs, pi_ref.shape[0])
        for name, value in [("pi_ref", pi_ref), ("r_star", r_star), ("r_hat", r_hat),
                            ("prompt_probs", prompt_probs)]:
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n_prompts(self) -> int:
        """Number of prompts ``X``."""
        return self.pi_ref.shape[0]

    @property
    def n_responses(self) -> int:
        """Number of responses ``Y``."""
        return self.pi_ref.shape[1]

    def expected(self, pi, reward) -> float:
        """``E_x E_{y ~ pi(.|x)} reward(x, y)`` under the prompt distribution.

        ``reward`` is an ``(X, Y)`` table or the name of one: ``"r_star"``/``"gold"`` or
        ``"r_hat"``/``"proxy"``.
        """
        pi = check_distribution(pi, "pi")
        check_same_shape(pi, self.pi_ref, "pi", "pi_ref")
        table = self._reward(reward)
        return float(self.prompt_probs @ (pi * table).sum(-1))

    def _reward(self, reward) -> np.ndarray:
        if isinstance(reward, str):
            names = {"r_star": self.r_star, "gold": self.r_star,
                     "r_hat": self.r_hat, "proxy": self.r_hat}
            if reward not in names:
                raise ValueError(f"reward must be one of {sorted(names)}, got {reward!r}")
            return names[reward]
        table = check_finite(reward, "reward")
        check_same_shape(table, self.pi_ref, "reward", "pi_ref")
        return table


def make_bandit(
    n_prompts: int = 8,
    n_responses: int = 64,
    *,
    proxy: str = "gaussian",
    noise_scale: float = 0.5,
    df: float = 2.0,
    n_comparisons: int = 2000,
    l2: float = 1e-3,
    ref_temperature: float = 1.0,
    rng=0,
) -> BanditEnv:
    """Draw a random bandit world with a gold reward and a proxy of the chosen kind.

    Parameters
    ----------
    n_prompts, n_responses : int
        Table size ``X >= 1`` and ``Y >= 2``, with ``X * Y <= 10**7``.
    proxy : {"exact", "gaussian", "student_t", "learned"}
        The proxy model (see the module docstring).
    noise_scale : float
        ``sigma`` of the Gaussian / Student-t proxy noise.
    df : float
        Degrees of freedom of the Student-t noise (smaller is heavier-tailed).
    n_comparisons : int
        Number of preference pairs the ``"learned"`` proxy is fitted on, drawn from
        ``pi_ref`` and labelled by ``r_star``; their :func:`comparison_counts` are kept in
        ``env.counts``.
    l2 : float
        L2 penalty of the Bradley-Terry fit of the ``"learned"`` proxy.
    ref_temperature : float
        ``pi_ref(.|x) = softmax(g / ref_temperature)`` with ``g`` standard normal
        logits: larger is flatter; any positive value (a subnormal one gives the one-hot
        limit, exactly).
    rng : numpy Generator or int
        Source of randomness (a seed for reproducibility).

    Returns
    -------
    BanditEnv

    Notes
    -----
    ``r_star ~ N(0, 1)`` i.i.d. per entry, independent of ``pi_ref``'s logits; prompts
    are uniform. The gold reward is drawn before the proxy noise, so two calls that
    differ only in ``proxy`` share ``pi_ref`` and ``r_star``. The learned proxy's
    comparisons are drawn from ``rng`` after the world.
    """
    n_prompts, n_responses = check_table_size(n_prompts, n_responses)
    n_responses = check_int(n_responses, "n_responses", minimum=2)
    if proxy not in PROXIES:
        raise ValueError(f"proxy must be one of {PROXIES}, got {proxy!r}")
    ref_temperature = check_positive(ref_temperature, "ref_temperature")
    rng = as_rng(rng)
    shape = (n_prompts, n_responses)
    g = rng.standard_normal(shape)
    # softmax(g / T) from the row maximum: (g - max) / T is <= 0 (never +inf), so any
    # T > 0 is exact, down to the one-hot limit of a subnormal temperature.
    with np.errstate(divide="ignore", over="ignore", under="ignore"):
        e = np.exp((g - g.max(-1, keepdims=True)) / ref_temperature)
    pi_ref = e / e.sum(-1, keepdims=True)
    r_star = rng.standard_normal(shape)
    noise_rng = np.random.default_rng(rng.integers(2**63))
    counts = None
    if proxy == "exact":
        r_hat = r_star.copy()
    elif proxy == "gaussian":
        scale = check_positive(noise_scale, "noise_scale")
        with np.errstate(over="ignore"):  # an infinite entry is refused below
            r_hat = r_star + scale * noise_rng.standard_normal(shape)
    elif proxy == "student_t":
        df = check_positive(df, "df")
        scale = check_positive(noise_scale, "noise_scale")
        with np.errstate(over="ignore", invalid="ignore"):  # refused below
            r_hat = r_star + scale * noise_rng.standard_t(df, shape)
    else:
        n_comparisons = check_int(n_comparisons, "n_comparisons", maximum=MAX_SAMPLES)
        x, y_w, y_l = sample_comparisons(pi_ref, r_star, n_comparisons, rng)
        r_hat = fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses, l2=l2)
        counts = comparison_counts(x, y_w, y_l, n_prompts, n_responses)
    if not np.all(np.isfinite(r_hat)):
        raise ValueError(f"noise_scale={noise_scale!r} and df={df!r} give a proxy with an "
                         "infinite entry: use a smaller noise_scale or a larger df")
    return BanditEnv(pi_ref=pi_ref, r_star=r_star, r_hat=r_hat,
                     prompt_probs=np.full(n_prompts, 1.0 / n_prompts), proxy=proxy,
                     counts=counts)


def check_env(env) -> BanditEnv:
    """``env`` itself if it is a :class:`BanditEnv`, else ``TypeError`` naming its type.

    Parameters
    ----------
    env : BanditEnv

    Returns
    -------
    BanditEnv
        ``env``, unchanged.
    """
    if not isinstance(env, BanditEnv):
        raise TypeError(f"env must be a BanditEnv, got {type(env).__name__}")
    return env
