r"""Solution of exercise 08: J(pi) = beta (log Z - KL(pi || pi*)).

Chapter: Stage 3, "KL-Regularized RLHF Objective"; "RLHF uses reverse KL".

## Derivation

On the support of $\pi_{\mathrm{ref}}$,
$\log\pi^*(y) = \log\pi_{\mathrm{ref}}(y) + r(y)/\beta - \log Z$. For any $\pi$ that puts no
mass outside that support,

$$
\mathrm{KL}(\pi\,\|\,\pi^*) = \sum_y \pi(y)\Big[\log\frac{\pi(y)}{\pi_{\mathrm{ref}}(y)}
   - \frac{r(y)}{\beta} + \log Z\Big]
 = \mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}}) - \frac{1}{\beta}\,\mathbb{E}_\pi[r] + \log Z ,
$$

using $\sum_y \pi(y) = 1$. Multiply by $-\beta$ and rearrange:

$$
J(\pi) = \mathbb{E}_\pi[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})
       = \beta\big(\log Z - \mathrm{KL}(\pi\,\|\,\pi^*)\big).
$$

(If $\pi$ has mass where $\pi_{\mathrm{ref}} = 0$ both sides are $-\infty$.)

Consequences:

- $\mathrm{KL} \ge 0$ with equality iff $\pi = \pi^*$: $\pi^*$ is the unique maximiser and
  $J(\pi^*) = \beta\log Z$ (exercise 01 by another road);
- over a family $\Pi$, $\arg\max_{\pi \in \Pi} J(\pi) = \arg\min_{\pi\in\Pi}
  \mathrm{KL}(\pi\,\|\,\pi^*)$: a **reverse**-KL projection of $\pi^*$, mode-seeking
  (exercise 07);
- the suboptimality of any policy is exactly $\beta\,\mathrm{KL}(\pi\,\|\,\pi^*)$.

## Numerics

$\log Z = \operatorname{logsumexp}_y(\log\pi_{\mathrm{ref}}(y) + r(y)/\beta)$ is finite for
any $\beta > 0$; entries with $\pi = 0$ are left out of every expectation ($0\log 0 = 0$).
"""

import numpy as np
from scipy.special import logsumexp


def _log(p):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=np.float64))


def _expect(pi, values):
    """``sum_y pi(y) values(y)`` with terms where ``pi = 0`` left out."""
    pi = np.asarray(pi, dtype=np.float64)
    return np.where(pi > 0, pi * np.where(pi > 0, values, 0.0), 0.0).sum(-1)


def objective(pi, pi_ref, reward, beta):
    """``E_pi[r] - beta KL(pi || pi_ref)`` per prompt."""
    return _expect(pi, reward) - beta * _expect(pi, _log(pi) - _log(pi_ref))


def log_partition(pi_ref, reward, beta):
    """``logsumexp(log pi_ref + r / beta)`` per prompt."""
    return logsumexp(_log(pi_ref) + np.asarray(reward, float) / beta, axis=-1)


def kl_to_optimum(pi, pi_ref, reward, beta):
    """``sum_y pi (log pi - log pi*)`` with ``log pi* = log pi_ref + r / beta - log Z``."""
    log_z = log_partition(pi_ref, reward, beta)[..., None]
    log_pi_star = _log(pi_ref) + np.asarray(reward, float) / beta - log_z
    return _expect(pi, _log(pi) - log_pi_star)
