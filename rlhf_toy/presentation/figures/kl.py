"""Figures of the KL estimators and mode-seeking (notebook 05).

Each builder runs a small seeded experiment and returns its Figure; registered in
:data:`rlhf_toy.presentation.figures.registry.FIGURES` by ``@register``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.experiments.kl_study import (
    batch_negative_probability,
    batch_negative_probability_normal,
    estimator_table,
    kl_gradients,
    kl_penalised_ascent,
    tilted_policies,
)
from rlhf_toy.bandit.experiments.modes import (
    discretized_gaussian,
    fit_gaussian,
    fit_gaussian_local,
    forward_kl_regularised_policy,
    reverse_kl_landscape,
    rlhf_gaussian_fits,
    rlhf_mode_sweep,
    rlhf_mode_world,
    two_mode_target,
)
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import log_optimal_policy, optimal_policy
from rlhf_toy.presentation import plots
from rlhf_toy.presentation.figures.registry import register

#: The builders are reached through ``FIGURES``, by name; not called directly.
__all__ = []


@register("kl_estimators",
          "Schulman's k1, k2, k3 for pi = pi*_beta near to far from pi_ref (exact sums): "
          "k1 and k3 are unbiased, k2 is not; k3 has the smallest spread near pi_ref but "
          "explodes far from it; k1 is negative on single samples and even on batch means "
          "near pi_ref.",
          "KL estimators and mode-seeking (notebook 05)")
def kl_estimators():
    env = make_bandit(1, 16, proxy="exact", rng=0)
    pi_ref, reward = env.pi_ref[0], env.r_star[0]
    betas = np.geomspace(0.08, 30.0, 24)
    table = estimator_table(pi_ref, reward, betas)
    q = tilted_policies(pi_ref, reward, betas)
    batch = {size: (batch_negative_probability(q, pi_ref, size, 1000, rng=size),
                    batch_negative_probability_normal(q, pi_ref, size)) for size in (16, 64)}
    return plots.plot_kl_estimators(table, batch)


@register("kl_gradients",
          "Exact expected gradients of the KL penalty: k1 as a reward and k2 in the loss give "
          "the true reverse-KL gradient, k3 in the loss (GRPO) the forward-KL gradient, k1 in "
          "the loss nothing; gradient ascent with each converges to pi*, to the "
          "forward-KL optimum, or drifts away.",
          "KL estimators and mode-seeking (notebook 05)")
def kl_gradients_figure():
    env = make_bandit(1, 8, proxy="exact", rng=0)
    beta = 1.0
    logits = log_optimal_policy(env.pi_ref, env.r_star, 0.3)  # a policy away from pi_ref
    grads = kl_gradients(logits, env.pi_ref)
    shown = {k: grads[k][0] for k in ("reverse_kl", "forward_kl", "k1_in_reward",
                                      "k2_in_loss", "k3_in_loss", "k3_in_reward",
                                      "k1_in_loss")}
    pi_star = optimal_policy(env.pi_ref, env.r_star, beta)
    pi_fwd = forward_kl_regularised_policy(env.pi_ref, env.r_star, beta)
    distances, steps = {}, None
    for name, label in [("reverse_kl", "true gradient"), ("k3_in_loss", "k3 in loss"),
                        ("k1_in_loss", "k1 in loss")]:
        run = kl_penalised_ascent(env.pi_ref, env.r_star, beta, name, steps=1500, lr=4.0)
        steps = run["steps"]
        path = run["trajectory"][:, 0]  # (steps, Y): the one prompt
        distances[rf"{label}: KL($\pi_t$ || $\pi^*$)"] = kl_divergence(
            path, np.broadcast_to(pi_star[0], path.shape))
        if name == "k3_in_loss":
            distances[rf"{label}: KL($\pi_t$ || forward optimum)"] = kl_divergence(
                path, np.broadcast_to(pi_fwd[0], path.shape))
    return plots.plot_kl_gradients(shown, steps, distances)


@register("mode_seeking",
          "One Gaussian fitted to two modes: reverse KL(q || p) locks onto one mode (or, "
          "started between them, sticks in a poorer broad local minimum); forward "
          "KL(p || q) covers both; close modes give a single broad fit either way.",
          "KL estimators and mode-seeking (notebook 05)")
def mode_seeking():
    grid = np.linspace(-12.0, 12.0, 601)
    far = two_mode_target(grid, (-3.0, 3.0), (0.7, 0.7), (0.5, 0.5))
    close = two_mode_target(grid, (-0.8, 0.8), (0.7, 0.7), (0.5, 0.5))
    far_fits = {"reverse": fit_gaussian(far, grid, "reverse"),
                "forward": fit_gaussian(far, grid, "forward"),
                "reverse, local from (0, 0.3)": fit_gaussian_local(far, grid, "reverse",
                                                                   (0.0, 0.3))}
    close_fits = {"reverse": fit_gaussian(close, grid, "reverse"),
                  "forward": fit_gaussian(close, grid, "forward")}
    far_fits, close_fits = ({label: (mean, std, discretized_gaussian(grid, mean, std))
                             for label, (mean, std) in fits.items()}
                            for fits in (far_fits, close_fits))
    means = np.linspace(-6.0, 6.0, 121)
    profile = reverse_kl_landscape(far, grid, means, np.geomspace(0.1, 8.0, 80))
    return plots.plot_mode_seeking(grid, far, far_fits, close, close_fits, (means, profile))


@register("mode_collapse_beta",
          "On a 1-D response grid with a three-mode pi_ref, pi* drops modes as beta shrinks; "
          "swapping the KL direction in the objective does not help at equal reward, but "
          "within a Gaussian family the forward (distribution-matching) fit covers pi*'s "
          "modes where the RLHF (reverse) fit picks one.",
          "KL estimators and mode-seeking (notebook 05)")
def mode_collapse_beta():
    grid, pi_ref, reward = rlhf_mode_world()
    sweep = rlhf_mode_sweep(pi_ref, reward, np.geomspace(0.01, 10.0, 60))
    shown_betas = (1.0, 0.2, 0.05)
    shown_sweep = rlhf_mode_sweep(pi_ref, reward, shown_betas)
    shown = dict(zip(shown_betas, shown_sweep["pi_star"], strict=True))
    fits = {**rlhf_gaussian_fits(pi_ref, reward, grid, 0.2), "beta": 0.2}
    return plots.plot_mode_collapse(grid, pi_ref, shown, sweep, fits)
