r"""Solution of exercise 10: RLOO, REINFORCE with a leave-one-out baseline.

Chapter: *Modern RL for LLMs* (Ahmadian et al. 2024; Kool et al. 2019).

## Derivation

Let $S = \sum_j r_j$ and $\bar r = S/G$. The baseline of sample $i$ is
$b_i = (S - r_i)/(G - 1)$, so

$$
A_i = r_i - \frac{S - r_i}{G - 1} = \frac{(G-1) r_i - S + r_i}{G - 1}
    = \frac{G r_i - S}{G - 1} = \frac{G}{G - 1}\,(r_i - \bar r).
$$

Hence $\sum_i A_i = \frac{G}{G-1}\sum_i (r_i - \bar r) = 0$.

**Unbiasedness.** The responses are i.i.d. from $\pi$, so $b_i$, a function of the other
samples only, is independent of $y_i$, and
$\mathbb{E}[b_i \nabla\log\pi(y_i)] = \mathbb{E}[b_i]\,\mathbb{E}[\nabla\log\pi(y_i)] = 0$
because $\mathbb{E}_\pi[\nabla\log\pi] = \sum_y \nabla\pi(y) = \nabla 1 = 0$. So
$\mathbb{E}[A_i\nabla\log\pi(y_i)] = \mathbb{E}[r_i\nabla\log\pi(y_i)]$, the true policy
gradient, with a lower variance. The plain mean baseline $\bar r$ contains $r_i$:
$r_i - \bar r = \frac{G-1}{G} A_i$, whose expected update is $\frac{G-1}{G}$ times the
gradient (the right direction, a biased scale).

Moving $r_i$ by $\delta$ moves $A_i$ by $\delta$ (its own baseline does not see it) and
every other $A_j$ by $-\delta/(G-1)$.
"""

import numpy as np


def rloo_advantages(rewards):
    """``r_i - (S - r_i) / (G - 1)`` per row, ``S`` the row sum."""
    r = np.asarray(rewards, dtype=np.float64)
    g = r.shape[-1]
    total = r.sum(axis=-1, keepdims=True)
    return r - (total - r) / (g - 1)
