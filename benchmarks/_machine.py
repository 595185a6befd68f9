"""What every benchmark records about the machine it ran on (shared by the bench scripts)."""

from __future__ import annotations

import datetime as _dt
import os
import platform

import numpy as np

#: Environment variables that change BLAS kernels or threading, reported in the JSON.
ENV_VARS = (
    "OPENBLAS_NUM_THREADS",
    "RLHF_TOY_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


def loadavg():
    """1, 5 and 15 minute load averages (other processes competing for the cores)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def machine_info() -> dict:
    """Platform, CPU count, numpy/scipy and numpy's BLAS, BLAS variables, load, date."""
    import scipy

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "loadavg_at_start": loadavg(),
    }
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        keys = ("name", "version", "openblas configuration")
        info["numpy_blas"] = {k: blas.get(k) for k in keys if k in blas}
    except Exception as exc:  # older numpy: no dict mode
        info["numpy_blas"] = {"error": repr(exc)}
    try:
        import threadpoolctl

        info["threadpools"] = threadpoolctl.threadpool_info()
    except ImportError:
        info["threadpools"] = None
    return info
