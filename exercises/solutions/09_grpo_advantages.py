r"""Solution of exercise 09: GRPO's group-normalised advantages.

Chapter: *Modern RL for LLMs* (DeepSeekMath; Dr. GRPO).

## Derivation

For a group $r_1, \dots, r_G$ with mean $\bar r$ and sample standard deviation
$s = \sqrt{\frac{1}{G-1}\sum_i (r_i - \bar r)^2}$, GRPO's advantage is
$A_i = (r_i - \bar r)/(s + \varepsilon)$.

- **Mean zero.** $\sum_i (r_i - \bar r) = 0$, so $\sum_i A_i = 0$: the group mean is the
  baseline, and the update pushes up the better-than-average responses and down the others.
- **Shift.** $r_i \to r_i + b$ moves $\bar r$ by $b$ and leaves $r_i - \bar r$ and $s$
  unchanged: $A$ is unchanged (exactly, for any $\varepsilon$).
- **Scale.** $r_i \to a r_i$ with $a > 0$ multiplies $r_i - \bar r$ and $s$ by $a$: with
  $\varepsilon = 0$, $A$ is unchanged. The reward's units drop out; with
  $\varepsilon > 0$ only approximately, when $s \gg \varepsilon$.
- **Unit std.** With $\varepsilon = 0$ the sample std of the $A_i$ is $s / s = 1$.
- **Zero spread.** If all $r_i$ are equal, $r_i - \bar r = 0$ and $s = 0$: the group carries
  no information about which response is better, and its advantages are $0$, so it
  contributes no gradient (in exact arithmetic; in floating point $r_i - \bar r$ can be a
  rounding error, and $0/0$ is NaN when $\varepsilon = 0$, so the case is detected as
  $\max = \min$ and set to 0 explicitly).

Dividing by $s$ also up-weights groups of small spread (prompts almost always right or
almost always wrong), the bias Dr. GRPO removes by dropping the division.
"""

import numpy as np


def grpo_advantages(rewards, eps=1e-4):
    """``(r - mean) / (std + eps)`` per row, sample std; exactly 0 for a zero-spread row."""
    r = np.asarray(rewards, dtype=np.float64)
    centred = r - r.mean(axis=-1, keepdims=True)
    std = r.std(axis=-1, ddof=1, keepdims=True)
    flat = r.max(axis=-1, keepdims=True) == r.min(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        adv = centred / (std + eps)
    return np.where(flat, 0.0, adv)
