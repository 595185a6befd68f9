r"""Solution of exercise 07: reverse versus forward KL, mode-seeking versus mass-covering.

Chapter: "RLHF uses reverse KL, which is mode-seeking".

## Derivation

$\mathrm{KL}(p\,\|\,q) = \sum_y p(y)\log\frac{p(y)}{q(y)}$ is an average under $p$ of the log
ratio. Its terms are $0$ where $p = 0$ (since $t\log t \to 0$) and large where $p > 0$ while
$q \to 0$ (infinite if $q = 0$). For the target $t$ and the model $q$ on the grid:

$$
\mathrm{KL}(q\,\|\,t) = \sum_i q_i \log\frac{q_i}{t_i}, \qquad
\mathrm{KL}(t\,\|\,q) = \underbrace{\sum_i t_i \log t_i}_{\text{fixed}} - \sum_i t_i \log q_i .
$$

- **Reverse**, $\mathrm{KL}(q\,\|\,t)$ with the model $q$ on the left: every place where
  $q$ has mass and $t$ has almost none costs $q \log(q/t)$, huge. A single Gaussian cannot
  put mass on the gap between two separated modes without paying for it, so the minimiser
  shrinks onto **one mode** (with about that mode's width) and ignores the other, which
  costs nothing since the average is under $q$. The reverse KL is *zero-forcing*: $q$ goes to
  zero wherever $t$ is small. It is *mode-seeking*.
- **Forward**, $\mathrm{KL}(t\,\|\,q)$ with the target on the left: every place where $t$
  has mass and $q$ has almost none costs $t\log(t/q)$, huge. $q$ must cover **both**
  modes (*zero-avoiding*, *mass-covering*). For a Gaussian family the minimiser of
  $-\sum_i t_i \log q(g_i)$ is maximum likelihood: it matches the target's mean and variance
  (exactly for the continuous family; up to the grid's truncation here).

RLHF penalises $\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})$, a reverse KL: the policy may drop
modes of $\pi_{\mathrm{ref}}$ at little cost, which is one reading of the loss of diversity
after RLHF. (Within any family, maximising the RLHF objective is the reverse-KL projection
of $\pi^*$, exercise 08.)

## Numerics

$\log q(g_i) = \ell_i - \log\sum_j e^{\ell_j}$ with $\ell_i = -(g_i - m)^2/(2s^2)$ stays finite
where $q$ underflows. The fit is a grid search over 161 means and 60 log-spaced widths,
fine enough for the mode-level questions asked.
"""

import numpy as np
from scipy.special import logsumexp


def kl(p, q):
    """``sum_{p > 0} p log(p / q)``; ``+inf`` when some ``p > 0 = q``."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    live = p > 0
    if np.any(live & (q == 0)):
        return float(np.inf)
    return float(np.sum(p[live] * (np.log(p[live]) - np.log(q[live]))))


def _log_gaussian(grid, mean, std):
    logits = -0.5 * ((grid - np.asarray(mean)[..., None]) / np.asarray(std)[..., None]) ** 2
    return logits - logsumexp(logits, axis=-1, keepdims=True)


def _divergences(target, grid, mean, std, divergence):
    log_q = _log_gaussian(np.asarray(grid, float), mean, std)
    target = np.asarray(target, dtype=np.float64)
    live = target > 0
    log_t = np.log(np.where(live, target, 1.0))
    if divergence == "reverse":
        return (np.exp(log_q) * (log_q - np.where(live, log_t, -np.inf))).sum(-1)
    if divergence == "forward":
        return (np.where(live, target * (log_t - log_q), 0.0)).sum(-1)
    raise ValueError(f"divergence must be 'reverse' or 'forward', got {divergence!r}")


def gaussian_divergence(target, grid, mean, std, divergence):
    """``KL(q || target)`` or ``KL(target || q)`` for the grid Gaussian ``q``."""
    return float(_divergences(target, grid, mean, std, divergence))


def fit_gaussian(target, grid, divergence):
    """Grid search over means and log-spaced stds."""
    grid = np.asarray(grid, dtype=np.float64)
    means = np.linspace(grid[0], grid[-1], 161)
    stds = np.geomspace(np.min(np.diff(grid)) / 2, grid[-1] - grid[0], 60)
    values = _divergences(target, grid, means[:, None], stds[None, :], divergence)
    i, j = np.unravel_index(np.argmin(values), values.shape)
    return float(means[i]), float(stds[j])
