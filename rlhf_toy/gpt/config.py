"""The shape of the numpy GPT-2: its config and the one ordered list of its parameters.

The sequence world of the chapter uses one architecture for policy, critic and reward
model; what differs between them is the optional scalar heads. Checkpoints, the model and
the optimiser all read names and shapes from :func:`param_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_int
from .layers import block_param_spec

__all__ = ["HEADS", "GPTConfig", "check_dtype", "check_heads", "param_spec"]

#: Optional scalar heads on the final hidden state, in parameter-spec order.
HEADS = ("value", "reward")


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-2: the five numbers of its ``config.json``.

    Raises
    ------
    ValueError
        If a field is not a positive integer, or ``n_embd`` is not a multiple of ``n_head``.
    """

    vocab_size: int  # V: number of token ids, tokens live in [0, V)
    n_ctx: int  # longest sequence (prompt + response); the number of learned positions
    n_embd: int  # C: width of the residual stream
    n_layer: int  # L: number of transformer blocks
    n_head: int  # NH: attention heads per block; head size hs = C // NH

    def __post_init__(self):
        for name in ("vocab_size", "n_ctx", "n_embd", "n_layer", "n_head"):
            check_int(getattr(self, name), name)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd must be divisible by n_head, got n_embd={self.n_embd} "
                f"and n_head={self.n_head}"
            )

    @property
    def head_size(self) -> int:
        """``hs = n_embd // n_head``."""
        return self.n_embd // self.n_head


def param_spec(config: GPTConfig, heads=()) -> list[tuple[str, tuple[int, ...]]]:
    """The ordered ``(name, shape)`` list of a model's parameters (GPT-2 names and layouts).

    Gradients and optimiser states use the same names and order, so AdamW is one loop.
    The block's entries come from :func:`rlhf_toy.gpt.layers.block_param_spec`.

    Parameters
    ----------
    config : GPTConfig
    heads : str or iterable of str, default ()
        Extra scalar heads (a subset of :data:`HEADS`).

    Returns
    -------
    list of (str, tuple of int)
    """
    V, T, C = config.vocab_size, config.n_ctx, config.n_embd
    spec = [("wte", (V, C)), ("wpe", (T, C))]
    block = block_param_spec(C)
    for i in range(config.n_layer):
        spec += [(f"h.{i}.{name}", shape) for name, shape in block]
    spec += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    for head in check_heads(heads):
        spec += [(f"{head}_head.weight", (C,)), (f"{head}_head.bias", ())]
    return spec


def check_heads(heads) -> tuple[str, ...]:
    """A subset of :data:`HEADS` in canonical order, duplicates dropped.

    Parameters
    ----------
    heads : str or iterable of str

    Returns
    -------
    tuple of str

    Raises
    ------
    ValueError
        Naming the first unknown head.
    """
    if isinstance(heads, str):
        heads = (heads,)
    heads = tuple(heads)
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        raise ValueError(f"heads must be a subset of {set(HEADS)}, got {unknown[0]!r}")
    return tuple(h for h in HEADS if h in heads)


def check_dtype(dtype) -> np.dtype:
    """float32 or float64 as a ``numpy.dtype``.

    Parameters
    ----------
    dtype : numpy dtype-like

    Returns
    -------
    numpy.dtype

    Raises
    ------
    ValueError
        For any other dtype.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt
