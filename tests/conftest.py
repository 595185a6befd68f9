"""Shared test settings: hypothesis runs derandomised (seeded) and without deadlines,
so the suite is deterministic and timing noise on a loaded 2-core machine never fails it."""

import matplotlib
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

settings.register_profile(
    "rlhf_toy",
    derandomize=True,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("rlhf_toy")
