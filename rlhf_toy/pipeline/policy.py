"""The GPT behind the policy protocol: policy, critic and reward model of the sequence world.

The chapter's RL algorithms (Stage 3 of "The RLHF Pipeline") are written once against a
small protocol: ``sample``, per-token ``logprobs`` and their backward, ``entropy``; a
critic offers ``values`` and their backward. These adapters give a :class:`~rlhf_toy.gpt.GPT`
that protocol. A prompt batch is an int array ``(B, P)`` of one length (no left padding);
responses are right-padded ``(B, T)`` with a mask that is 1 on response tokens (EOS
included) and 0 on padding. Position ``t`` of a response is predicted from the hidden state
at ``P - 1 + t`` of the concatenation ``[prompt, response]``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import check_int, check_mask, check_positive
from rlhf_toy.gpt import GPT, enumerate_continuations, sample
from rlhf_toy.gpt.model import check_allowed_tokens, check_token_id

__all__ = ["GPTCritic", "GPTPolicy", "GPTRewardModel", "last_token_positions"]


def _check_model(model, name="model") -> GPT:
    if not isinstance(model, GPT):
        raise TypeError(f"{name} must be a GPT, got {type(model).__name__}")
    return model


def _concat(model, prompts, responses, mask):
    """Validated ``(tokens (B, P + T), mask (B, T), P)``."""
    prompts = model.check_tokens(prompts, name="prompts")
    responses = model.check_tokens(responses, name="responses")
    if responses.shape[0] != prompts.shape[0]:
        raise ValueError(
            f"responses must have one row per prompt row ({prompts.shape[0]}), "
            f"got {responses.shape[0]}"
        )
    mask = check_mask(mask, "mask", responses.shape, binary=True,
                      like_name="responses").astype(model.dtype, copy=False)
    tokens = np.concatenate([prompts, responses], axis=1)  # (B, P + T)
    if tokens.shape[1] > model.config.n_ctx:
        raise ValueError(
            f"prompt + response length {tokens.shape[1]} exceeds n_ctx={model.config.n_ctx}"
        )
    return tokens, mask.astype(model.dtype), prompts.shape[1]


def last_token_positions(mask, prompt_len: int) -> np.ndarray:
    """Position in ``[prompt, response]`` of each row's last real response token, (B,).

    The last index with ``mask == 1`` (the EOS when there is one; never a PAD); a row
    with an empty mask gives the prompt's last token, ``prompt_len - 1``.

    Parameters
    ----------
    mask : ndarray of shape (B, L)
        1 on the response's real tokens.
    prompt_len : int
        ``P``.

    Returns
    -------
    ndarray of intp of shape (B,)
    """
    mask = np.asarray(mask)
    T = mask.shape[1]
    has = mask.any(axis=1)  # (B,)
    last = T - 1 - np.argmax(mask[:, ::-1] != 0, axis=1)  # (B,)
    return np.where(has, prompt_len + last, prompt_len - 1).astype(np.intp)


class GPTPolicy:
    """A GPT as a policy over responses: the protocol of ``rlhf_toy.rl``.

    Parameters
    ----------
    model : GPT
    max_new_tokens : int >= 1
        ``T``, the response length of :meth:`sample`.
    allowed_tokens : ndarray of int, shape (K,), optional
        The response alphabet (EOS included); other tokens have probability 0 in sampling,
        log-probs and entropies alike.
    eos_token, pad_token : int, optional
        A response ends at its first EOS; positions after it hold ``pad_token``, mask 0.
    temperature : float > 0, default 1.0
        ``pi(v) ∝ exp(z_v / temperature)`` in sampling, log-probs and entropies alike.
    prompt_len : int, optional
        If given, prompts must have this length.
    frozen : bool, default False
        A policy that is never trained (a reference ``pi_ref``): :meth:`logprobs` keeps no
        backward state (the model's cache is left as it was); :meth:`logprobs_backward`
        raises.

    Notes
    -----
    :meth:`logprobs` computes each distinct prompt of a batch once and continues every row
    from it (``GPT.logprobs(..., shared_prefix=P)``): the same numbers up to float rounding,
    and about half the work for a group of responses to one prompt (GRPO, RLOO, DPO's pairs).

    Attributes
    ----------
    params : dict of str to ndarray
        ``model.params`` itself (an optimiser updates it in place).
    """

    def __init__(
        self,
        model,
        max_new_tokens,
        allowed_tokens=None,
        eos_token=None,
        pad_token=None,
        temperature=1.0,
        prompt_len=None,
        frozen=False,
    ):
        self.model = _check_model(model)
        V = model.config.vocab_size
        self.max_new_tokens = check_int(max_new_tokens, "max_new_tokens")
        self.allowed_tokens = check_allowed_tokens(allowed_tokens, V)
        self.eos_token = check_token_id(eos_token, "eos_token", V)
        self.pad_token = check_token_id(pad_token, "pad_token", V)
        if self.eos_token is not None and self.allowed_tokens is not None:
            if self.eos_token not in self.allowed_tokens:
                raise ValueError(f"eos_token {self.eos_token} must be one of allowed_tokens")
        self.temperature = check_positive(temperature, "temperature")
        self.prompt_len = None if prompt_len is None else check_int(prompt_len, "prompt_len")
        if not isinstance(frozen, bool):
            raise TypeError(f"frozen must be a bool, got {frozen!r}")
        self.frozen = frozen
        self._mask = None

    @property
    def params(self) -> dict:
        """The model's parameters (updated in place by the optimiser)."""
        return self.model.params

    def _check_prompts(self, prompts):
        prompts = self.model.check_tokens(prompts, name="prompts")
        if self.prompt_len is not None and prompts.shape[1] != self.prompt_len:
            raise ValueError(f"prompts must have length {self.prompt_len}, got {prompts.shape[1]}")
        return prompts

    def sample(self, prompts, n, rng):
        """``n`` responses per prompt, prompt-major rows: ``(responses (B n, T), mask)``."""
        prompts = self._check_prompts(prompts)
        n = check_int(n, "n")
        res = sample(
            self.model,
            prompts,
            self.max_new_tokens,
            rng,
            temperature=self.temperature,
            eos_token=self.eos_token,
            allowed_tokens=self.allowed_tokens,
            pad_token=self.pad_token,
            n_responses=n,
        )
        return res.response.copy(), res.mask

    def logprobs(self, prompts, responses, mask) -> np.ndarray:
        """``log pi(y_t | x, y_<t)``, shape (B, T), exactly 0 where ``mask == 0``."""
        tokens, mask, P = _concat(self.model, self._check_prompts(prompts), responses, mask)
        logp = self.model.logprobs(
            tokens, self.allowed_tokens, self.temperature, shared_prefix=P,
            keep_cache=not self.frozen,
        )[:, P - 1 :]  # (B, T); each distinct prompt computed once  # fmt: skip
        if np.any(np.isneginf(logp) & (mask != 0)):
            raise ValueError("responses hold a token outside allowed_tokens under the mask")
        self._mask, self._prompt_len = mask, P
        return np.where(mask != 0, logp, 0.0).astype(self.model.dtype)  # (B, T)

    def logprobs_backward(self, dlogp) -> dict:
        """Gradient of ``sum(dlogp * logp)`` for the last :meth:`logprobs` call, keyed like
        ``params``; ``dlogp`` (B, T) is zeroed off the mask."""
        if self.frozen:
            raise RuntimeError("a frozen policy keeps no backward state (frozen=True)")
        if self._mask is None:
            raise RuntimeError("logprobs_backward needs policy.logprobs(...) first")
        mask, P = self._mask, self._prompt_len
        dlogp = np.asarray(dlogp, dtype=self.model.dtype)
        if dlogp.shape != mask.shape:
            raise ValueError(f"dlogp must have shape {mask.shape}, got {dlogp.shape}")
        if not np.all(np.isfinite(dlogp)):
            raise ValueError("dlogp must be finite")
        B, T = mask.shape
        full = np.zeros((B, P + T - 1), dtype=self.model.dtype)  # (B, P + T - 1)
        full[:, P - 1 :] = dlogp * mask
        return self.model.logprobs_backward(full)

    def entropy(self, prompts, responses, mask) -> np.ndarray:
        """Entropy of the next-token distribution at each response position, (B, T), 0 off
        the mask (over ``allowed_tokens``, at ``temperature``)."""
        tokens, mask, P = _concat(self.model, self._check_prompts(prompts), responses, mask)
        H = self.model.entropy(tokens[:, :-1], self.allowed_tokens, self.temperature)
        return np.where(mask != 0, H[:, P - 1 :], 0.0).astype(self.model.dtype)  # (B, T)

    def enumerate(self, prompts):
        """Every response of each prompt with its exact log-prob
        (:func:`rlhf_toy.gpt.enumerate_continuations` with this policy's options)."""
        return enumerate_continuations(
            self.model,
            self._check_prompts(prompts),
            self.max_new_tokens,
            self.allowed_tokens,
            self.eos_token,
            self.pad_token,
            self.temperature,
        )


class GPTCritic:
    """PPO's value function on a GPT's value head: ``V(x, y_<t)`` at each response position.

    ``values[:, t]`` is the value head on the hidden state at ``P - 1 + t``, the state from
    which response token ``t`` is chosen.

    Parameters
    ----------
    model : GPT
        With a ``"value"`` head.
    """

    def __init__(self, model):
        self.model = _check_model(model)
        if "value" not in model.heads:
            raise ValueError("model must have a value head (GPT(..., heads=('value',)))")
        self._mask = None

    @property
    def params(self) -> dict:
        """The model's parameters (updated in place by the optimiser)."""
        return self.model.params

    def values(self, prompts, responses, mask) -> np.ndarray:
        """Values, shape (B, T), 0 where ``mask == 0``."""
        tokens, mask, P = _concat(self.model, prompts, responses, mask)
        self.model.forward(tokens[:, :-1])  # the last token predicts nothing
        v = self.model.values()[:, P - 1 :]  # (B, T)
        self._mask, self._prompt_len = mask, P
        return np.where(mask != 0, v, 0.0).astype(self.model.dtype)

    def values_backward(self, dvalues) -> dict:
        """Gradient of ``sum(dvalues * values)`` for the last :meth:`values` call."""
        if self._mask is None:
            raise RuntimeError("values_backward needs critic.values(...) first")
        mask = self._mask
        dvalues = np.asarray(dvalues, dtype=self.model.dtype)
        if dvalues.shape != mask.shape:
            raise ValueError(f"dvalues must have shape {mask.shape}, got {dvalues.shape}")
        if not np.all(np.isfinite(dvalues)):
            raise ValueError("dvalues must be finite")
        B, T = mask.shape
        P = self._prompt_len
        full = np.zeros((B, P + T - 1), dtype=self.model.dtype)  # (B, P + T - 1)
        full[:, P - 1 :] = dvalues * mask
        return self.model.backward(dvalues=full)


class GPTRewardModel:
    """A reward model ``r_phi(x, y)`` on a GPT's reward head.

    The head is read at the response's last real token (its EOS when it has one, never a
    PAD), as in the chapter's Stage 2.

    Parameters
    ----------
    model : GPT
        With a ``"reward"`` head.
    """

    def __init__(self, model):
        self.model = _check_model(model)
        if "reward" not in model.heads:
            raise ValueError("model must have a reward head (GPT(..., heads=('reward',)))")
        self._ready = False

    @property
    def params(self) -> dict:
        """The model's parameters (updated in place by the optimiser)."""
        return self.model.params

    def score(self, prompts, responses, mask) -> np.ndarray:
        """``r_phi(x, y)`` per row, shape (B,)."""
        tokens, mask, P = _concat(self.model, prompts, responses, mask)
        self.model.forward(tokens)
        self._ready = True
        return self.model.rewards(last_token_positions(mask, P))

    def score_backward(self, dscore) -> dict:
        """Gradient of ``sum(dscore * score)`` for the last :meth:`score` call."""
        if not self._ready:
            raise RuntimeError("score_backward needs reward_model.score(...) first")
        dscore = np.asarray(dscore, dtype=self.model.dtype)
        if not np.all(np.isfinite(dscore)):
            raise ValueError("dscore must be finite")
        return self.model.backward(drewards=dscore)
