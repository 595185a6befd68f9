r"""Solution of exercise 03: Goodhart's law as overestimation of the true reward.

Chapter: exercises, problem 3, with *Why Reward Models Are Fragile*.

## Derivation

Fix a prompt and write $t = 1/\beta$, $\varepsilon = \hat r - r^\star$ and
$\pi_t(y) = \pi_{\mathrm{ref}}(y)\, e^{t \hat r(y)} / Z(t)$. Since
$\frac{d}{dt}\log Z(t) = \mathbb{E}_{\pi_t}[\hat r]$,

$$
\frac{d}{dt}\pi_t(y) = \pi_t(y)\,\big(\hat r(y) - \mathbb{E}_{\pi_t}[\hat r]\big),
$$

so for any function $f$ of the response
$\frac{d}{dt}\mathbb{E}_{\pi_t}[f] = \mathrm{Cov}_{\pi_t}(f, \hat r)$. With $f = \varepsilon$:

$$
\frac{d}{dt}\,\mathbb{E}_{\pi_t}[\hat r - r^\star]
  = \mathrm{Cov}_{\pi_t}(\varepsilon, \hat r)
  = \mathrm{Var}_{\pi_t}(\varepsilon) + \mathrm{Cov}_{\pi_t}(\varepsilon, r^\star).
$$

At $t = 0$ ($\pi_t = \pi_{\mathrm{ref}}$), if $\varepsilon$ is independent of $r^\star$ the
covariance vanishes and the slope is $\mathrm{Var}_{\pi_{\mathrm{ref}}}(\varepsilon) > 0$: the
optimised policy moves towards responses whose error is positive, so its proxy reward
overstates its true reward more and more as $\beta$ decreases. In the Gaussian case
($r^\star \sim N(0, 1)$, $\varepsilon \sim N(0, \sigma^2)$ independent) exponential tilting by
$e^{t \hat r}$ shifts the joint Gaussian's mean by $t$ times its covariance with $\hat r$, so
$\mathbb{E}_{\pi_t}[\varepsilon] = t\,\mathrm{Cov}(\varepsilon, \hat r) = \sigma^2/\beta$ for
every $\beta$: the overestimation grows without bound as $\beta \to 0$. On a finite table the
tilt runs out of responses ($\pi_t \to$ the argmax of $\hat r$), the slope need not stay
positive, and the overestimation saturates at the error of the proxy's favourite response.

With $r^\star = 0$ the slope is $\mathrm{Var}_{\pi_t}(\hat r) \ge 0$: the proxy reward of
$\pi^*$ always rises as $\beta$ falls.

## Numerics

$\pi^*$ is built with each row's largest $\hat r$ on the support subtracted before
exponentiating (exercise 01); both quantities are then sums over the table, averaged over
prompts with equal weights.
"""

import numpy as np


def _optimal_policy(pi_ref, r_hat, beta):
    support = pi_ref > 0
    r_max = np.max(np.where(support, r_hat, -np.inf), axis=-1, keepdims=True)
    w = pi_ref * np.exp(np.where(support, (r_hat - r_max) / beta, 0.0))
    return w / w.sum(-1, keepdims=True)


def overestimation(pi_ref, r_star, r_hat, beta):
    """``mean_x E_{pi*_beta(r_hat)}[r_hat - r_star]``."""
    pi = _optimal_policy(np.asarray(pi_ref, float), np.asarray(r_hat, float), beta)
    return float(np.mean((pi * (r_hat - r_star)).sum(-1)))


def overestimation_slope(pi_ref, r_star, r_hat, beta):
    """``mean_x Cov_{pi*}(r_hat - r_star, r_hat)``, the derivative in ``1 / beta``."""
    r_hat = np.asarray(r_hat, float)
    pi = _optimal_policy(np.asarray(pi_ref, float), r_hat, beta)
    eps = r_hat - r_star
    mean_eps = (pi * eps).sum(-1, keepdims=True)
    mean_r = (pi * r_hat).sum(-1, keepdims=True)
    return float(np.mean((pi * (eps - mean_eps) * (r_hat - mean_r)).sum(-1)))
