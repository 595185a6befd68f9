"""Wrong: returns = advantages, V_t not added back."""

import numpy as np

FAILS = "returns"


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
    return adv, adv
