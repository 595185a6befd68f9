"""The digit language: copy, reverse or sort digits (chapter, "The RLHF Pipeline", Stage 1).

Two things live here.

- The raw digit language that trains the numpy GPT in seconds (:func:`digit_sequences`,
  :func:`lm_batch`, :func:`digit_batches`): a prompt of ``n_digits`` random digits, a
  separator, and the answer (the digits copied, reversed or sorted). Reversal needs
  attention to look up a position, so it exercises every part of the model; a tiny GPT
  learns it to exact accuracy in a few seconds (``notebooks/06_tiny_gpt.ipynb``). Its
  vocabulary is the ten digits and the separator (``DIGIT_VOCAB_SIZE = 11``).
- :class:`DigitsTask`, the same language as a task of the RLHF pipeline: ``<bos>`` then
  two digits and the separator, answered by the two digits reversed then EOS. The gold
  reward gives partial credit per digit; the labelers are honest (utility = gold), so this
  is the control task on which optimising the learned reward model should not hurt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import MAX_SAMPLES, ArgumentTypeError, as_rng, check_int
from .base import Task, weighted_mean

#: Longest digit prompt :func:`digit_sequences` builds.
MAX_DIGITS = 1000

__all__ = [
    "DIGIT_TASKS",
    "DIGIT_VOCAB_SIZE",
    "SEP",
    "DigitsTask",
    "digit_batches",
    "digit_sequences",
    "lm_batch",
]

#: Separator between prompt and answer in the digit language (digits are tokens 0..9).
SEP = 10
#: Vocabulary of the digit language: ten digits and the separator.
DIGIT_VOCAB_SIZE = 11
#: The answers the digit language can ask for.
DIGIT_TASKS = ("copy", "reverse", "sort")


# ------------------------------------------------------------------------ digit language


def _answer(digits: np.ndarray, task: str) -> np.ndarray:
    if task == "copy":
        return digits
    if task == "reverse":
        return digits[:, ::-1]
    return np.sort(digits, axis=1)


def digit_sequences(rng, n: int, n_digits: int = 4, task: str = "reverse") -> np.ndarray:
    """Random sentences ``d_1 .. d_k SEP a_1 .. a_k`` of the digit language.

    Parameters
    ----------
    rng : numpy.random.Generator or int
    n : int
        Number of sentences.
    n_digits : int, default 4
        ``k``, digits in the prompt (and in the answer).
    task : {"copy", "reverse", "sort"}, default "reverse"
        The answer ``a`` is the prompt's digits copied, reversed, or sorted ascending.

    Returns
    -------
    ndarray of int, shape (n, 2 * n_digits + 1)
        The prompt is the first ``n_digits + 1`` tokens (separator included).
    """
    rng = as_rng(rng)
    n = check_int(n, "n", maximum=MAX_SAMPLES)
    k = check_int(n_digits, "n_digits", maximum=MAX_DIGITS)
    if task not in DIGIT_TASKS:
        raise ValueError(f"task must be one of {DIGIT_TASKS}, got {task!r}")
    digits = rng.integers(0, 10, size=(n, k))  # (n, k)
    sep = np.full((n, 1), SEP)
    return np.concatenate([digits, sep, _answer(digits, task)], axis=1).astype(np.intp)


def lm_batch(sequences, prompt_len: int):
    """Next-token training triple ``(tokens, targets, mask)`` scoring only the response.

    ``tokens = seq[:, :-1]``, ``targets = seq[:, 1:]``, and ``mask[:, t] = 1`` exactly when
    ``targets[:, t]`` is a response token (``t >= prompt_len - 1``).

    Parameters
    ----------
    sequences : ndarray of int, shape (B, S)
        Prompt then response, ``S >= prompt_len + 1``.
    prompt_len : int
        Number of prompt tokens ``P >= 1``.

    Returns
    -------
    tokens, targets : ndarray of int, shape (B, S - 1)
    mask : ndarray of float32, shape (B, S - 1)
    """
    seq = np.asarray(sequences)
    if not np.issubdtype(seq.dtype, np.integer):  # a value of the wrong kind
        raise ArgumentTypeError(f"sequences must be a 2-D int array, got dtype {seq.dtype}")
    if seq.ndim != 2:
        raise ValueError(f"sequences must be a 2-D int array, got shape {seq.shape}")
    P = check_int(prompt_len, "prompt_len")
    if seq.shape[1] < P + 1:
        raise ValueError(f"sequences must be longer than prompt_len={P}, got length {seq.shape[1]}")
    mask = np.zeros((seq.shape[0], seq.shape[1] - 1), dtype=np.float32)
    mask[:, P - 1 :] = 1.0
    return seq[:, :-1], seq[:, 1:], mask


def digit_batches(rng, batch_size: int, n_digits: int = 4, task: str = "reverse"):
    """Endless fresh batches ``(tokens, targets, mask)`` of the digit language.

    The mask scores the answer tokens only; prompts are ``n_digits + 1`` tokens long.

    Parameters
    ----------
    rng : numpy.random.Generator or int
    batch_size : int
        ``B``.
    n_digits : int, default 4
    task : str, default "reverse"

    Yields
    ------
    tokens, targets : ndarray of int of shape (B, L - 1)
        A batch of sequences of length ``L``, shifted by one.
    mask : ndarray of shape (B, L - 1)
    """
    rng = as_rng(rng)
    batch_size = check_int(batch_size, "batch_size", maximum=MAX_SAMPLES)
    digit_sequences(rng, 1, n_digits, task)  # validate now, not at the first next()

    def gen():
        while True:
            yield lm_batch(digit_sequences(rng, batch_size, n_digits, task), n_digits + 1)

    return gen()


# ------------------------------------------------------------------------------ the task


@dataclass(frozen=True)
class DigitsTask(Task):
    """The digit language as a pipeline task, with honest labelers (the control).

    Parameters
    ----------
    digit_task : {"copy", "reverse", "sort"}, default "reverse"
    p_digit : float, default 0.8
        Probability that each of the demonstrator's two digits is right (else uniform).
    stop_probs : tuple of 3 floats, default (0.02, 0.05, 0.9)
        Demonstrator's probability of EOS after 0, 1 and 2 digits.
    label_temperature : float, default 0.5

    Notes
    -----
    Vocabulary ``0 .. 9 | <bos> <eos> <pad>`` (digit id = digit, ``|`` is :data:`SEP`);
    prompts ``<bos> d_1 d_2 |`` (``P = 4``, 100 of them, uniform); responses of at most 3
    tokens over ``0..9`` and EOS (1,111 per prompt). Gold reward: the fraction of the two
    answer digits in place when the response is two digits then EOS, else 0. The
    labelers' utility is the gold reward. ``eval_prompts``: 32 distinct prompts (seed 0).
    """

    digit_task: str = "reverse"
    p_digit: float = 0.8
    stop_probs: tuple = (0.02, 0.05, 0.9)

    n_digits = 2  # digits in a prompt and in its answer (a class constant, not a field)

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "name", "digits")
        if self.digit_task not in DIGIT_TASKS:
            raise ValueError(f"digit_task must be one of {DIGIT_TASKS}, got {self.digit_task!r}")
        digits = [str(d) for d in range(10)]
        self._set_vocab(
            digits + ["|"], digits, max_response_len=self.n_digits + 1, prompt_len=self.n_digits + 2
        )
        if not 0.0 <= self.p_digit <= 1.0:
            raise ValueError(f"p_digit must be in [0, 1], got {self.p_digit}")
        sp = np.asarray(self.stop_probs, dtype=np.float64)
        if sp.shape != (3,) or np.any(sp < 0) or np.any(sp > 1):
            raise ValueError(f"stop_probs must be 3 probabilities, got {self.stop_probs}")
        object.__setattr__(self, "stop_probs", tuple(float(v) for v in sp))

    def make_prompts(self, digits) -> np.ndarray:
        """Prompts ``<bos> d_1 d_2 |`` for int digits (n, 2), int (n, 4)."""
        d = np.asarray(digits, dtype=np.intp).reshape(-1, self.n_digits)
        n = len(d)
        return np.concatenate([np.full((n, 1), self.bos_id), d, np.full((n, 1), SEP)], axis=1)

    def answers(self, prompts) -> np.ndarray:
        """The answer digits of each prompt, int (B, 2)."""
        x = self.check_prompts(prompts)
        return _answer(x[:, 1 : 1 + self.n_digits], self.digit_task)

    def sample_prompts(self, n: int, rng) -> np.ndarray:
        """``n`` prompts of uniform digits, int (n, 4) (the prompts of :func:`digit_sequences`)."""
        seq = digit_sequences(rng, n, self.n_digits, self.digit_task)
        return self.make_prompts(seq[:, : self.n_digits])

    def eval_prompts(self) -> np.ndarray:
        """32 distinct prompts chosen with seed 0, int (32, 4)."""
        idx = np.sort(np.random.default_rng(0).choice(10**self.n_digits, 32, replace=False))
        return self.make_prompts(np.stack(np.divmod(idx, 10), axis=1))

    def _digit_hits(self, x, y):
        """Answer digits in place, (B, 2) bool, False unless ``y`` is 2 digits then EOS."""
        k = self.n_digits
        well_formed = (y[:, k] == self.eos_id) & np.all(y[:, :k] != self.eos_id, axis=1)
        return (y[:, :k] == self.answers(x)) & well_formed[:, None]

    def gold_rewards(self, prompts, responses, mask) -> np.ndarray:
        """Fraction of answer digits in place in a well-formed response, else 0; (B,)."""
        x = self.check_prompts(prompts)
        y, _ = self.check_responses(responses, mask)
        return self._digit_hits(x, y).mean(axis=1)

    def labeler_bias(self, prompts, responses, mask) -> np.ndarray:
        """Honest labelers: zeros, shape (B,)."""
        y, _ = self.check_responses(responses, mask)
        return np.zeros(len(y))

    def rates(self, prompts, responses, mask, weights=None) -> dict:
        """``{"accuracy", "digit_accuracy"}``: exact answers and digits in place (weighted)."""
        x = self.check_prompts(prompts)
        y, _ = self.check_responses(responses, mask)
        hits = self._digit_hits(x, y)
        return {
            "accuracy": weighted_mean(hits.all(axis=1), weights),
            "digit_accuracy": weighted_mean(hits.mean(axis=1), weights),
        }

    def demonstrator_next(self, prompts, prefix) -> np.ndarray:
        """EOS with probability ``stop_probs[t]``; digit ``t`` of the answer with probability
        ``p_digit`` (else uniform); a third digit uniform. Columns: digits 0..9, EOS."""
        x = self.check_prompts(prompts)
        t = np.asarray(prefix).shape[1]
        B = len(x)
        digit = np.full((B, 10), 1.0 / 10)
        if t < self.n_digits:
            digit *= 1.0 - self.p_digit
            digit[np.arange(B), self.answers(x)[:, t]] += self.p_digit
        probs = np.empty((B, 11))
        probs[:, :10] = (1.0 - self.stop_probs[t]) * digit
        probs[:, 10] = self.stop_probs[t]  # EOS is the last response id
        return probs
