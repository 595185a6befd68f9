r"""Solution of exercise 12: Generalised Advantage Estimation.

Chapter: Stage 3 (PPO-RLHF); Schulman et al. (2016).

## Derivation

With $\delta_t = r_t + \gamma V_{t+1} - V_t$ ($V_T = 0$) and
$A_t = \sum_{l=0}^{T-1-t} (\gamma\lambda)^l \delta_{t+l}$, split off the first term:

$$
A_t = \delta_t + \gamma\lambda \sum_{l=1}^{T-1-t} (\gamma\lambda)^{l-1}\delta_{t+l}
    = \delta_t + \gamma\lambda\, A_{t+1}, \qquad A_T = 0,
$$

one pass from the end, $O(T)$ instead of the double sum's $O(T^2)$.

- $\lambda = 0$: $A_t = \delta_t$, the one-step TD error (low variance, biased by $V$).
- $\lambda = 1$: the values telescope,
  $\sum_{l}\gamma^l(r_{t+l} + \gamma V_{t+l+1} - V_{t+l}) = \sum_l \gamma^l r_{t+l} - V_t
  + \gamma^{T-t} V_T$, and $V_T = 0$, so $A_t + V_t = \sum_l \gamma^l r_{t+l}$: Monte Carlo
  returns, unbiased whatever $V$ is.
- The critic is regressed on $A_t + V_t$ (the $\lambda$-return).

In PPO-RLHF the reward is $-\beta(\log\pi - \log\pi_{\mathrm{ref}})$ per token plus the reward
model's score at the last token, and typically $\gamma = 1$.
"""

import numpy as np


def gae(rewards, values, gamma, lam):
    """``A_t = delta_t + gamma lam A_{t+1}`` from the end, ``V = 0`` after the last step."""
    r = np.asarray(rewards, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    B, T = r.shape
    adv = np.zeros((B, T))
    next_value = np.zeros(B)  # V_{t+1}; 0 after the last step
    next_adv = np.zeros(B)  # A_{t+1}
    for t in range(T - 1, -1, -1):
        delta = r[:, t] + gamma * next_value - v[:, t]
        adv[:, t] = delta + gamma * lam * next_adv
        next_value, next_adv = v[:, t], adv[:, t]
    return adv, adv + v
