r"""Solution of exercise 02: the gradient of the DPO loss.

Chapter: *DPO: Direct Preference Optimization*, "DPO as Implicit Reward Model".

## Derivation

Write $\ell_w = \log\pi(y_w)$, $\ell_l = \log\pi(y_l)$, and the implicit rewards
$h_w = \beta(\ell_w - \log\pi_{\mathrm{ref}}(y_w))$ and
$h_l = \beta(\ell_l - \log\pi_{\mathrm{ref}}(y_l))$.
The per-pair loss is $L = -\log\sigma(z)$ with $z = h_w - h_l$. Since
$\frac{d}{dz}\log\sigma(z) = \frac{\sigma'(z)}{\sigma(z)} = 1 - \sigma(z) = \sigma(-z)$,

$$
\frac{\partial L}{\partial z} = -\sigma(-z) = -\sigma(h_l - h_w),
\qquad \frac{\partial z}{\partial \ell_w} = \beta,
\qquad \frac{\partial z}{\partial \ell_l} = -\beta,
$$

so

$$
\frac{\partial L}{\partial \ell_w} = -\beta\,\sigma(h_l - h_w), \qquad
\frac{\partial L}{\partial \ell_l} = +\beta\,\sigma(h_l - h_w).
$$

Reading it:

- the two gradients sum to zero ($L$ depends on $\ell_w - \ell_l$ only): DPO constrains the
  margin, not the level, which is why both log-probs can fall during training;
- gradient descent raises $\log\pi(y_w)$ and lowers $\log\pi(y_l)$;
- the weight $\beta\,\sigma(h_l - h_w)$ lies in $(0, \beta)$: at least $\beta/2$ for a pair the
  implicit reward ranks wrongly ($h_l > h_w$), vanishing for a pair it already ranks
  correctly by a wide margin. DPO is a weighted likelihood-ratio update that focuses on
  the mistakes of its own implicit reward model.

## Numerics

`scipy.special.expit` evaluates $\sigma$ without overflow for margins of any size.
"""

import numpy as np
from scipy.special import expit


def dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """``(-beta sigma(h_l - h_w), +beta sigma(h_l - h_w))``, ``h = beta log(pi / pi_ref)``."""
    h_w = beta * (np.asarray(policy_chosen, float) - np.asarray(ref_chosen, float))
    h_l = beta * (np.asarray(policy_rejected, float) - np.asarray(ref_rejected, float))
    weight = beta * expit(h_l - h_w)
    return -weight, weight
