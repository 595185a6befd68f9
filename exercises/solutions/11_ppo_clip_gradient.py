r"""Solution of exercise 11: the gradient of PPO's clipped surrogate.

Chapter: Stage 3 (PPO) and *Modern RL for LLMs*; Schulman et al. (2017), eq. (7).

## Derivation

With $\rho = e^{\ell - \ell_{\mathrm{old}}}$, $\frac{d\rho}{d\ell} = \rho$. The per-token loss is
$l = -\min(\rho A,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon) A)$.

**$A > 0$.** $\min(\rho A, \mathrm{clip}(\rho) A) = A\min(\rho, \mathrm{clip}(\rho))$. For
$\rho \le 1 + \epsilon$ the minimum is $\rho A$ (when $\rho < 1 - \epsilon$,
$\mathrm{clip}(\rho) = 1 - \epsilon > \rho$); for $\rho > 1 + \epsilon$ it is
$(1+\epsilon) A$, a constant. So $\frac{dl}{d\ell} = -\rho A$ for $\rho \le 1+\epsilon$ and
$0$ beyond.

**$A < 0$.** Dividing by $A < 0$ turns the min into a max: the minimum is $\rho A$ for
$\rho \ge 1 - \epsilon$ and $(1 - \epsilon) A$, a constant, for $\rho < 1 - \epsilon$. So
$\frac{dl}{d\ell} = -\rho A$ for $\rho \ge 1-\epsilon$ and $0$ below.

**$A = 0$.** The loss is $0$.

Together:

$$
\frac{dl}{d\ell} =
\begin{cases}
0 & \text{if } (A > 0,\ \rho > 1+\epsilon) \text{ or } (A < 0,\ \rho < 1-\epsilon),\\
-\rho A & \text{otherwise.}
\end{cases}
$$

At $\rho = 1$ this is $-A$: the first PPO step from the sampling policy is the plain policy
gradient. The clip is one-sided: once a token's probability has moved far enough in the
direction its advantage favours, the gradient stops pushing; if it moved the *other* way
(e.g. $A > 0$ but $\rho < 1 - \epsilon$), the unclipped branch is the minimum and the
gradient pulls it back, unclipped. At the boundary $\rho = 1 \pm \epsilon$ the two branches
agree in value; we return the unclipped gradient there.
"""

import numpy as np


def ppo_clip_gradient(logp, logp_old, advantages, clip_eps):
    """``-rho A``, or exactly 0 where the clipped branch is the minimum."""
    a = np.asarray(advantages, dtype=np.float64)
    rho = np.exp(np.asarray(logp, dtype=np.float64) - np.asarray(logp_old, dtype=np.float64))
    clipped = ((a > 0) & (rho > 1 + clip_eps)) | ((a < 0) & (rho < 1 - clip_eps))
    return np.where(clipped, 0.0, -rho * a)
