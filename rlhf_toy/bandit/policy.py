"""The tabular softmax policy of the bandit world (chapter, Stage 3: the policy ``pi(y|x)``).

The chapter's policy is a language model; in the exact tabular world it is one softmax per
prompt over a logits table ``z[X, Y]``:

    pi(y|x) = exp(z(x, y)) / sum_y' exp(z(x, y')).

Every objective of the project (the regularised objective of Stage 3, DPO and its
relatives) returns its gradient with respect to log-probabilities or probabilities; this
module pushes such a gradient through the softmax exactly, which is all a training loop
of the tabular world needs (see :mod:`rlhf_toy.bandit.train`). A logit of ``-inf`` is a
response the policy can never produce: its probability is exactly zero and stays zero
under every gradient step, as a zero of ``pi_ref`` does under the KL penalty.

:class:`TabularPolicy` is an immutable value (what training returns, and the frozen
reference); :class:`TrainableTabularPolicy` is the table being trained, updated in place by
an optimiser, and implements the policy protocol of :mod:`rlhf_toy.rl` (``sample``,
per-token ``logprobs`` and their backward, ``entropy``) for one-token responses.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._sampling import sample_rows
from rlhf_toy._validate import (
    MAX_SAMPLES,
    as_rng,
    check_distribution,
    check_index,
    check_int,
    check_mask,
    check_same_shape,
)
from rlhf_toy.kl import entropy as _entropy

__all__ = ["TabularPolicy", "TrainableTabularPolicy"]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """Exact row-wise ``z - logsumexp(z)`` of a table whose rows each have a finite entry."""
    z_max = z.max(axis=1, keepdims=True)  # (X, 1), finite: every row has a finite entry
    shifted = z - z_max  # (X, Y), <= 0, -inf stays -inf
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (X, Y)


def _check_logits(logits) -> np.ndarray:
    """A float64 copy of a valid logits table (finite or -inf, every row possible)."""
    z = np.array(logits, dtype=np.float64)  # a copy
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (X, Y), got shape {z.shape}")
    if np.any(np.isnan(z)) or np.any(z == np.inf):
        bad = np.argwhere(np.isnan(z) | (z == np.inf))[0]
        raise ValueError(
            f"logits must be finite or -inf, got {z[tuple(bad)]} at index "
            f"{tuple(int(i) for i in bad)}"
        )
    dead = np.all(z == -np.inf, axis=1)
    if np.any(dead):
        raise ValueError(
            f"logits row {int(np.argmax(dead))} is entirely -inf: "
            "a policy needs at least one possible response per prompt"
        )
    return z


def _check_grad(g, logits: np.ndarray, name: str) -> np.ndarray:
    """``g`` of the table's shape, finite on the support, zeroed off it."""
    g = np.asarray(g, dtype=np.float64)
    check_same_shape(g, logits, name, "logits")
    support = logits > -np.inf
    if not np.all(np.isfinite(g[support])):
        bad = np.argwhere(support & ~np.isfinite(g))[0]
        raise ValueError(
            f"{name} must be finite on the policy's support, got {g[tuple(bad)]} "
            f"at index {tuple(int(i) for i in bad)}"
        )
    return np.where(support, g, 0.0)


def _check_prompt_rows(prompts, n_prompts: int) -> np.ndarray:
    """Integer prompt indices of shape (B,) in ``[0, n_prompts)``."""
    x = check_index(prompts, "prompts", n_prompts, allow_empty=True,
                    size_name="the prompts of the policy")
    if x.ndim != 1:
        raise ValueError(f"prompts must have shape (B,), got shape {x.shape}")
    return x


def _check_rollout(prompts, responses, mask, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a batch of one-token responses: prompts (B,), responses (B, 1), mask (B, 1)."""
    n_prompts, n_responses = shape
    x = _check_prompt_rows(prompts, n_prompts)
    y = check_index(responses, "responses", n_responses, allow_empty=True,
                    size_name="the responses of the policy")
    if y.shape != (x.size, 1):
        raise ValueError(f"responses must have shape ({x.size}, 1) (one token per response "
                         f"in the tabular world), got shape {y.shape}")
    m = check_mask(mask, "mask", y.shape, binary=True, like_name="responses")
    return x, y, m


def _gather_logprobs(log_probs: np.ndarray, x, y, m) -> np.ndarray:
    """``log pi(y|x)`` per row, shape (B, 1), exactly 0 where the mask is 0."""
    lp = log_probs[x[:, None], y]  # (B, 1)
    return np.where(m > 0, lp, 0.0)


def _row_entropy(probs: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """``-sum_y pi log pi`` per row (``0 log 0 = 0``), shape (X,)."""
    return -np.sum(probs * np.where(probs > 0, log_probs, 0.0), axis=1)


class TabularPolicy:
    """A softmax policy ``pi(y|x) = softmax(z(x, .))_y`` over a logits table.

    Parameters
    ----------
    logits : array_like of shape (X, Y)
        The logits ``z``; finite or ``-inf`` (a response with probability exactly zero).
        Every row needs at least one finite entry; ``NaN`` and ``+inf`` are rejected.
        The array is copied and stored read-only: a policy never changes, training
        builds new ones.

    Raises
    ------
    ValueError
        If ``logits`` is not 2-D, contains ``NaN`` or ``+inf``, or has a row that is
        entirely ``-inf``.

    Notes
    -----
    Chapter, Stage 3 (the policy being fine-tuned). Logits are identified up to a
    per-row shift; :attr:`log_probs` is the log-softmax ``z - logsumexp(z)`` computed
    exactly in log space, so very peaked policies (logit gaps of 1e3) keep finite
    log-probabilities.

    Examples
    --------
    >>> pi = TabularPolicy([[0.0, np.log(3.0)]])
    >>> pi.probs
    array([[0.25, 0.75]])
    """

    def __init__(self, logits):
        self._set(_check_logits(logits))

    def _set(self, z: np.ndarray) -> None:
        """Store validated logits and their exact log-softmax and softmax."""
        z.setflags(write=False)
        self._logits = z
        log_probs = _log_softmax(z)  # (X, Y)
        log_probs.setflags(write=False)
        self._log_probs = log_probs
        probs = np.exp(log_probs)  # (X, Y); exactly 0 where z = -inf
        probs.setflags(write=False)
        self._probs = probs

    # ----------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------

    @classmethod
    def from_probs(cls, pi) -> TabularPolicy:
        """The policy whose probabilities are ``pi``: logits ``log pi`` (``-inf`` at zeros).

        Parameters
        ----------
        pi : array_like of shape (X, Y)
            A row-stochastic table (zeros allowed).

        Returns
        -------
        TabularPolicy

        Raises
        ------
        ValueError
            If ``pi`` is not a probability table of shape (X, Y).
        """
        pi = check_distribution(pi, "pi")
        if pi.ndim != 2:
            raise ValueError(f"pi must have shape (X, Y), got shape {pi.shape}")
        with np.errstate(divide="ignore"):
            return cls(np.log(pi))

    # ----------------------------------------------------------------------------------
    # the distribution
    # ----------------------------------------------------------------------------------

    @property
    def logits(self) -> np.ndarray:
        """The logits table ``z`` of shape (X, Y) (read-only)."""
        return self._logits

    @property
    def shape(self) -> tuple[int, int]:
        """``(X, Y)``: number of prompts and of responses."""
        return self._logits.shape

    @property
    def probs(self) -> np.ndarray:
        """``pi(y|x) = exp(z - logsumexp(z))``, shape (X, Y), rows summing to one."""
        return self._probs

    @property
    def log_probs(self) -> np.ndarray:
        """``log pi(y|x) = z - logsumexp(z)`` (log-softmax), shape (X, Y); ``-inf`` at zeros."""
        return self._log_probs

    @property
    def support(self) -> np.ndarray:
        """Boolean table (X, Y): the responses with a finite logit."""
        return self._logits > -np.inf

    def entropy(self) -> np.ndarray:
        """Shannon entropy ``H(pi(.|x)) = -sum_y pi log pi`` of each row, in nats, shape (X,)."""
        return _entropy(self._probs)

    def sample(self, x, rng) -> np.ndarray:
        """Draw ``y ~ pi(.|x)`` for each prompt index in ``x`` (vectorised).

        Parameters
        ----------
        x : array_like of int
            Prompt indices in ``[0, X)``, any shape.
        rng : numpy Generator or int
            Source of randomness (one uniform per draw, so the same seed gives the same
            draws, bit for bit).

        Returns
        -------
        ndarray of int64, shape of ``x``
            The sampled responses. A response of probability zero is never returned.

        Raises
        ------
        ValueError
            If ``x`` is not integer or is out of range.

        Notes
        -----
        Exact inverse-CDF sampling, one ``searchsorted`` per distinct prompt
        (:func:`rlhf_toy._sampling.sample_rows`, shared with the Bradley-Terry sampler).
        """
        x_arr = np.asarray(x)
        if x_arr.dtype == bool or not np.issubdtype(x_arr.dtype, np.integer):
            raise ValueError(f"x must be integer prompt indices, got dtype {x_arr.dtype}")
        n_prompts = self.shape[0]
        if x_arr.size and (x_arr.min() < 0 or x_arr.max() >= n_prompts):
            bad = x_arr.ravel()[np.flatnonzero((x_arr.ravel() < 0)
                                               | (x_arr.ravel() >= n_prompts))[0]]
            raise ValueError(f"x must be in [0, {n_prompts}), got {int(bad)}")
        rng = as_rng(rng)
        flat_x = x_arr.ravel().astype(np.int64)
        u = rng.random(flat_x.size)  # (N,) in [0, 1): one uniform per draw
        y = sample_rows(self._probs, flat_x, u)  # (N,)
        return y.reshape(x_arr.shape)

    # ----------------------------------------------------------------------------------
    # gradients through the softmax
    # ----------------------------------------------------------------------------------

    def logits_grad_from_logp(self, g) -> np.ndarray:
        """Gradient wrt the logits of a loss whose gradient wrt ``log pi`` is ``g``.

        Parameters
        ----------
        g : array_like of shape (X, Y)
            ``dL / d log pi(y|x)``. Entries off the support (``-inf`` logits) are ignored:
            those log-probabilities are constant.

        Returns
        -------
        ndarray of shape (X, Y)
            ``dL/dz(x, k) = g(x, k) - pi(k|x) sum_j g(x, j)``, zero off the support.

        Raises
        ------
        ValueError
            If ``g`` has the wrong shape or a non-finite entry on the support.

        Notes
        -----
        From ``d log pi_j / d z_k = [j = k] - pi_k``. DPO and its relatives return
        their gradients in this form (chapter, "DPO: Direct Preference Optimization").
        """
        g = _check_grad(g, self._logits, "g")
        return g - self._probs * g.sum(axis=1, keepdims=True)

    def logits_grad_from_probs(self, g) -> np.ndarray:
        """Gradient wrt the logits of a loss whose gradient wrt ``pi`` is ``g``.

        Parameters
        ----------
        g : array_like of shape (X, Y)
            ``dL / d pi(y|x)``; entries off the support are ignored.

        Returns
        -------
        ndarray of shape (X, Y)
            ``dL/dz(x, k) = pi(k|x) (g(x, k) - sum_j pi(j|x) g(x, j))``, zero off the
            support.

        Raises
        ------
        ValueError
            If ``g`` has the wrong shape or a non-finite entry on the support.

        Notes
        -----
        From ``d pi_j / d z_k = pi_j ([j = k] - pi_k)``. For the regularised objective
        of Stage 3, ``g = p(x) (r - beta (log(pi/pi_ref) + 1))`` and the constant ``1``
        drops out, giving ``p(x) pi (A - E_pi A)`` with ``A = r - beta log(pi/pi_ref)``.
        """
        g = _check_grad(g, self._logits, "g")
        p = self._probs
        return p * (g - (p * g).sum(axis=1, keepdims=True))

    # ----------------------------------------------------------------------------------
    # the reference side of the policy protocol (rlhf_toy.rl)
    # ----------------------------------------------------------------------------------

    def logprobs(self, prompts, responses, mask) -> np.ndarray:
        """Per-token ``log pi(y|x)`` of a batch of one-token responses (the protocol's call).

        What :mod:`rlhf_toy.rl` asks of a frozen reference policy. (:attr:`log_probs` is
        the whole table; this gathers the rows of a batch.)

        Parameters
        ----------
        prompts : array_like of int, shape (B,)
            Prompt index of each row (one row per response).
        responses : array_like of int, shape (B, 1)
            The response of each row, as a one-token sequence.
        mask : array_like of shape (B, 1)
            1 on response tokens, 0 on padding.

        Returns
        -------
        ndarray of shape (B, 1)
            ``log pi(responses | prompts)``, exactly 0 where ``mask == 0``.

        Raises
        ------
        ValueError
            On indices out of range, wrong shapes or a mask that is not 0/1.
        """
        x, y, m = _check_rollout(prompts, responses, mask, self.shape)
        return _gather_logprobs(self._log_probs, x, y, m)

    def __repr__(self) -> str:
        return f"TabularPolicy(shape={self.shape})"


class TrainableTabularPolicy:
    """A softmax table ``pi(y|x) = softmax(z(x, .))_y`` trained in place: the policy protocol.

    The sampled RL steps of :mod:`rlhf_toy.rl` need a policy whose parameters an optimiser
    updates in place (``AdamW(policy.params).step(grads)``); :class:`TabularPolicy` stays
    an immutable value (what training returns), and this class is the table being trained.
    :meth:`snapshot` freezes it into a :class:`TabularPolicy`.

    Parameters
    ----------
    logits : array_like of shape (X, Y)
        Initial logits ``z``; finite or ``-inf`` (a response the policy never produces:
        every gradient is zero there, so it stays impossible). Copied.

    Attributes
    ----------
    params : dict
        ``{"logits": z}``, the writeable ``(X, Y)`` float64 table the optimiser updates.

    Raises
    ------
    ValueError
        If ``logits`` is not a valid logits table (see :class:`TabularPolicy`).

    Notes
    -----
    A bandit response is a one-token sequence: :meth:`sample` returns responses of shape
    ``(B, 1)`` with a mask of ones. The backward of :meth:`logprobs` is exact:
    ``d log pi(y|x) / d z(x, k) = [k = y] - pi(k|x)``, so for a batch with upstream
    gradients ``g_i``,
    ``dz(x, k) = sum_{i: x_i = x} g_i ([k = y_i] - pi(k|x))``.
    The probabilities follow ``params`` (the optimiser moves them in place): they are
    recomputed whenever the logits differ from those they were last computed from;
    :meth:`logprobs_backward` uses the ones of the last :meth:`logprobs` call, as the
    protocol asks.

    Examples
    --------
    >>> pi = TrainableTabularPolicy([[0.0, np.log(3.0)]])
    >>> y, mask = pi.sample(np.array([0]), 4, rng=0)
    >>> y.shape, mask.tolist()
    ((4, 1), [[1.0], [1.0], [1.0], [1.0]])
    >>> lp = pi.logprobs(np.zeros(1, dtype=int), np.array([[1]]), np.ones((1, 1)))
    >>> pi.logprobs_backward(np.ones((1, 1)))["logits"]  # e_1 - pi
    array([[-0.25,  0.25]])
    """

    def __init__(self, logits):
        z = _check_logits(logits)
        self.params = {"logits": z}
        self._cache = None  # (x, y, m, probs of the rows) of the last logprobs call
        self._softmax = None  # (logits copy, log-softmax, softmax) last computed

    def _current(self) -> tuple[np.ndarray, np.ndarray]:
        """``(log_probs, probs)`` of the current logits, recomputed only if they changed."""
        z = self.params["logits"]
        if self._softmax is not None and np.array_equal(self._softmax[0], z):
            return self._softmax[1], self._softmax[2]
        log_probs = _log_softmax(z)
        probs = np.exp(log_probs)
        for a in (log_probs, probs):
            a.setflags(write=False)
        self._softmax = (z.copy(), log_probs, probs)
        return log_probs, probs

    @classmethod
    def from_probs(cls, pi) -> TrainableTabularPolicy:
        """The trainable policy starting at ``pi``: logits ``log pi`` (``-inf`` at zeros)."""
        return cls(TabularPolicy.from_probs(pi).logits)

    # the exact distribution (recomputed from params) -----------------------------------

    @property
    def logits(self) -> np.ndarray:
        """The live logits table ``params["logits"]`` of shape (X, Y)."""
        return self.params["logits"]

    @property
    def shape(self) -> tuple[int, int]:
        """``(X, Y)``: number of prompts and of responses."""
        return self.params["logits"].shape

    @property
    def log_probs(self) -> np.ndarray:
        """``log pi(y|x)`` for the whole table, shape (X, Y), from the current logits
        (read-only)."""
        return self._current()[0]

    @property
    def probs(self) -> np.ndarray:
        """``pi(y|x)`` for the whole table, shape (X, Y), from the current logits
        (read-only)."""
        return self._current()[1]

    @property
    def support(self) -> np.ndarray:
        """Boolean table (X, Y): the responses with a finite logit."""
        return self.params["logits"] > -np.inf

    def snapshot(self) -> TabularPolicy:
        """An immutable :class:`TabularPolicy` with the current logits (validated).

        Raises
        ------
        ValueError
            If training has made the logits invalid (NaN or ``+inf``).
        """
        return TabularPolicy(self.params["logits"])

    def logits_grad_from_logp(self, g) -> np.ndarray:
        """As :meth:`TabularPolicy.logits_grad_from_logp`, at the current logits."""
        g = _check_grad(g, self.params["logits"], "g")
        return g - self._current()[1] * g.sum(axis=1, keepdims=True)

    def logits_grad_from_probs(self, g) -> np.ndarray:
        """As :meth:`TabularPolicy.logits_grad_from_probs`, at the current logits."""
        g = _check_grad(g, self.params["logits"], "g")
        p = self._current()[1]
        return p * (g - (p * g).sum(axis=1, keepdims=True))

    # the policy protocol -----------------------------------------------------------------

    def sample(self, prompts, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """``n`` responses per prompt from the current policy, rows prompt-major.

        Parameters
        ----------
        prompts : array_like of int, shape (B,)
            Prompt indices.
        n : int
            Responses per prompt (>= 1).
        rng : numpy Generator or int
            One uniform per draw (exact inverse-CDF sampling).

        Returns
        -------
        responses : ndarray of int64, shape (B * n, 1)
            Row ``i * n + j`` is sample ``j`` of prompt ``prompts[i]``.
        mask : ndarray of float64, shape (B * n, 1)
            All ones (a one-token response has no padding).

        Raises
        ------
        ValueError
            On bad ``prompts`` or ``n`` (``len(prompts) * n`` at most
            :data:`rlhf_toy._validate.MAX_SAMPLES`).
        """
        x = _check_prompt_rows(prompts, self.shape[0])
        n = check_int(n, "n", maximum=max(1, MAX_SAMPLES // max(1, x.size)))
        rng = as_rng(rng)
        rows = np.repeat(x, n)  # (B*n,)
        u = rng.random(rows.size)  # (B*n,)
        y = sample_rows(self._current()[1], rows, u)  # (B*n,)
        return y[:, None], np.ones((rows.size, 1))

    def logprobs(self, prompts, responses, mask) -> np.ndarray:
        """Per-token ``log pi(y|x)``, shape (B, 1), 0 off the mask; keeps what backward needs.

        Parameters
        ----------
        prompts : array_like of int, shape (B,)
            Prompt of each row (callers ``np.repeat`` the prompts of a group).
        responses : array_like of int, shape (B, 1)
        mask : array_like of shape (B, 1)

        Returns
        -------
        ndarray of shape (B, 1)

        Raises
        ------
        ValueError
            On indices out of range, wrong shapes or a mask that is not 0/1.
        """
        x, y, m = _check_rollout(prompts, responses, mask, self.shape)
        log_probs, probs = self._current()  # (X, Y)
        self._cache = (x, y, m, probs)
        return _gather_logprobs(log_probs, x, y, m)

    def logprobs_backward(self, dlogp) -> dict[str, np.ndarray]:
        """Gradient of ``sum(dlogp * logp)`` wrt ``params`` for the last :meth:`logprobs` call.

        Parameters
        ----------
        dlogp : array_like of shape (B, 1)
            Upstream gradient per token; entries off the mask are ignored.

        Returns
        -------
        dict
            ``{"logits": dz}`` with ``dz`` of shape (X, Y), zero off the support.

        Raises
        ------
        RuntimeError
            If :meth:`logprobs` has not been called.
        ValueError
            If ``dlogp`` has the wrong shape or a non-finite entry on the mask.
        """
        if self._cache is None:
            raise RuntimeError("logprobs_backward needs a logprobs call first")
        x, y, m, probs = self._cache
        g = np.asarray(dlogp, dtype=np.float64)
        if g.shape != m.shape:
            raise ValueError(f"dlogp must have the shape of the last logprobs {m.shape}, "
                             f"got {g.shape}")
        g = np.where(m > 0, g, 0.0)[:, 0]  # (B,)
        if not np.all(np.isfinite(g)):
            raise ValueError(f"dlogp must be finite, got {g[~np.isfinite(g)][0]}")
        n_prompts, n_responses = probs.shape
        # sum_i g_i e_{y_i} at (x_i, y_i), minus pi(.|x) times sum_{i: x_i = x} g_i
        dz = np.bincount(x * n_responses + y[:, 0], weights=g,
                         minlength=n_prompts * n_responses).reshape(n_prompts, n_responses)
        dz -= probs * np.bincount(x, weights=g, minlength=n_prompts)[:, None]
        return {"logits": dz}

    def entropy(self, prompts, responses, mask) -> np.ndarray:
        """Entropy of ``pi(.|x)`` at each response position, shape (B, 1), 0 off the mask."""
        x, _, m = _check_rollout(prompts, responses, mask, self.shape)
        log_probs, probs = self._current()
        h = _row_entropy(probs, log_probs)  # (X,)
        return np.where(m > 0, h[x][:, None], 0.0)

    def __repr__(self) -> str:
        return f"TrainableTabularPolicy(shape={self.shape})"
