r"""Solution of exercise 04: the gradient of the Bradley-Terry negative log-likelihood.

Chapter: *The RLHF Pipeline*, Stage 2, "Bradley-Terry Maximum Likelihood".

## Derivation

For comparison $i$ write the margin $d_i = r(x_i, y_{w,i}) - r(x_i, y_{l,i})$. The loss is
$L = \frac{1}{N}\sum_i \ell(d_i)$ with $\ell(d) = -\log\sigma(d)$, and

$$
\ell'(d) = -\frac{\sigma'(d)}{\sigma(d)} = -(1 - \sigma(d)) = -\sigma(-d).
$$

The margin depends on two entries of the table, $\partial d_i / \partial r(x_i, y_{w,i}) = 1$
and $\partial d_i / \partial r(x_i, y_{l,i}) = -1$, so

$$
\frac{\partial L}{\partial r(x, y)} = \frac{1}{N}\Big[
  \sum_{i:\,(x_i, y_{w,i}) = (x, y)} -\sigma(-d_i)
  \;+ \sum_{i:\,(x_i, y_{l,i}) = (x, y)} \sigma(-d_i) \Big].
$$

- Gradient descent raises the winner's reward and lowers the loser's, by
  $\sigma(-d_i)/N$: close to $1/N$ for a pair the model ranks wrongly, close to $0$ for one it
  ranks correctly by a wide margin.
- Each comparison adds $+g$ and $-g$ to the same row $x_i$, so every row of the gradient sums
  to zero: $L$ is invariant to $r(x, \cdot) \to r(x, \cdot) + c(x)$ (only differences of
  rewards are identified), and the gradient is orthogonal to that flat direction.
- When $y_{w,i} = y_{l,i}$ the two terms cancel: the pair carries no information.

## Implementation

`np.add.at` accumulates over repeated indices (a comparison that occurs $k$ times counts $k$
times), which plain fancy-index assignment would not.
"""

import numpy as np
from scipy.special import expit


def nll_gradient(reward, x, y_w, y_l):
    """``dL/dr``: ``-sigma(-d_i) / N`` at each winner, ``+sigma(-d_i) / N`` at each loser."""
    reward = np.asarray(reward, dtype=np.float64)
    d = reward[x, y_w] - reward[x, y_l]  # (N,) margins
    g = expit(-d) / len(d)  # (N,) weight of each comparison
    grad = np.zeros_like(reward)
    np.add.at(grad, (x, y_w), -g)
    np.add.at(grad, (x, y_l), g)
    return grad
