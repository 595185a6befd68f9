"""The length task: labelers who like long answers (chapter, "Reward Hacking and Goodhart").

A prompt asks for a small sum, ``<bos> a + b =`` with digits ``a + b <= 4`` (15 prompts);
the answer is the single digit ``a + b``. The gold reward is 1 for exactly that answer followed by
EOS and 0 for anything else (``3 3 3`` is not ``3``). The labelers check the answer but
also like longer responses:

    u(x, y) = r*(x, y) + length_bias * len(y),

``len`` the number of tokens before EOS. With the default ``length_bias = 0.4`` a correct
answer has utility 1.4 and four tokens of anything 1.6: the labelers' favourite response is
wrong. A reward model fitted to their comparisons inherits the bias, and optimising it
harder (smaller ``beta``) first raises the gold reward (the correct answer beats short wrong
ones) and then lowers it (long answers beat the correct one) while the length grows: the
overoptimisation curve of Gao et al. (2023), with a cause one can read off.

The demonstrator is right 70% of the time on its first digit and usually stops after it,
but sometimes rambles (16%, 10%, 10% of two, three and four digits; 4% empty), so the
supervised policy puts a little mass on the long answers the labelers prefer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_rng, check_int, check_nonnegative
from .base import Task, weighted_mean

__all__ = ["LengthTask"]

#: Digits of the task (token id = digit value).
N_DIGITS = 5
#: The pairs ``(a, b)`` of digits with ``a + b <= 4``, ``a`` major.
SUMS = np.array([(a, b) for a in range(N_DIGITS) for b in range(N_DIGITS) if a + b < N_DIGITS])


@dataclass(frozen=True)
class LengthTask(Task):
    """Small sums answered by labelers who prefer longer responses.

    Parameters
    ----------
    length_bias : float, default 0.4
        Utility the labelers add per response token before EOS.
    p_correct : float, default 0.7
        Probability that the demonstrator's first digit is the answer.
    length_probs : tuple of 5 floats, default (0.04, 0.6, 0.16, 0.1, 0.1)
        Demonstrator's distribution of the number of digits 0..4 (4 means no EOS).
    label_temperature : float, default 0.5
        Temperature of the labelers' Bradley-Terry choice.

    Notes
    -----
    Vocabulary ``0 1 2 3 4 + = <bos> <eos> <pad>``; prompts ``<bos> a + b =`` with
    ``a + b <= 4`` (``P = 5``, 15 of them, uniform); responses of at most 4 tokens over
    ``0..4`` and EOS (781 per prompt). ``eval_prompts`` is all 15 prompts, so the
    evaluation's mean over them is the exact expectation over the prompt distribution.
    (A sum modulo 5 would use all 25 pairs, but a tiny GPT needs hundreds more steps to
    learn modular addition than the seconds SFT has.)
    """

    length_bias: float = 0.4
    p_correct: float = 0.7
    length_probs: tuple = (0.04, 0.6, 0.16, 0.1, 0.1)

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "name", "length")
        digits = [str(d) for d in range(N_DIGITS)]
        self._set_vocab(digits + ["+", "="], digits, max_response_len=4, prompt_len=5)
        check_nonnegative(self.length_bias, "length_bias")
        if not 0.0 <= self.p_correct <= 1.0:
            raise ValueError(f"p_correct must be in [0, 1], got {self.p_correct}")
        lp = np.asarray(self.length_probs, dtype=np.float64)
        if lp.shape != (5,) or np.any(lp < 0) or not np.isclose(lp.sum(), 1.0):
            raise ValueError(
                f"length_probs must be 5 probabilities summing to 1, got {self.length_probs}"
            )
        object.__setattr__(self, "length_probs", tuple(float(v) for v in lp))

    # ------------------------------------------------------------------ prompts

    def make_prompts(self, a, b) -> np.ndarray:
        """Prompts ``<bos> a + b =`` for digit arrays ``a`` and ``b``, int (n, 5)."""
        a, b = np.broadcast_arrays(np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp))
        v = {s: i for i, s in enumerate(self.vocab)}
        n = a.size
        return np.stack(
            [np.full(n, self.bos_id), a.ravel(), np.full(n, v["+"]), b.ravel(), np.full(n, v["="])],
            axis=1,
        )

    def check_prompts(self, prompts, name: str = "prompts") -> np.ndarray:
        """Validated prompts ``<bos> a + b =`` with digits ``a + b <= 4``, int (B, 5)."""
        x = super().check_prompts(prompts, name)
        ok = np.all(x == self.make_prompts(x[:, 1], x[:, 3]), axis=1) & (x[:, 1] + x[:, 3] <= 4)
        if not ok.all():
            bad = int(np.argmin(ok))
            raise ValueError(
                f"{name} row {bad} is not '<bos> a + b =' with a + b <= 4: {self.decode(x[bad])!r}"
            )
        return x

    def answers(self, prompts) -> np.ndarray:
        """``a + b`` of each prompt, int (B,)."""
        x = self.check_prompts(prompts)
        return x[:, 1] + x[:, 3]

    def sample_prompts(self, n: int, rng) -> np.ndarray:
        """``n`` prompts uniform over the 15 sums, int (n, 5)."""
        rng = as_rng(rng)
        n = check_int(n, "n")
        return self.eval_prompts()[rng.integers(0, len(SUMS), size=n)]

    def eval_prompts(self) -> np.ndarray:
        """All 15 prompts, ``a`` major, int (15, 5)."""
        return self.make_prompts(SUMS[:, 0], SUMS[:, 1])

    # ------------------------------------------------------------------ rewards

    def _correct(self, x, y, m):
        return (y[:, 0] == self.answers(x)) & (y[:, 1] == self.eos_id)

    def gold_rewards(self, prompts, responses, mask) -> np.ndarray:
        """``r*(x, y) = 1`` if ``y`` is exactly the answer then EOS, else 0; shape (B,).

        Notes
        -----
        Chapter, "Reward Hacking and Goodhart": the gold reward of the length task ignores
        length; only a correct answer counts.
        """
        x = self.check_prompts(prompts)
        y, m = self.check_responses(responses, mask)
        return self._correct(x, y, m).astype(np.float64)

    def labeler_bias(self, prompts, responses, mask) -> np.ndarray:
        """``length_bias * len(y)``, shape (B,)."""
        return self.length_bias * self.response_lengths(responses, mask)

    def rates(self, prompts, responses, mask, weights=None) -> dict:
        """``{"accuracy", "length"}``: weighted means of correctness and of ``len(y)``.

        ``weights`` (B,), e.g. ``pi(y | x)`` over an enumeration, makes them exact
        expectations; ``None`` is the plain mean over rows.
        """
        x = self.check_prompts(prompts)
        y, m = self.check_responses(responses, mask)
        return {
            "accuracy": weighted_mean(self._correct(x, y, m), weights),
            "length": weighted_mean(self.response_lengths(y, m), weights),
        }

    # ------------------------------------------------------------------ demonstrator

    def demonstrator_next(self, prompts, prefix) -> np.ndarray:
        """Stop with hazard ``length_probs[t] / sum(length_probs[t:])``; the first digit is
        the answer with probability ``p_correct`` (else uniform on the other four), later
        digits are uniform. Columns follow ``response_token_ids`` (digits 0..4, EOS)."""
        x = self.check_prompts(prompts)
        t = np.asarray(prefix).shape[1]
        lp = np.asarray(self.length_probs)
        tail = lp[t:].sum()
        p_stop = lp[t] / tail if tail > 0 else 1.0
        B = len(x)
        if t == 0:
            ans = self.answers(x)
            digit = np.full((B, N_DIGITS), (1.0 - self.p_correct) / (N_DIGITS - 1))
            digit[np.arange(B), ans] = self.p_correct
        else:
            digit = np.full((B, N_DIGITS), 1.0 / N_DIGITS)
        probs = np.empty((B, N_DIGITS + 1))
        probs[:, :N_DIGITS] = (1.0 - p_stop) * digit
        probs[:, N_DIGITS] = p_stop  # EOS is the last response id
        return probs
