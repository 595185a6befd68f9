r"""Solution of exercise 01: the optimal policy of KL-regularised RLHF.

Chapter: *The RLHF Pipeline*, Stage 3, "KL-Regularized RLHF Objective".

## Derivation

Fix a prompt. We maximise over the simplex

$$
J(\pi) = \sum_y \pi(y)\, r(y) - \beta \sum_y \pi(y) \log\frac{\pi(y)}{\pi_{\mathrm{ref}}(y)} .
$$

Responses with $\pi_{\mathrm{ref}}(y) = 0$ must get $\pi(y) = 0$: any mass there makes the KL
infinite. On the support $S = \{y : \pi_{\mathrm{ref}}(y) > 0\}$ add a multiplier for the
constraint, $\mathcal{L} = J(\pi) + \lambda (\sum_y \pi(y) - 1)$, and differentiate:

$$
\frac{\partial \mathcal{L}}{\partial \pi(y)}
  = r(y) - \beta \Big(\log\frac{\pi(y)}{\pi_{\mathrm{ref}}(y)} + 1\Big) + \lambda = 0 .
$$

This is the **first-order condition**: $\log \pi(y) - \log \pi_{\mathrm{ref}}(y) - r(y)/\beta$
equals the same constant $(\lambda - \beta)/\beta$ for every $y \in S$. Hence
$\pi(y) \propto \pi_{\mathrm{ref}}(y)\, e^{r(y)/\beta}$ and, normalising,

$$
\pi^*(y) = \frac{\pi_{\mathrm{ref}}(y)\, e^{r(y)/\beta}}{Z},\qquad
Z = \sum_y \pi_{\mathrm{ref}}(y)\, e^{r(y)/\beta}, \qquad
\log \pi^* - \log\pi_{\mathrm{ref}} - r/\beta = -\log Z .
$$

$J$ is strictly concave on the simplex restricted to $S$ (the entropy term is strictly
concave), so this stationary point is the unique maximum. The derivative is $+\infty$ at
$\pi(y) = 0 < \pi_{\mathrm{ref}}(y)$, so the maximiser keeps the whole support.

## Numerics

With $m = \max_{y \in S} r(y)$, multiply numerator and denominator by $e^{-m/\beta}$:

$$
\pi^*(y) = \frac{\pi_{\mathrm{ref}}(y)\, e^{(r(y) - m)/\beta}}
               {\sum_{y'} \pi_{\mathrm{ref}}(y')\, e^{(r(y') - m)/\beta}} .
$$

Every exponent is now $\le 0$ on the support (no overflow) and the maximiser contributes
$\pi_{\mathrm{ref}}(y_{\max}) > 0$ to the denominator (no $0/0$), for any $\beta > 0$.
Off the support the factor $\pi_{\mathrm{ref}} = 0$ keeps the entry exactly zero; the
exponent there is set to 0 so that no $0 \cdot \infty$ appears.
"""

import numpy as np


def optimal_policy(pi_ref, reward, beta):
    """``pi* = pi_ref exp(reward / beta) / Z`` along the last axis, shifted by the row max."""
    pi_ref = np.asarray(pi_ref, dtype=np.float64)
    reward = np.asarray(reward, dtype=np.float64)
    support = pi_ref > 0
    r_max = np.max(np.where(support, reward, -np.inf), axis=-1, keepdims=True)
    s = np.where(support, (reward - r_max) / beta, 0.0)  # <= 0 on the support
    unnormalised = pi_ref * np.exp(s)
    return unnormalised / unnormalised.sum(axis=-1, keepdims=True)
