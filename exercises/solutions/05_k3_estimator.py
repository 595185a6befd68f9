r"""Solution of exercise 05: estimating KL(pi || pi_ref) from samples, k1 and k3.

Chapter: "RLHF uses reverse KL, which is mode-seeking"; Schulman (2020).

## Derivation

Samples come from $\pi$; write $r(y) = \pi_{\mathrm{ref}}(y)/\pi(y)$. Then

$$
\mathbb{E}_\pi[r] = \sum_y \pi(y)\frac{\pi_{\mathrm{ref}}(y)}{\pi(y)}
  = \sum_{y:\,\pi(y) > 0} \pi_{\mathrm{ref}}(y) = 1
$$

when $\pi_{\mathrm{ref}}$ puts no mass outside the support of $\pi$ (otherwise it is $\le 1$).

- $k_1 = -\log r = \log\pi(y) - \log\pi_{\mathrm{ref}}(y)$ is the KL's integrand, so
  $\mathbb{E}_\pi[k_1] = \mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})$. It is negative on every
  sample where $\pi_{\mathrm{ref}}(y) > \pi(y)$, and its variance does not vanish as
  $\pi \to \pi_{\mathrm{ref}}$ relative to the KL it estimates.
- $k_3 = (r - 1) - \log r$ adds $r - 1$, whose expectation is $0$: unbiased as well. Since
  $\log x \le x - 1$ for all $x > 0$ (the tangent of the concave $\log$ at $x = 1$),
  $k_3 \ge 0$ on **every** sample, with equality only at $r = 1$. Near $r = 1$,
  $k_3 = (\log r)^2/2 + O((\log r)^3)$, the same order as the KL itself, so its variance
  is small when $\pi$ is close to $\pi_{\mathrm{ref}}$: $r - 1$ is a control variate for
  $-\log r$.

## Numerics

With $\ell = \log r$, $k_3 = (e^\ell - 1) - \ell$. For $|\ell| \ll 1$ the two terms nearly
cancel, and `np.exp(l) - 1` has already lost the digits that matter; `np.expm1(l) - l`
keeps them.
"""

import numpy as np


def k1(logp, logp_ref):
    """``-log r = logp - logp_ref``."""
    return np.asarray(logp, dtype=np.float64) - np.asarray(logp_ref, dtype=np.float64)


def k3(logp, logp_ref):
    """``(r - 1) - log r`` with ``log r = logp_ref - logp``, via ``expm1``."""
    log_r = np.asarray(logp_ref, dtype=np.float64) - np.asarray(logp, dtype=np.float64)
    return np.expm1(log_r) - log_r
