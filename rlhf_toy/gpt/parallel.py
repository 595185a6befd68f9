"""Data parallelism over threads for the numpy GPT of the sequence world.

A batch is cut into row shards, one per thread; each thread runs the whole forward (or
backward) of its shard (numpy releases the GIL in BLAS and element-wise kernels), and the
shards' parameter gradients are summed in a fixed order. BLAS is held to one thread inside
every computing method of the GPT (:func:`single_blas_thread`), so shards and BLAS never
oversubscribe the cores. Sharding changes rounding only: the same thread count gives the
same bits on every run. A batch under ``2 * MIN_TOKENS_PER_SHARD`` tokens runs in one piece.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .._validate import check_int

#: Largest row or position count :func:`row_shards` plans for (far beyond any batch).
MAX_ROWS = 10**9

__all__ = [
    "MIN_TOKENS_PER_SHARD",
    "get_num_threads",
    "map_shards",
    "row_shards",
    "set_num_threads",
    "single_blas_thread",
]

#: Smallest shard worth a thread, in tokens (rows x positions). Below it, one piece. A shard
#: runs hundreds of small numpy calls, and two threads contend for the GIL between them: on
#: the tiny model, two shards of 1024 tokens make a forward + backward of 64 x 32 tokens 1.8x
#: faster (28.9 -> 16.4 ms), but the DPO and GRPO steps of ``bench_pipeline.py`` (672 and
#: 1024 tokens) were 1.2x and 1.1x slower cut into two shards than whole.
MIN_TOKENS_PER_SHARD = 1024

_state = {"threads": None, "pool": None, "blas": None}
_lock = threading.Lock()
_local = threading.local()  # per thread: nesting depth of single_blas_thread


def _after_fork_in_child() -> None:
    """A forked child (``multiprocessing`` on Linux) has none of the parent's threads: it
    must build its own pool instead of waiting forever on the parent's dead workers."""
    global _lock
    _lock = threading.Lock()
    _state["pool"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _default_threads() -> int:
    env = os.environ.get("RLHF_TOY_NUM_THREADS")
    if env is not None:
        try:
            return check_int(int(env), "RLHF_TOY_NUM_THREADS")
        except ValueError:
            raise ValueError(
                f"RLHF_TOY_NUM_THREADS must be a positive integer, got {env!r}"
            ) from None
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Number of threads (and so of shards at most) the GPT uses.

    Defaults to the environment variable ``RLHF_TOY_NUM_THREADS`` if set, else the number
    of cores this process may run on.

    Returns
    -------
    int
        At least 1.
    """
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads from now on (``1`` turns data parallelism off).

    Results then change only by floating-point rounding (the order of the gradient sums).

    Parameters
    ----------
    n : int
        Number of threads, ``>= 1``.
    """
    n = check_int(n, "n")
    with _lock:
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=True)
        _state["threads"], _state["pool"] = n, None


def _pool() -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = ThreadPoolExecutor(get_num_threads(), thread_name_prefix="rlhf_toy")
        return _state["pool"]


@contextlib.contextmanager
def single_blas_thread():
    """Limit BLAS to one thread inside the block, restored on exit.

    Also a decorator (``@single_blas_thread()``).

    Wrapped around every computing method of the GPT and around sampling: no BLAS call of
    the model ever wakes a second BLAS thread (an idle OpenBLAS worker spins for a while
    after a multi-threaded call and would steal a core from the next shards; the small
    products of decoding lose more to the hand-off than they gain). Nested uses cost
    nothing: only the outermost one sets and restores the limit.

    Returns
    -------
    context manager
        Usable as a ``with`` block or a decorator.
    """
    depth = getattr(_local, "depth", 0)
    if depth:  # already limited by an enclosing call
        _local.depth = depth + 1
        try:
            yield
        finally:
            _local.depth = depth
        return
    if _state["blas"] is None:  # found once: numpy's BLAS is loaded with numpy itself
        from threadpoolctl import ThreadpoolController

        _state["blas"] = ThreadpoolController().select(user_api="blas")
    blas = _state["blas"]
    limit = blas.limit(limits=1) if blas.lib_controllers else contextlib.nullcontext()
    _local.depth = 1
    try:
        with limit:  # a BLAS that threadpoolctl does not know is left be
            yield
    finally:
        _local.depth = 0


def row_shards(n_rows: int, n_positions: int) -> list[slice]:
    """Split ``n_rows`` rows of ``n_positions`` tokens into contiguous, near-equal shards.

    At most :func:`get_num_threads` shards, and no more than the batch has
    :data:`MIN_TOKENS_PER_SHARD`-token pieces (so small batches stay whole). Shard sizes
    differ by at most one row.

    Parameters
    ----------
    n_rows : int
        Batch size ``B``.
    n_positions : int
        Tokens per row ``T``.

    Returns
    -------
    list of slice
        Contiguous row ranges covering ``range(n_rows)``.

    Examples
    --------
    >>> import rlhf_toy.gpt.parallel as par
    >>> before = par.get_num_threads()
    >>> par.set_num_threads(2)
    >>> par.row_shards(64, 32)
    [slice(0, 32, None), slice(32, 64, None)]
    >>> par.row_shards(4, 32)  # 128 tokens: one piece
    [slice(0, 4, None)]
    >>> par.set_num_threads(before)
    """
    n_rows = check_int(n_rows, "n_rows", maximum=MAX_ROWS)
    n_positions = check_int(n_positions, "n_positions", maximum=MAX_ROWS)
    by_size = (n_rows * n_positions) // MIN_TOKENS_PER_SHARD
    k = max(1, min(get_num_threads(), n_rows, by_size))
    bounds = [n_rows * i // k for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def map_shards(fn, args: list) -> list:
    """``[fn(*a) for a in args]``, one call per thread (a single shard: the calling thread).

    Call it under :func:`single_blas_thread` (the GPT's methods are). Exceptions
    propagate.

    Parameters
    ----------
    fn : callable
    args : list of tuple
        The positional arguments of each call.

    Returns
    -------
    list
        The results, in the order of ``args``.
    """
    if len(args) == 1:
        return [fn(*args[0])]
    futures = [_pool().submit(fn, *a) for a in args]
    return [f.result() for f in futures]
