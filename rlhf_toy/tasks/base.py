"""What every toy language of the sequence world provides (chapter, "The RLHF Pipeline").

A task is the world the pipeline's stages act on: a small vocabulary, a prompt
distribution, a **gold reward** ``r*(x, y)`` (a program, known exactly), an **imperfect
demonstrator** for Stage 1 (SFT) and **simulated labelers** for Stage 2 (the reward model).
The labelers are Bradley-Terry on a *utility* that is the gold reward plus the labelers'
biases,

    u(x, y) = r*(x, y) + bias(x, y),
    P(a preferred to b | x) = sigma((u(x, a) - u(x, b)) / temperature),

so a reward model fitted to their comparisons learns ``u / temperature`` (up to a shift per
prompt), biases included: optimising it is Goodhart's law with a known cause.

Responses are short (``max_response_len <= 4`` tokens over a few symbols) so that every
response of a prompt can be enumerated (:meth:`Task.all_responses`) and every expectation
under a policy, and the KL-regularised optimum ``pi_ref exp(r / beta) / Z`` itself, are
exact sums.

Array conventions (``B`` rows, ``P = prompt_len``, ``T = max_response_len``):

- ``prompts``: int ``(B, P)``, starting with ``bos_id``;
- ``responses``: int ``(B, T)``, tokens of ``response_token_ids``; a response ends at its
  first EOS (included) or after ``T`` tokens without one; ``pad_id`` after the end;
- ``mask``: float ``(B, T)``, 1 on the response's tokens (its EOS included), 0 on padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from .._validate import as_rng, check_int, check_mask, check_positive

__all__ = ["Task"]


@dataclass(frozen=True)
class Task:
    """A toy language: vocabulary, prompts, gold reward, demonstrator and labelers.

    Subclasses set the vocabulary fields and implement :meth:`sample_prompts`,
    :meth:`eval_prompts`, :meth:`gold_rewards`, :meth:`labeler_bias`, :meth:`rates` and
    :meth:`demonstrator_next` (the demonstrator's next-token distribution); sampling,
    exact probabilities, labels and enumeration are written once here.

    Attributes
    ----------
    name : str
    vocab : tuple of str
        Token strings; index = token id.
    bos_id, eos_id, pad_id : int
    response_token_ids : tuple of int
        The ids a response may contain, EOS included, ascending.
    max_response_len : int
        ``T``, at most 4.
    prompt_len : int
        ``P``, the same for every prompt of the task.
    label_temperature : float, default 0.5
        Temperature of the labelers' Bradley-Terry choice (their noise): a utility gap of
        1 is preferred with probability ``sigma(2) = 0.88``.
    """

    name: str = field(init=False)
    vocab: tuple = field(init=False)
    bos_id: int = field(init=False)
    eos_id: int = field(init=False)
    pad_id: int = field(init=False)
    response_token_ids: tuple = field(init=False)
    max_response_len: int = field(init=False)
    prompt_len: int = field(init=False)
    label_temperature: float = 0.5

    def __post_init__(self):
        check_positive(self.label_temperature, "label_temperature")

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """``V = len(vocab)``."""
        return len(self.vocab)

    def _set_vocab(self, vocab, response_symbols, max_response_len, prompt_len):
        """Fill the vocabulary fields (for subclasses' ``__post_init__``)."""
        vocab = tuple(vocab) + ("<bos>", "<eos>", "<pad>")
        ids = {s: i for i, s in enumerate(vocab)}
        if len(ids) != len(vocab):
            raise ValueError(f"vocab has duplicate tokens: {vocab}")
        set_ = object.__setattr__
        set_(self, "vocab", vocab)
        set_(self, "bos_id", ids["<bos>"])
        set_(self, "eos_id", ids["<eos>"])
        set_(self, "pad_id", ids["<pad>"])
        set_(
            self,
            "response_token_ids",
            tuple(sorted([ids[s] for s in response_symbols] + [ids["<eos>"]])),
        )
        set_(self, "max_response_len", check_int(max_response_len, "max_response_len"))
        set_(self, "prompt_len", check_int(prompt_len, "prompt_len"))
        if self.max_response_len > 4:
            raise ValueError(f"max_response_len must be <= 4, got {max_response_len}")

    @property
    def symbol_ids(self) -> np.ndarray:
        """Response ids other than EOS, shape (S,)."""
        ids = np.asarray(self.response_token_ids)
        return ids[ids != self.eos_id]

    def decode(self, ids) -> str:
        """Token ids as a space-separated string, padding dropped (for display)."""
        return " ".join(self.vocab[int(i)] for i in np.ravel(ids) if int(i) != self.pad_id)

    def encode(self, text: str) -> np.ndarray:
        """Inverse of :meth:`decode`: whitespace-separated token strings to ids."""
        ids = {s: i for i, s in enumerate(self.vocab)}
        try:
            return np.array([ids[s] for s in text.split()], dtype=np.intp)
        except KeyError as e:
            raise ValueError(f"unknown token {e.args[0]!r} for task {self.name!r}") from None

    # ------------------------------------------------------------------ validation

    def check_prompts(self, prompts, name: str = "prompts") -> np.ndarray:
        """Validated int prompts ``(B, P)`` of this task (ValueError naming the problem)."""
        p = np.asarray(prompts)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2 or p.shape[1] != self.prompt_len or p.shape[0] < 1:
            raise ValueError(
                f"{name} must have shape (B, {self.prompt_len}) for task {self.name!r}, "
                f"got {p.shape}"
            )
        if p.dtype == bool or not np.issubdtype(p.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {p.dtype}")
        if p.min() < 0 or p.max() >= self.vocab_size:
            raise ValueError(
                f"{name} must be token ids in [0, {self.vocab_size}), got {p.min()}..{p.max()}"
            )
        if np.any(p[:, 0] != self.bos_id):
            raise ValueError(f"{name} must start with bos_id={self.bos_id}")
        return p.astype(np.intp, copy=False)

    def check_responses(self, responses, mask, name: str = "responses"):
        """Validated ``(responses (B, T) int, mask (B, T) float)`` in the padded layout.

        Raises
        ------
        ValueError
            Wrong shapes; a mask that is not a prefix of ones; a token outside
            ``response_token_ids`` on the mask; an EOS before the last masked token; a
            response shorter than ``T`` without EOS; a non-PAD token after the end.
        """
        y = np.asarray(responses)
        m = np.asarray(mask)
        T = self.max_response_len
        if y.ndim != 2 or y.shape[1] != T or y.shape[0] < 1:
            raise ValueError(
                f"{name} must have shape (B, {T}) for task {self.name!r}, got {y.shape}"
            )
        if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {y.dtype}")
        m = check_mask(m, "mask", y.shape, binary=True, like_name=name)
        on = m > 0
        if np.any(on[:, 1:] & ~on[:, :-1]) or np.any(~on[:, 0]):
            raise ValueError("mask must be a non-empty prefix of ones in every row")
        allowed = np.isin(y, self.response_token_ids)
        if np.any(on & ~allowed):
            b, t = np.argwhere(on & ~allowed)[0]
            raise ValueError(
                f"{name}[{b}, {t}] = {y[b, t]} is not a response token {self.response_token_ids}"
            )
        n = on.sum(axis=1)  # (B,)
        is_eos = (y == self.eos_id) & on
        last = y[np.arange(len(y)), n - 1]
        if np.any(is_eos.sum(axis=1) > (last == self.eos_id)):
            raise ValueError(
                f"{name} must end at their first EOS (a row has an EOS before "
                "its last masked token)"
            )
        if np.any((n < T) & (last != self.eos_id)):
            raise ValueError(f"{name} shorter than max_response_len={T} must end with EOS")
        if np.any(~on & (y != self.pad_id)):
            raise ValueError(f"{name} must hold pad_id={self.pad_id} after their end")
        return y.astype(np.intp, copy=False), m

    def responses_from_tokens(self, tokens):
        """Cut generated rows at their first EOS: ``(responses, mask)`` in the padded layout.

        Parameters
        ----------
        tokens : ndarray of int, shape (B, T)
            Generated tokens of ``response_token_ids`` (anything after the first EOS is
            ignored and replaced by ``pad_id``).

        Returns
        -------
        responses : ndarray of int, shape (B, T)
        mask : ndarray of float, shape (B, T)
        """
        y = np.array(tokens, dtype=np.intp, copy=True)
        if y.ndim != 2 or y.shape[1] != self.max_response_len:
            raise ValueError(f"tokens must have shape (B, {self.max_response_len}), got {y.shape}")
        eos = y == self.eos_id
        after = np.cumsum(eos, axis=1) - eos > 0  # strictly after the first EOS
        y[after] = self.pad_id
        mask = (~after).astype(np.float64)
        self.check_responses(y, mask, "tokens")
        return y, mask

    def response_lengths(self, responses, mask) -> np.ndarray:
        """Number of response tokens before EOS (EOS not counted), shape (B,)."""
        y, m = self.check_responses(responses, mask)
        return ((m > 0) & (y != self.eos_id)).sum(axis=1).astype(np.float64)

    # ------------------------------------------------------------------ enumeration

    def all_responses(self):
        """Every valid response, ordered by length then lexicographically by token id.

        Returns
        -------
        responses : ndarray of int, shape (N, T)
        mask : ndarray of float, shape (N, T)
            ``N = sum_{k<T} S^k + S^T`` for ``S`` symbols: ``k`` symbols then EOS for
            ``k < T``, and the ``S^T`` responses of ``T`` symbols that reach the length
            limit without EOS.
        """
        T, sym = self.max_response_len, self.symbol_ids
        rows, masks = [], []
        for k in range(T + 1):
            grid = (
                np.stack(np.meshgrid(*([sym] * k), indexing="ij"), -1).reshape(-1, k)
                if k
                else np.zeros((1, 0), dtype=np.intp)
            )  # (S^k, k)
            y = np.full((len(grid), T), self.pad_id, dtype=np.intp)
            y[:, :k] = grid
            m = np.zeros((len(grid), T))
            m[:, : min(k + 1, T)] = 1.0
            if k < T:
                y[:, k] = self.eos_id
            rows.append(y)
            masks.append(m)
        return np.concatenate(rows), np.concatenate(masks)

    @property
    def n_responses(self) -> int:
        """``N``, the number of valid responses of a prompt."""
        S, T = len(self.symbol_ids), self.max_response_len
        return sum(S**k for k in range(T + 1))

    # ------------------------------------------------------------------ gold reward

    def gold_rewards(self, prompts, responses, mask) -> np.ndarray:
        """Vectorised gold reward ``r*(x, y)``, shape (B,). Subclasses implement it."""
        raise NotImplementedError

    def gold_reward(self, prompt_ids, response_ids) -> float:
        """Gold reward of one response.

        Parameters
        ----------
        prompt_ids : sequence of int, length ``prompt_len``
        response_ids : sequence of int
            The response without padding, with its EOS if it has one.

        Returns
        -------
        float
        """
        r = np.asarray(response_ids, dtype=np.intp).ravel()
        T = self.max_response_len
        if not 1 <= r.size <= T:
            raise ValueError(f"response_ids must have 1 to {T} tokens, got {r.size}")
        y = np.full((1, T), self.pad_id, dtype=np.intp)
        y[0, : r.size] = r
        m = np.zeros((1, T))
        m[0, : r.size] = 1.0
        return float(self.gold_rewards(np.asarray(prompt_ids)[None, :], y, m)[0])

    # ------------------------------------------------------------------ labelers

    def labeler_bias(self, prompts, responses, mask) -> np.ndarray:
        """What the labelers add to the gold reward, shape (B,). Subclasses implement it."""
        raise NotImplementedError

    def labeler_utility(self, prompts, responses, mask) -> np.ndarray:
        """``u(x, y) = r*(x, y) + bias(x, y)``, the labelers' utility, shape (B,)."""
        return self.gold_rewards(prompts, responses, mask) + self.labeler_bias(
            prompts, responses, mask
        )

    def preference_probs(self, prompts, responses_a, mask_a, responses_b, mask_b):
        """``P(a preferred to b) = sigma((u(x, a) - u(x, b)) / label_temperature)``, (B,)."""
        u_a = self.labeler_utility(prompts, responses_a, mask_a)
        u_b = self.labeler_utility(prompts, responses_b, mask_b)
        if u_a.shape != u_b.shape:
            raise ValueError(
                f"responses_a and responses_b must have the same number of rows, "
                f"got {u_a.shape[0]} and {u_b.shape[0]}"
            )
        return expit((u_a - u_b) / self.label_temperature)

    def label(self, prompts, responses_a, mask_a, responses_b, mask_b, rng) -> np.ndarray:
        """Simulated labelers' choices between two responses of each prompt.

        Parameters
        ----------
        prompts : ndarray of int, shape (B, P)
        responses_a, mask_a, responses_b, mask_b : ndarray of shape (B, T)
        rng : numpy.random.Generator or int

        Returns
        -------
        a_preferred : ndarray of bool, shape (B,)

        Notes
        -----
        Bradley-Terry on the labelers' utility (chapter, Stage 2):
        ``P(a > b | x) = sigma((u(x, a) - u(x, b)) / label_temperature)`` with
        ``u = r* + bias``; one uniform per row, ``a_preferred = U < P``.
        """
        rng = as_rng(rng)
        p = self.preference_probs(prompts, responses_a, mask_a, responses_b, mask_b)
        return rng.random(p.shape) < p

    def rates(self, prompts, responses, mask, weights=None) -> dict:
        """The task's rates (accuracy, ...) as weighted means. Subclasses implement it."""
        raise NotImplementedError

    # ------------------------------------------------------------------ demonstrator

    def demonstrator_next(self, prompts, prefix) -> np.ndarray:
        """Demonstrator's next-token probabilities over ``response_token_ids``.

        Parameters
        ----------
        prompts : ndarray of int, shape (B, P)
        prefix : ndarray of int, shape (B, t)
            The response so far (``0 <= t < T``, no EOS in it).

        Returns
        -------
        ndarray of shape (B, len(response_token_ids)), rows summing to one.
        """
        raise NotImplementedError

    def _token_index(self, ids) -> np.ndarray:
        """Position of each id in ``response_token_ids`` (-1 if absent)."""
        lut = np.full(self.vocab_size, -1, dtype=np.intp)
        lut[list(self.response_token_ids)] = np.arange(len(self.response_token_ids))
        return lut[np.asarray(ids)]

    def demonstrations(self, prompts, rng):
        """Sample the imperfect demonstrator's responses, one per prompt.

        Parameters
        ----------
        prompts : ndarray of int, shape (B, P)
        rng : numpy.random.Generator or int

        Returns
        -------
        responses : ndarray of int, shape (B, T)
        mask : ndarray of float, shape (B, T)

        Notes
        -----
        Token by token from :meth:`demonstrator_next` by inverse CDF (one uniform per row
        and step, drawn for finished rows too), stopping each row at its EOS; the exact
        probability of any response is :meth:`demonstrator_probs`.
        """
        rng = as_rng(rng)
        x = self.check_prompts(prompts)
        B, T = len(x), self.max_response_len
        ids = np.asarray(self.response_token_ids)
        y = np.full((B, T), self.pad_id, dtype=np.intp)
        mask = np.zeros((B, T))
        live = np.ones(B, dtype=bool)
        for t in range(T):
            u = rng.random(B)  # (B,)
            probs = self.demonstrator_next(x, np.where(live[:, None], y[:, :t], self.pad_id))
            cdf = np.cumsum(probs, axis=1)  # (B, A)
            k = np.minimum((cdf < u[:, None] * cdf[:, -1:]).sum(axis=1), len(ids) - 1)
            k = _first_positive(probs, k)  # never a zero-probability token (u = 0, rounding)
            y[:, t] = np.where(live, ids[k], self.pad_id)
            mask[:, t] = live
            live &= ids[k] != self.eos_id
        return y, mask

    def demonstrator_probs(self, prompts, responses, mask) -> np.ndarray:
        """Exact probability that the demonstrator produces each response, shape (B,).

        ``prod_t q(y_t | x, y_<t)`` over the response's tokens, ``q`` from
        :meth:`demonstrator_next`. Summed over :meth:`all_responses` it is 1 for every
        prompt.
        """
        x = self.check_prompts(prompts)
        y, m = self.check_responses(responses, mask)
        if len(x) != len(y):
            raise ValueError(
                f"prompts and responses must have the same number of rows, "
                f"got {len(x)} and {len(y)}"
            )
        rows = np.arange(len(y))
        p = np.ones(len(y))
        for t in range(self.max_response_len):
            on = m[:, t] > 0
            if not on.any():
                break
            q = self.demonstrator_next(x, np.where(on[:, None], y[:, :t], self.pad_id))
            p = np.where(on, p * q[rows, np.maximum(self._token_index(y[:, t]), 0)], p)
        return p

    # ------------------------------------------------------------------ prompts

    def sample_prompts(self, n: int, rng) -> np.ndarray:
        """``n`` prompts from the task's prompt distribution, int (n, P)."""
        raise NotImplementedError

    def eval_prompts(self) -> np.ndarray:
        """The fixed evaluation prompts, int (n_eval, P)."""
        raise NotImplementedError


def _first_positive(probs: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per row, the first column ``>= k`` with positive probability (else the last one)."""
    cols = np.arange(probs.shape[1])
    later = np.where((probs > 0) & (cols >= k[:, None]), cols, probs.shape[1]).min(axis=1)
    last = probs.shape[1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=1)
    return np.where(later < probs.shape[1], later, last)


def weighted_mean(values, weights) -> float:
    """``sum w v / sum w`` (the rates' reduction; ``weights=None`` is the plain mean)."""
    v = np.asarray(values, dtype=np.float64)
    if weights is None:
        return float(v.mean())
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != v.shape or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(
            f"weights must be finite, >= 0, not all 0, of shape {v.shape}, got shape {w.shape}"
        )
    return float((w * v).sum() / w.sum())
