"""Builders of the chapter's figures: each runs a small seeded experiment and plots it.

Registered with :func:`rlhf_toy.figures.register`; ``rlhf-toy figures`` runs them all
(in under a minute in total).
"""

from __future__ import annotations

import numpy as np

from rlhf_toy import plots
from rlhf_toy.figures import register

# --- Bradley-Terry and the optimal policy (notebook 01) ------------------------------------


# --- DPO (notebook 02) ---------------------------------------------------------------------


# --- Goodhart: overoptimisation, ensembles (notebook 03) -----------------------------------


# --- Best-of-n and rejection sampling (notebook 04) ----------------------------------------


# --- KL estimators and mode-seeking (notebook 05) ------------------------------------------
