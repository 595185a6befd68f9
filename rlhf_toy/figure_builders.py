"""Builders of the chapter's figures: each runs a small seeded experiment and plots it.

Registered with :func:`rlhf_toy.figures.register`; ``rlhf-toy figures`` runs them all
(in under a minute in total).
"""

from __future__ import annotations

import numpy as np

from rlhf_toy import plots
from rlhf_toy.figures import register

# --- Bradley-Terry and the optimal policy (notebook 01) ------------------------------------


@register("bt_mle_recovery",
          "Bradley-Terry MLE on simulated comparisons recovers the reward up to a per-prompt "
          "shift, with an error falling like 1/sqrt(n).",
          "Bradley-Terry and the optimal policy (notebook 01)")
def bt_mle_recovery():
    from rlhf_toy.bradley_terry import fit_bradley_terry, sample_comparisons

    n_prompts, n_responses = 4, 8
    r_star = np.random.default_rng(0).standard_normal((n_prompts, n_responses))
    r_centred = r_star - r_star.mean(1, keepdims=True)
    uniform = np.full((n_prompts, n_responses), 1.0 / n_responses)
    sizes = np.array([300, 1000, 3000, 10_000, 30_000, 100_000])
    errors = np.empty((len(sizes), 3))
    fits = {}
    for i, n in enumerate(sizes):
        for seed in range(errors.shape[1]):
            x, y_w, y_l = sample_comparisons(uniform, r_star, int(n), rng=seed)
            fits[n, seed] = fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses)
            errors[i, seed] = np.sqrt(np.mean((fits[n, seed] - r_centred) ** 2))
    return plots.plot_bt_recovery(r_centred, fits[3000, 0], sizes, errors.mean(1),
                                  errors.std(1))


@register("optimal_policy_betas",
          "The KL-regularised optimum pi* = pi_ref exp(r/beta)/Z reweights the reference "
          "policy towards high reward, more sharply as beta shrinks.",
          "Bradley-Terry and the optimal policy (notebook 01)")
def optimal_policy_betas():
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.optimal import optimal_policy

    env = make_bandit(1, 16, proxy="exact", rng=3)
    betas = np.array([0.1, 0.3, 1.0, 3.0])
    pi_stars = np.stack([optimal_policy(env.pi_ref, env.r_star, b)[0] for b in betas])
    return plots.plot_optimal_policy_betas(env.r_star[0], env.pi_ref[0], betas, pi_stars)


@register("reward_kl_frontier",
          "The exact reward-KL frontier of pi*_beta; gradient ascent on the regularised "
          "objective lands on it.",
          "Bradley-Terry and the optimal policy (notebook 01)")
def reward_kl_frontier_figure():
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.bandit.train import gradient_ascent
    from rlhf_toy.optimal import reward_kl_frontier

    env = make_bandit(8, 32, proxy="exact", rng=0)
    betas = np.geomspace(0.03, 30.0, 200)
    front = reward_kl_frontier(env.pi_ref, env.r_star, betas)
    points = {}
    for beta in (0.3, 1.0):
        res = gradient_ascent(env.pi_ref, env.r_star, beta, steps=1500, lr=8.0 / beta)
        points[f"gradient ascent, beta = {beta:g}"] = (res.history["kl"][-1],
                                                       res.history["reward"][-1])
    return plots.plot_reward_kl_frontier(front.kl, front.reward, betas, points=points,
                                         annotate=[0.1, 0.3, 1.0, 3.0])


@register("ascent_convergence",
          "Exact gradient ascent on J(pi) = E[r] - beta KL climbs monotonically towards "
          "the closed-form optimum: the gap J(pi*) - J(pi_t) keeps falling.",
          "Bradley-Terry and the optimal policy (notebook 01)")
def ascent_convergence():
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.bandit.train import gradient_ascent
    from rlhf_toy.optimal import optimal_value

    env = make_bandit(8, 32, proxy="exact", rng=0)
    curves, steps = {}, None
    for beta in (0.3, 1.0, 3.0):
        res = gradient_ascent(env.pi_ref, env.r_star, beta, steps=1500, lr=16.0 / beta,
                              record_every=10)
        steps = res.history["step"]
        gap = optimal_value(env.pi_ref, env.r_star, beta) - res.history["objective"]
        curves[f"beta = {beta:g}"] = gap
    return plots.plot_convergence(steps, curves, ylabel=r"$J(\pi^*) - J(\pi_t)$",
                                  title="Gradient ascent converges to the optimum")


# --- DPO (notebook 02) ---------------------------------------------------------------------


@register("dpo_loss_weight",
          "Exercise 2: the DPO gradient raises log pi(y_w) and lowers log pi(y_l) with weight "
          "sigma(h_l - h_w), large exactly when the implicit reward ranks the pair wrongly.",
          "DPO (notebook 02)")
def dpo_loss_weight():
    from rlhf_toy.preference_losses import dpo_loss

    beta = 0.5
    margin = np.linspace(-6.0, 6.0, 241)  # h_w - h_l
    loss, grad_chosen, _ = dpo_loss(margin / beta, np.zeros_like(margin), 0.0, 0.0, beta)
    return plots.plot_dpo_loss_and_weight(margin, loss, -grad_chosen / beta)


@register("dpo_convergence",
          "DPO on Bradley-Terry preferences that cover every pair of responses converges to "
          "the optimal policy pi* = pi_ref exp(r/beta)/Z of the reward that labelled them.",
          "DPO (notebook 02)")
def dpo_convergence():
    from rlhf_toy.bandit import all_pairs_preferences, make_bandit, train_dpo
    from rlhf_toy.kl import kl_divergence
    from rlhf_toy.optimal import optimal_policy

    env = make_bandit(8, 16, proxy="exact", rng=0)
    beta = 0.5
    pi_star = optimal_policy(env.pi_ref, env.r_star, beta)
    x, y_w, y_l, w = all_pairs_preferences(env.r_star, pi=env.pi_ref)
    curves, final, steps = {}, None, None
    for name, opt, lr in [("gradient descent", "gd", 100.0 / beta**2), ("Adam", "adam", 0.1)]:
        res = train_dpo(env.pi_ref, x, y_w, y_l, beta, weights=w, steps=600, lr=lr,
                        optimizer=opt, record_every=5)
        steps = res.history["step"]
        probs = res.history["probs"]  # (n_records, X, Y)
        curves[name] = kl_divergence(probs, np.broadcast_to(pi_star, probs.shape)).mean(-1)
        final = res.policy.probs if final is None else final
    return plots.plot_dpo_convergence(steps, curves, final, pi_star)


def _uncovered_example():
    """The four-response prompt of the coverage failure (notebook 02 and its test)."""
    pi_ref = np.array([[0.05, 0.60, 0.30, 0.05]])
    r_star = np.array([[1.0, -1.0, -3.0, 0.0]])
    covered = np.array([[True, True, False, True]])
    return pi_ref, r_star, covered


@register("dpo_uncovered",
          "DPO on preference data that never shows a response moves probability onto it: "
          "pushing down a common rejected response frees mass that the softmax hands to the "
          "unseen, worst response, which pi* would nearly remove.",
          "DPO (notebook 02)")
def dpo_uncovered():
    from rlhf_toy.bandit import all_pairs_preferences, train_dpo
    from rlhf_toy.optimal import optimal_policy

    pi_ref, r_star, covered = _uncovered_example()
    beta = 1.0
    x, y_w, y_l, w = all_pairs_preferences(r_star, covered=covered)
    res = train_dpo(pi_ref, x, y_w, y_l, beta, weights=w, steps=100, lr=2.0, record_every=1)
    pi_star = optimal_policy(pi_ref, r_star, beta)
    unseen = ~covered[0]
    mass = res.history["probs"][:, 0, unseen].sum(-1)
    probs = {r"$\pi_{ref}$": pi_ref[0], r"$\pi^*$ ($\beta$ = 1)": pi_star[0],
             "DPO": res.policy.probs[0]}
    levels = {r"$\pi_{ref}$": pi_ref[0, unseen].sum(), r"$\pi^*$": pi_star[0, unseen].sum()}
    return plots.plot_dpo_uncovered(probs, covered[0], r_star[0], res.history["step"], mass,
                                    levels=levels)


@register("dpo_logprobs_fall",
          "On finite preference data sampled from pi_ref, DPO lowers the mean log-probability "
          "of the chosen responses as well as the rejected ones while the margin between "
          "them grows.",
          "DPO (notebook 02)")
def dpo_logprobs_fall():
    from rlhf_toy.bandit import make_bandit, train_dpo
    from rlhf_toy.bradley_terry import sample_comparisons
    from rlhf_toy.optimal import optimal_policy

    env = make_bandit(8, 16, proxy="exact", rng=0)
    x, y_w, y_l = sample_comparisons(env.pi_ref, env.r_star, 200, rng=0)
    beta = 0.5
    res = train_dpo(env.pi_ref, x, y_w, y_l, beta, steps=1000, lr=4.0 / beta**2,
                    record_every=10, eval_rewards={"gold": env.r_star})
    h = res.history
    gold_star = env.expected(optimal_policy(env.pi_ref, env.r_star, beta), "gold")
    return plots.plot_logprobs_fall(h["step"], h["logp_chosen"], h["logp_rejected"],
                                    h["margin"], gold=h["gold"], gold_ref=gold_star)


@register("dpo_loss_comparison",
          "DPO, IPO, cDPO and hinge on the same 200 preference pairs: DPO keeps drifting "
          "from pi_ref and its gold reward peaks then falls; the losses with a finite target "
          "margin level off; all stay below the exact gold-reward frontier of pi*.",
          "DPO (notebook 02)")
def dpo_loss_comparison():
    from functools import partial

    from rlhf_toy.bandit import make_bandit, train_dpo
    from rlhf_toy.bradley_terry import sample_comparisons
    from rlhf_toy.optimal import reward_kl_frontier
    from rlhf_toy.preference_losses import cdpo_loss

    env = make_bandit(8, 16, proxy="exact", rng=0)
    x, y_w, y_l = sample_comparisons(env.pi_ref, env.r_star, 200, rng=0)
    beta = 0.5
    losses = {"DPO": ("dpo", 4.0 / beta**2), "IPO": ("ipo", 1.0),
              "cDPO (eps = 0.2)": (partial(cdpo_loss, label_smoothing=0.2), 4.0 / beta**2),
              "hinge": ("hinge", 2.0 / beta**2)}
    runs, steps = {}, None
    for name, (loss, lr) in losses.items():
        res = train_dpo(env.pi_ref, x, y_w, y_l, beta, steps=1000, lr=lr, loss=loss,
                        record_every=10, eval_rewards={"gold": env.r_star})
        runs[name] = (res.history["kl"], res.history["gold"])
        steps = res.history["step"]
    front = reward_kl_frontier(env.pi_ref, env.r_star, np.geomspace(0.1, 30.0, 100))
    return plots.plot_preference_loss_comparison(runs, front.kl, front.reward, steps=steps)


# --- Goodhart: overoptimisation, ensembles (notebook 03) -----------------------------------

#: The beta grid of the Goodhart figures: from almost pi_ref to almost argmax r_hat.
GOODHART_BETAS = np.geomspace(30.0, 0.003, 40)
_GOODHART = "Goodhart: overoptimisation, ensembles (notebook 03)"


@register("goodhart_gaussian",
          "Regressional Goodhart: with Gaussian proxy noise the proxy runs ahead of the gold but "
          "the gold keeps rising (pi*_beta and best-of-n), and the overestimation is sigma^2/beta "
          "until the policy runs out of responses.", _GOODHART)
def goodhart_gaussian():
    from rlhf_toy.bandit.env import make_bandit
    from rlhf_toy.bandit.goodhart import (
        best_of_n_sweep,
        beta_sweep,
        overestimation,
        proxy_error_under,
    )

    env = make_bandit(8, 64, proxy="gaussian", noise_scale=1.0, rng=0)
    opt = beta_sweep(env, GOODHART_BETAS)
    bon = best_of_n_sweep(env, np.unique(np.geomspace(1, 5000, 40).astype(int)))
    big = make_bandit(20, 2000, proxy="gaussian", noise_scale=1.0, rng=1)
    inv_beta = np.geomspace(0.02, 30.0, 30)
    over = (overestimation(big, 1.0 / inv_beta)
            - proxy_error_under(big, big.pi_ref, align=False)["bias"])
    return plots.plot_goodhart_gaussian(opt.centred(), bon.centred(), inv_beta, over, 1.0,
                                        regime=1 / np.sqrt(2.0))


@register("goodhart_heavy_tail",
          "Catastrophic Goodhart: with heavy-tailed (Student-t) proxy noise the proxy soars on a "
          "few outliers and the gold, after rising, falls back; Gaussian noise of the same scale "
          "keeps its gains.", _GOODHART)
def goodhart_heavy_tail():
    from rlhf_toy.bandit.env import make_bandit
    from rlhf_toy.bandit.goodhart import mean_curve, seed_sweeps

    betas = np.geomspace(1e3, 0.003, 50)  # the outliers pull even at beta = 30
    heavy = seed_sweeps(lambda s: make_bandit(16, 1000, proxy="student_t", noise_scale=0.2,
                                              df=1.5, rng=s), range(20), betas)
    gauss = seed_sweeps(lambda s: make_bandit(16, 1000, proxy="gaussian", noise_scale=0.2,
                                              rng=s), range(20), betas)
    return plots.plot_goodhart_heavy_tail(heavy[1].centred(), [c.centred() for c in heavy],
                                          mean_curve(heavy).centred(),
                                          mean_curve(gauss).centred())


@register("goodhart_learned",
          "A Bradley-Terry reward model fitted on comparisons from pi_ref: the gold peaks and "
          "falls as pi* moves onto rarely compared responses, and the peak comes at a larger KL "
          "the more comparisons the model saw.", _GOODHART)
def goodhart_learned():
    from rlhf_toy.bandit.goodhart import beta_sweep, learned_bandit, mean_curve

    curves, peaks = {}, {}
    for n in (300, 3000, 30000):
        sweeps = [beta_sweep(learned_bandit(8, 64, n, rng=seed)[0], GOODHART_BETAS)
                  for seed in range(10)]
        curves[n] = mean_curve(sweeps).centred()
        peaks[n] = np.array([c.peak_d for c in sweeps])
    return plots.plot_goodhart_learned(curves, peaks)


@register("gao_fits",
          "Gao et al.'s forms fitted to exact curves of a learned proxy: d (a - b d) for "
          "best-of-n, d (a - b log d) for pi*_beta and for a gradient-ascent (RL) trajectory, with "
          "coefficients, R^2 and the predicted peak.", _GOODHART)
def gao_fits():
    from rlhf_toy.bandit.goodhart import (
        best_of_n_sweep,
        beta_sweep,
        fit_gao,
        learned_bandit,
        trajectory_sweep,
    )

    env, _ = learned_bandit(8, 64, 3000, rng=1)
    bon = best_of_n_sweep(env, np.unique(np.geomspace(1, 5000, 40).astype(int)))
    opt = beta_sweep(env, GOODHART_BETAS)
    traj = trajectory_sweep(env, 0.003, steps=400, lr=0.5, record_every=4)
    panels = {}
    for title, curve, form in (("best-of-n", bon, "bon"),
                               (r"KL-optimal $\pi^*_\beta$", opt, "rl"),
                               (r"gradient ascent, $\beta$=0.003", traj, "rl")):
        fit = fit_gao(curve.d, curve.gold, form, curve.gold_ref)
        panels[title] = {**curve.centred(), "a": fit.a, "b": fit.b, "r2": fit.r2,
                         "peak_d": fit.peak_d, "form": form}
    return plots.plot_gao_fits(panels)


@register("distribution_shift",
          "Distributional shift: the learned proxy, calibrated on pi_ref, errs more (and upwards) "
          "under pi*_beta as beta falls, because pi* moves to responses with few comparisons.",
          _GOODHART)
def distribution_shift_figure():
    from rlhf_toy.bandit.goodhart import aligned_proxy, distribution_shift, learned_bandit
    from rlhf_toy.optimal import optimal_policy

    env, counts = learned_bandit(8, 64, 3000, rng=0)
    shift = distribution_shift(env, GOODHART_BETAS)
    abs_err = np.abs(aligned_proxy(env) - env.r_star)
    pi_hard = optimal_policy(env.pi_ref, env.r_hat, 0.03)
    return plots.plot_distribution_shift(shift["d"], shift["mae"], shift["bias"],
                                         shift["mae_ref"], abs_err, counts, pi_hard)


@register("goodhart_exercise3",
          "Exercise 3: the expected overestimation of pi*_beta is never negative; it grows with "
          "1/beta over random Gaussian worlds, but for a fixed gold reward it can rise and fall "
          "back, and a single noise draw can even underestimate.", _GOODHART)
def goodhart_exercise3():
    from rlhf_toy.bandit.env import BanditEnv
    from rlhf_toy.bandit.goodhart import (
        expected_overestimation,
        overestimation,
        overestimation_monte_carlo,
    )

    inv_beta = np.geomspace(0.01, 300.0, 60)
    betas = 1.0 / inv_beta
    pi_ref, r_star = np.array([[0.5, 0.5]]), np.array([[0.0, 4.0]])
    fixed = expected_overestimation(pi_ref, r_star, betas, [-1.0, 1.0])
    draw = BanditEnv(pi_ref=pi_ref, r_star=r_star, r_hat=r_star + [[1.0, -1.0]],
                     prompt_probs=np.ones(1))
    mc = overestimation_monte_carlo(np.array([[0.4, 0.3, 0.2, 0.1]]), betas, noise_scale=1.0,
                                    n_draws=4000, rng=7)
    return plots.plot_overestimation_curves(inv_beta, {
        "random worlds (MC, 2 s.e.)":
            (mc["mean"], mc["se"]),
        r"gold (0, 4), mean over $\epsilon = \pm 1$": (fixed, None),
        r"gold (0, 4), one draw $\epsilon = (1, -1)$": (overestimation(draw, betas), None),
    })


@register("ensembles",
          "Reward-model ensembles (Coste et al. 2023): optimising the worst case or mean minus "
          "variance of 10 members keeps more gold than one reward model on the same data; "
          "members disagree where comparisons are few.", _GOODHART)
def ensembles_figure():
    from rlhf_toy.bandit.ensembles import disagreement, ensemble_sweep, fit_ensemble
    from rlhf_toy.bandit.env import make_bandit

    env = make_bandit(8, 64, proxy="exact", ref_temperature=0.5, rng=0)
    l2 = 0.03
    out = ensemble_sweep(env.pi_ref, env.r_star, GOODHART_BETAS, k=10, n_comparisons=30000,
                         rng=0, l2=l2, lam=1.0, prior_scale=1 / np.sqrt(l2))
    boot = fit_ensemble(env.pi_ref, env.r_star, 10, 30000, rng=1, l2=l2,
                        comparisons=out["comparisons"])
    curves = {name: c.centred() for name, c in out["curves"].items()}
    return plots.plot_ensembles(curves, out["counts"], disagreement(boot),
                                disagreement(out["ensemble"]))


# --- Best-of-n and rejection sampling (notebook 04) ----------------------------------------

_BON_SECTION = "Best-of-n and rejection sampling (notebook 04)"


def _bon_ns(top: float = 4.0, num: int = 40) -> np.ndarray:
    """Integer ``n`` from 1 to ``10**top``, log-spaced."""
    return np.unique(np.round(np.logspace(0, top, num))).astype(int)


def _bon_worlds() -> dict:
    """Reference policies and rewards that make the KL bound tight, loose, or flattened."""
    from rlhf_toy.bandit import make_bandit

    m = 10_000
    env = make_bandit(50, 64, proxy="exact", rng=0)
    peaked = make_bandit(50, 64, proxy="exact", ref_temperature=0.25, rng=0)
    return {
        f"uniform, {m} distinct rewards": (
            np.full((1, m), 1.0 / m),
            np.random.default_rng(0).permutation(m).astype(float)[None]),
        "softmax pi_ref, 64 responses": (env.pi_ref, env.r_star),
        "peaked pi_ref (temperature 0.25)": (peaked.pi_ref, peaked.r_star),
        "64 responses, reward rounded (ties)": (env.pi_ref, np.round(env.r_star)),
    }


@register("bon_kl_bound",
          "Exact KL of best-of-n against log n - (n-1)/n: tight for many small-mass responses "
          "with distinct rewards, far below it when a few responses hold the mass or rewards "
          "tie.", _BON_SECTION)
def bon_kl_bound():
    from rlhf_toy.best_of_n import best_of_n_kl, best_of_n_kl_bound

    ns = _bon_ns()
    kls = {label: best_of_n_kl(pi_ref, reward, ns).mean(-1)
           for label, (pi_ref, reward) in _bon_worlds().items()}
    return plots.plot_bon_kl_bound(ns, kls, best_of_n_kl_bound(ns))


@register("bon_win_rate",
          "Exact win rate of best-of-n over a reference sample: n/(n+1) for a continuum of "
          "distinct rewards, less once n outgrows the number of distinct responses.",
          _BON_SECTION)
def bon_win_rate():
    from rlhf_toy.best_of_n import best_of_n_win_rate

    ns = _bon_ns()
    wins = {label: best_of_n_win_rate(pi_ref, reward, ns).mean(-1)
            for label, (pi_ref, reward) in _bon_worlds().items()}
    return plots.plot_bon_win_rate(ns, wins)


@register("bon_vs_kl_optimal",
          "Gold and proxy reward against sqrt(KL) for best-of-n and for the KL-regularised "
          "optimum pi*: with Gaussian proxy noise pi* earns slightly more gold per nat; with "
          "heavy-tailed noise it spends its KL on proxy outliers and best-of-n wins clearly.",
          _BON_SECTION)
def bon_vs_kl_optimal():
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.bandit.rft import best_of_n_vs_optimal

    ns, betas = _bon_ns(4.0, 30), np.logspace(-2.5, 3.0, 80)
    panels = {}
    for title, kwargs in [("Gaussian proxy noise (sigma = 1)",
                           {"proxy": "gaussian", "noise_scale": 1.0}),
                          ("Student-t proxy noise (df = 2, scale 0.5)",
                           {"proxy": "student_t", "noise_scale": 0.5, "df": 2.0})]:
        env = make_bandit(100, 256, rng=0, **kwargs)
        sweep, front = best_of_n_vs_optimal(env, ns, betas)
        panels[title] = {"bon_kl": sweep.kl, "bon_gold": sweep.extra["gold"],
                         "bon_proxy": sweep.reward, "opt_kl": front.kl,
                         "opt_gold": front.extra["gold"], "opt_proxy": front.reward}
    return plots.plot_bon_vs_kl_optimal(panels)


@register("bon_estimator",
          "The unbiased best-of-n estimator (all n-subsets of N samples) reproduces the exact "
          "gold curve, overoptimisation peak included, with less spread than disjoint "
          "groups.", _BON_SECTION)
def bon_estimator():
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.bandit.rft import estimator_experiment

    env = make_bandit(20, 64, proxy="student_t", noise_scale=0.5, df=2.0, rng=0)
    ns, n_samples = 2 ** np.arange(9), 256
    exact, unbiased, disjoint = estimator_experiment(env, ns, n_samples, 100, rng=0)
    return plots.plot_bon_estimator(ns, exact, unbiased, disjoint, n_samples=n_samples)


@register("rft",
          "Rejection-sampling fine-tuning: the fitted table converges to the exact best-of-n "
          "policy like 1/sqrt(samples), and k rounds of best-of-4 land on best-of-4^k.",
          _BON_SECTION)
def rft_figure():
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.bandit.rft import (
        best_of_n_vs_optimal,
        rejection_sampling_finetune,
        rft_convergence,
    )

    env = make_bandit(8, 64, proxy="gaussian", noise_scale=1.0, rng=0)
    sizes = np.array([100, 300, 1000, 3000, 10_000, 30_000])
    distances = {f"n = {n}": rft_convergence(env, n, sizes, rng=n, repeats=3)
                 for n in (2, 4, 16)}
    res = rejection_sampling_finetune(env, 4, 20_000, rng=0, n_rounds=3)
    sweep, front = best_of_n_vs_optimal(env, _bon_ns(2.5, 30), np.logspace(-1.5, 1.5, 60))
    rounds = {"kl": res.kl, "gold": res.gold, "proxy": res.proxy,
              "labels": [f"k={k + 1} (n={4 ** (k + 1)})" for k in range(3)]}
    curve = {"bon_kl": sweep.kl, "bon_gold": sweep.extra["gold"], "bon_proxy": sweep.reward,
             "opt_kl": front.kl, "opt_gold": front.extra["gold"], "opt_proxy": front.reward}
    return plots.plot_rft(sizes, distances, rounds=rounds, curve=curve)


# --- KL estimators and mode-seeking (notebook 05) ------------------------------------------


@register("kl_estimators",
          "Schulman's k1, k2, k3 for pi = pi*_beta near to far from pi_ref (exact sums): "
          "k1 and k3 are unbiased, k2 is not; k3 has the smallest spread near pi_ref but "
          "explodes far from it; k1 is negative on single samples and even on batch means "
          "near pi_ref.",
          "KL estimators and mode-seeking (notebook 05)")
def kl_estimators():
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.bandit.kl_study import (
        batch_negative_probability,
        batch_negative_probability_normal,
        estimator_table,
        tilted_policies,
    )

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
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.bandit.kl_study import kl_gradients, kl_penalised_ascent
    from rlhf_toy.bandit.modes import forward_kl_regularised_policy
    from rlhf_toy.kl import kl_divergence
    from rlhf_toy.optimal import log_optimal_policy, optimal_policy

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
        run = kl_penalised_ascent(env.pi_ref, env.r_star, beta, name, n_steps=1500, lr=4.0)
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
    from rlhf_toy.bandit.modes import (
        fit_gaussian,
        fit_gaussian_local,
        reverse_kl_landscape,
        two_mode_target,
    )

    grid = np.linspace(-12.0, 12.0, 601)
    far = two_mode_target(grid, (-3.0, 3.0), (0.7, 0.7), (0.5, 0.5))
    close = two_mode_target(grid, (-0.8, 0.8), (0.7, 0.7), (0.5, 0.5))
    far_fits = {"reverse": fit_gaussian(far, grid, "reverse"),
                "forward": fit_gaussian(far, grid, "forward"),
                "reverse, local from (0, 0.3)": fit_gaussian_local(far, grid, "reverse",
                                                                   (0.0, 0.3))}
    close_fits = {"reverse": fit_gaussian(close, grid, "reverse"),
                  "forward": fit_gaussian(close, grid, "forward")}
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
    from rlhf_toy.bandit.modes import rlhf_gaussian_fits, rlhf_mode_sweep, rlhf_mode_world

    grid, pi_ref, reward = rlhf_mode_world()
    sweep = rlhf_mode_sweep(pi_ref, reward, np.geomspace(0.01, 10.0, 60))
    shown_betas = (1.0, 0.2, 0.05)
    shown_sweep = rlhf_mode_sweep(pi_ref, reward, shown_betas)
    shown = dict(zip(shown_betas, shown_sweep["pi_star"], strict=True))
    fits = {**rlhf_gaussian_fits(pi_ref, reward, grid, 0.2), "beta": 0.2}
    return plots.plot_mode_collapse(grid, pi_ref, shown, sweep, fits)
