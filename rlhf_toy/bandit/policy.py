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
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._sampling import sample_rows
from rlhf_toy._validate import as_rng, check_distribution, check_same_shape
from rlhf_toy.kl import entropy as _entropy

__all__ = ["TabularPolicy"]


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
        self._set(z)

    def _set(self, z: np.ndarray) -> None:
        """Store validated logits and their exact log-softmax and softmax."""
        z.setflags(write=False)
        self._logits = z
        z_max = z.max(axis=1, keepdims=True)  # (X, 1), finite: every row has a finite entry
        shifted = z - z_max  # (X, Y), <= 0, -inf stays -inf
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (X, Y)
        log_probs.setflags(write=False)
        self._log_probs = log_probs
        probs = np.exp(log_probs)  # (X, Y); exactly 0 where z = -inf
        probs.setflags(write=False)
        self._probs = probs

    @classmethod
    def _trusted(cls, z: np.ndarray) -> TabularPolicy:
        """Wrap logits already known to be valid (training loops), skipping the checks."""
        policy = cls.__new__(cls)
        policy._set(np.array(z, dtype=np.float64))
        return policy

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

    def _check_grad(self, g, name: str) -> np.ndarray:
        g = np.asarray(g, dtype=np.float64)
        check_same_shape(g, self._logits, name, "logits")
        support = self.support
        if not np.all(np.isfinite(g[support])):
            bad = np.argwhere(support & ~np.isfinite(g))[0]
            raise ValueError(
                f"{name} must be finite on the policy's support, got {g[tuple(bad)]} "
                f"at index {tuple(int(i) for i in bad)}"
            )
        return np.where(support, g, 0.0)

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
        g = self._check_grad(g, "g")
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
        g = self._check_grad(g, "g")
        p = self._probs
        return p * (g - (p * g).sum(axis=1, keepdims=True))

    def __repr__(self) -> str:
        return f"TabularPolicy(shape={self.shape})"
