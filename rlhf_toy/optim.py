"""Optimisation shared by both worlds: AdamW, global-norm clipping, a learning-rate schedule.

These are the pieces every stage of the chapter's pipeline uses to move the policy
(supervised fine-tuning, reward-model fitting, PPO / DPO / GRPO updates): the gradient of
whatever objective is pushed through the model's backward pass, clipped to a global norm,
and applied by AdamW (Loshchilov & Hutter, 2019) with the warmup-then-cosine schedule of
GPT-2 / nanoGPT.

The optimiser works on plain ``dict[str, np.ndarray]`` parameters and gradients with the
same keys (``model.params`` and the dict returned by ``model.backward``), and updates the
parameter arrays *in place*, so the model sees the new values without any copying.
"""

from __future__ import annotations

import math

import numpy as np

from rlhf_toy._validate import (
    MAX_STEPS,
    ArgumentTypeError,
    NonFiniteInputError,
    check_float,
    check_int,
    check_nonnegative,
    check_positive,
)

__all__ = ["AdamW", "clip_grad_norm", "lr_schedule"]


def _check_grads(grads, params: dict[str, np.ndarray]) -> None:
    """Raise unless ``grads`` has exactly the keys and shapes of ``params``."""
    if not isinstance(grads, dict):
        raise TypeError(f"grads must be a dict of arrays, got {type(grads).__name__}")
    missing = [k for k in params if k not in grads]
    if missing:
        raise ValueError(f"grads is missing the parameter(s) {missing}")
    extra = [k for k in grads if k not in params]
    if extra:
        raise ValueError(f"grads has key(s) {extra} that are not parameters")
    for name, p in params.items():
        g = grads[name]
        if np.shape(g) != p.shape:
            raise ValueError(
                f"grads[{name!r}] must have the shape of its parameter {p.shape}, got {np.shape(g)}"
            )


class AdamW:
    r"""Adam with decoupled weight decay, updating a dict of arrays in place.

    Parameters
    ----------
    params : dict of str to ndarray
        The parameters to optimise, e.g. ``model.params``. The arrays themselves are
        updated in place by :meth:`step`; they must be floating point and writeable.
    lr : float, default 3e-4
        Learning rate :math:`\eta` (>= 0). :meth:`step` may override it per step, which is
        how :func:`lr_schedule` is applied.
    betas : tuple of float, default (0.9, 0.95)
        Decay rates :math:`(\beta_1, \beta_2)` of the first and second moments, each in
        ``[0, 1)``. ``0.95`` for :math:`\beta_2` is GPT-2 / nanoGPT's choice for small
        batches.
    eps : float, default 1e-8
        :math:`\epsilon` added to :math:`\sqrt{\hat v}` (> 0).
    weight_decay : float, default 0.1
        Decoupled weight decay :math:`\lambda` (>= 0), applied only to parameters with
        ``ndim >= 2`` (the matrices and embeddings); biases and LayerNorm gains and
        shifts are never decayed.

    Attributes
    ----------
    m, v : dict of str to ndarray
        First and second moment estimates, same keys, shapes and dtypes as ``params``.
    t : int
        Number of steps taken so far.

    Raises
    ------
    ValueError
        If a hyper-parameter is out of range or a parameter is not a floating array.
    TypeError
        If ``params`` is not a dict.

    See Also
    --------
    clip_grad_norm : clip the gradients to a global L2 norm before ``step``.
    lr_schedule : the warmup-then-cosine learning rate to pass to ``step``.

    Notes
    -----
    At step :math:`t = 1, 2, \dots`, with gradient :math:`g_t` of parameter :math:`\theta`:

    .. math::

        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \\
        \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t), \\
        \theta_t &= \theta_{t-1} - \eta \lambda \theta_{t-1}
                   - \eta \, \hat m_t / (\sqrt{\hat v_t} + \epsilon),

    with :math:`\lambda = 0` for parameters of fewer than two dimensions. The decay term
    uses :math:`\theta_{t-1}` (it is applied first, as in PyTorch's ``AdamW``) and is not
    rescaled by the adaptive denominator: that is what *decoupled* means, and it is why
    AdamW's decay is a true shrinkage towards zero rather than an L2 penalty.

    The moments are kept in each parameter's dtype (float32 for the GPT by default), in one
    flat buffer per dtype (``m`` and ``v`` hold views of it). A step copies the gradients
    into a flat buffer and runs the update as a fixed sequence of in-place numpy operations
    over all parameters at once, so it allocates nothing and costs a dozen numpy calls
    rather than a dozen per parameter; every element sees the same operations as in a
    per-parameter loop, so the result is the same to the last bit. Gradients are not
    checked for NaN here; the training loops do that (``check_finite_grads``) before
    stepping.

    References
    ----------
    Kingma & Ba (2015), *Adam: A Method for Stochastic Optimization*.
    Loshchilov & Hutter (2019), *Decoupled Weight Decay Regularization*.

    Examples
    --------
    >>> import numpy as np
    >>> params = {"w": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)}
    >>> opt = AdamW(params, lr=0.1, weight_decay=0.0)
    >>> opt.step({"w": np.ones((2, 2), np.float32), "b": -np.ones(2, np.float32)})
    >>> params["w"][0, 0], params["b"][0]  # first step moves each entry by ~lr
    (np.float32(0.9), np.float32(0.1))
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
    ) -> None:
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        if not params:
            raise ValueError("params must contain at least one array, got an empty dict")
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise ValueError(
                    f"params[{name!r}] must be a floating numpy array, got "
                    f"{getattr(p, 'dtype', type(p).__name__)}"
                )
            if not p.flags.writeable:
                raise ValueError(f"params[{name!r}] must be writeable to be updated in place")
        self.lr = check_nonnegative(lr, "lr")
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of floats in [0, 1), got {betas!r}") from None
        for b, nm in ((b1, "betas[0]"), (b2, "betas[1]")):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{nm} must be in [0, 1), got {b!r}")
        self.betas = (b1, b2)
        self.eps = check_positive(eps, "eps")
        self.weight_decay = check_nonnegative(weight_decay, "weight_decay")
        self.params = params
        # one flat group per dtype: its names and buffers g, m, v, update; m, v and update
        # are also seen per parameter, in its shape
        self._groups = []
        views = {}  # name -> (m, v, update) views
        for dtype in dict.fromkeys(p.dtype for p in params.values()):
            names = [k for k, p in params.items() if p.dtype == dtype]
            ends = np.cumsum([params[k].size for k in names]).tolist()
            g, m, v, upd = np.zeros((4, ends[-1]), dtype=dtype)
            self._groups.append((names, g, m, v, upd))
            for k, a, b in zip(names, [0, *ends[:-1]], ends, strict=True):
                views[k] = tuple(buf[a:b].reshape(params[k].shape) for buf in (m, v, upd))
        self.m = {k: views[k][0] for k in params}
        self.v = {k: views[k][1] for k in params}
        self._update = {k: views[k][2] for k in params}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray], lr: float | None = None) -> None:
        """Apply one AdamW update to every parameter, in place.

        Parameters
        ----------
        grads : dict of str to ndarray
            Gradient of the loss for each parameter: exactly the keys and shapes of
            ``params`` (the dict returned by ``model.backward``). Not modified.
        lr : float, optional
            Learning rate for this step (>= 0); defaults to the constructor's ``lr``.

        Raises
        ------
        ValueError
            If ``grads`` does not match ``params`` or ``lr`` is negative or not finite.
        TypeError
            If ``grads`` is not a dict.
        """
        _check_grads(grads, self.params)
        lr = self.lr if lr is None else check_nonnegative(lr, "lr")
        b1, b2 = self.betas
        self.t += 1
        # bias corrections folded into two scalars:
        #   lr * m_hat / (sqrt(v_hat) + eps) = step_size * m / (sqrt(v) / sqrt(bc2) + eps)
        step_size = lr / (1.0 - b1**self.t)
        inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - b2**self.t)
        decay = 1.0 - lr * self.weight_decay
        for names, g, m, v, tmp in self._groups:
            np.concatenate([np.ravel(grads[k]) for k in names], out=g)  # all gradients, flat
            # m = b1 m + (1 - b1) g
            np.multiply(g, 1.0 - b1, out=tmp)
            m *= b1
            m += tmp
            # v = b2 v + (1 - b2) g^2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v *= b2
            v += tmp
            # tmp = step_size * m / (sqrt(v / bc2) + eps)
            np.sqrt(v, out=tmp)
            tmp *= inv_sqrt_bc2
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
        for name, p in self.params.items():
            if p.ndim >= 2 and decay != 1.0:
                p *= decay  # decoupled weight decay, matrices only
            p -= self._update[name]


def clip_grad_norm(
    grads: dict[str, np.ndarray], max_norm: float, error_if_nonfinite: bool = True
) -> float:
    r"""Scale all gradients in place so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of str to ndarray
        Gradients (e.g. from ``model.backward``); modified in place when clipped.
    max_norm : float
        Largest allowed global norm (> 0).
    error_if_nonfinite : bool, default True
        Raise :class:`FloatingPointError` if the norm is NaN or infinite; otherwise
        return it and leave the gradients untouched.

    Returns
    -------
    float
        The global norm *before* clipping (what training logs call ``grad_norm``).

    Raises
    ------
    ValueError
        If ``max_norm`` is not a positive finite number or a gradient is not a real array
        (then a ``TypeError`` too).
    FloatingPointError
        If the norm is not finite and ``error_if_nonfinite`` (also a ``ValueError``: the
        gradients are a bad argument).

    Notes
    -----
    With :math:`\|g\| = \sqrt{\sum_k \sum_i g_{k,i}^2}` over all tensors :math:`k`, every
    gradient is multiplied by :math:`\min(1, \text{max\_norm} / \|g\|)`: the direction of
    the full gradient is kept and only its length is capped. This is the clipping of
    GPT-2 / nanoGPT (``max_norm = 1``) and of most RLHF implementations.

    Examples
    --------
    >>> import numpy as np
    >>> g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    >>> clip_grad_norm(g, 1.0)
    5.0
    >>> g["a"], g["b"]
    (array([0.6, 0. ]), array([[0.8]]))
    """
    max_norm = check_positive(max_norm, "max_norm")
    if not isinstance(grads, dict):
        raise TypeError(f"grads must be a dict of arrays, got {type(grads).__name__}")
    norms = []
    for name, g in grads.items():
        if not isinstance(g, np.ndarray):
            raise ArgumentTypeError(
                f"grads[{name!r}] must be a numpy array, got {type(g).__name__}")
        if g.dtype.kind not in "fiu":
            raise ArgumentTypeError(
                f"grads[{name!r}] must hold real numbers, got dtype {g.dtype}")
        norms.append(_l2_norm(g.reshape(-1)))
    norm = _l2_norm(np.array(norms, dtype=np.float64)) if norms else 0.0
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise NonFiniteInputError(f"grads: gradient norm is {norm}; cannot clip")
        return norm
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


def _l2_norm(flat: np.ndarray) -> float:
    """``sqrt(sum(flat^2))`` as a float64, without overflow for any finite entries.

    The fast path is one dot product in the array's dtype; if its sum of squares
    overflows (a float32 gradient of 1e20 has a square of 1e40), the entries are scaled by
    their largest magnitude first: ``||g|| = m ||g / m||``. NaN stays NaN, inf stays inf.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is handled below
        sq = float(np.dot(flat, flat)) if flat.size else 0.0
    if math.isfinite(sq):
        return math.sqrt(sq)
    m = float(np.max(np.abs(flat)))
    if not math.isfinite(m):  # a NaN or inf entry: the norm is not finite
        return float(np.sum(np.abs(flat.astype(np.float64))))  # nan if any NaN, else inf
    scaled = flat.astype(np.float64) / m  # entries in [-1, 1]
    return m * math.sqrt(float(np.dot(scaled, scaled)))


def lr_schedule(
    step: int,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
) -> float:
    r"""Learning rate at ``step``: linear warmup, then cosine decay to ``min_lr``.

    Parameters
    ----------
    step : int
        Zero-based index of the optimisation step, in ``[0, 10**9]``. Steps past
        ``total_steps`` get ``min_lr``.
    lr : float
        Peak learning rate (> 0), reached at the end of warmup.
    total_steps : int
        Number of steps of the run, in ``[1, 10**9]``; the cosine reaches ``min_lr`` at
        ``step == total_steps``, one past the last step.
    warmup_steps : int, default 0
        Length of the linear warmup, ``0 <= warmup_steps <= total_steps``.
    min_lr : float, default 0.0
        Floor of the decay, ``0 <= min_lr <= lr``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On a negative or non-integer step, or inconsistent hyper-parameters.

    Notes
    -----
    With :math:`W` warmup steps and :math:`S` total steps (nanoGPT's schedule):

    .. math::

        \eta(s) = \begin{cases}
            \eta_{\max} \, (s + 1) / W & s < W, \\
            \eta_{\min} + \tfrac12 (\eta_{\max} - \eta_{\min})
                \left(1 + \cos \pi \tfrac{s - W}{S - W}\right) & W \le s < S, \\
            \eta_{\min} & s \ge S.
        \end{cases}

    The rate is non-decreasing during warmup, equals :math:`\eta_{\max}` at
    :math:`s = W - 1` and :math:`s = W`, and is non-increasing afterwards.

    Examples
    --------
    >>> [round(lr_schedule(s, lr=1.0, total_steps=6, warmup_steps=2), 3) for s in range(7)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    step = check_int(step, "step", minimum=0, maximum=MAX_STEPS)
    lr = check_positive(lr, "lr")
    total_steps = check_int(total_steps, "total_steps", minimum=1, maximum=MAX_STEPS)
    warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0, maximum=MAX_STEPS)
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps must be <= total_steps ({total_steps}), got {warmup_steps}")
    min_lr = check_float(min_lr, "min_lr")
    if not 0.0 <= min_lr <= lr:
        raise ValueError(f"min_lr must be in [0, lr={lr}], got {min_lr!r}")
    if step < warmup_steps:
        return lr * ((step + 1) / warmup_steps)
    if step >= total_steps:
        return min_lr
    ratio = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (lr - min_lr) * (0.5 * (1.0 + math.cos(math.pi * ratio)))
