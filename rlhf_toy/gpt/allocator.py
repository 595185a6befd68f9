"""Keep freed memory for reuse: the GPT's arrays are allocated and freed thousands of times
per second, and returning them to the operating system costs more than computing on them.

Every forward allocates its activations afresh (a few hundred KB each for the tiny models of
the chapter). glibc's ``malloc`` serves blocks above its mmap threshold (128 KiB at start)
with a fresh ``mmap`` and gives the memory at the top of its heap back to the system once more
than its trim threshold is free; either way the next array of that size starts on pages the
kernel must fault in and zero again, about a microsecond per 4 KiB page. Measured on the
DPO batch of ``benchmarks/bench_pipeline.py`` (one shard of 16 x 21 tokens, one thread): 968
page faults and 3.2 ms per forward with the defaults, none and 1.8 ms once freed memory is
kept. (glibc raises its thresholds by itself after freeing a large block, but a whole step's
arrays are freed at the top of the heap and still trimmed.)

:func:`keep_freed_memory` raises both thresholds with ``mallopt`` (glibc only; a no-op on
other C libraries, on other systems, or when ``RLHF_TOY_MALLOC=system``). The process then
keeps up to :data:`TRIM_THRESHOLD` bytes of freed heap for reuse instead of returning it, and
blocks above :data:`MMAP_THRESHOLD` are still mapped and unmapped directly. The GPT calls it
once, at its first computation (:func:`rlhf_toy.gpt.parallel.single_blas_thread`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

#: Blocks up to this size come from the heap, not from a fresh ``mmap`` (glibc's maximum
#: on 64-bit systems).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap kept for reuse before any is given back.
TRIM_THRESHOLD = 256 * 2**20

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_state = {"done": False, "applied": False}


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process (see the module docstring).

    Returns
    -------
    bool
        Whether the thresholds are set (False where there is no glibc, or when the
        environment variable ``RLHF_TOY_MALLOC`` is ``system``).
    """
    if _state["done"]:
        return _state["applied"]
    _state["done"] = True
    if os.environ.get("RLHF_TOY_MALLOC", "").lower() == "system" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt to speak of)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _state["applied"] = ok
    return ok
