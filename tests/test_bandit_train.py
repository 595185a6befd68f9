"""The training loops of the tabular world, and the chapter's claims about what they reach.

- Exact gradient ascent on J(pi) = E[r] - beta KL converges to pi* = pi_ref e^{r/beta} / Z.
- DPO on preferences covering every pair converges to pi* of the reward that labelled them
  (DPO and RLHF share the population optimum: "DPO and PPO target the same optimal policy
  in theory").
- DPO on data that leaves responses uncovered moves probability onto them, even onto the
  worst one ("... not in practice": the coverage limits of a fixed preference data set).
- DPO can lower the log-probabilities of chosen *and* rejected responses while the margin
  between them grows.
"""

from functools import partial

import numpy as np
import pytest

from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.policy import TabularPolicy
from rlhf_toy.bandit.train import all_pairs_preferences, gradient_ascent, train_dpo
from rlhf_toy.bradley_terry import sample_comparisons
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import objective, optimal_policy, optimal_value
from rlhf_toy.preference_losses import cdpo_loss, dpo_loss, ipo_loss

# --- exact gradient ascent ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_ascent_converges_to_the_optimal_policy(seed):
    env = make_bandit(4, 8, proxy="exact", rng=seed)
    beta = 1.0
    res = gradient_ascent(env.pi_ref, env.r_star, beta, steps=2000, lr=8.0, record_every=50)
    pi_star = optimal_policy(env.pi_ref, env.r_star, beta)
    assert np.abs(res.policy.probs - pi_star).max() < 1e-6
    j_star = optimal_value(env.pi_ref, env.r_star, beta)
    obj = res.history["objective"]
    assert j_star - obj[-1] < 1e-10
    assert obj[0] == pytest.approx(objective(env.pi_ref, env.pi_ref, env.r_star, beta), abs=1e-14)
    assert np.all(np.diff(obj) >= -1e-13), "ascent with a small step never lowers J"
    assert np.all(obj <= j_star + 1e-12)


def test_gradient_ascent_history_is_exact_and_consistent():
    env = make_bandit(3, 6, proxy="gaussian", rng=4)
    beta, w = 0.7, np.array([0.5, 0.3, 0.2])
    res = gradient_ascent(env.r_star * 0 + env.pi_ref, env.r_hat, beta, steps=45, lr=3.0,
                          prompt_probs=w, record_every=10, eval_rewards={"gold": env.r_star})
    h = res.history
    np.testing.assert_array_equal(h["steps"], [0, 10, 20, 30, 40, 45])
    assert h["probs"].shape == (6, 3, 6)
    for key in ("objective", "kl", "reward", "gold"):
        assert h[key].shape == (6,)
    np.testing.assert_allclose(h["probs"][-1], res.policy.probs, rtol=0, atol=0)
    for probs, kl, reward, gold, obj in zip(h["probs"], h["kl"], h["reward"], h["gold"],
                                            h["objective"], strict=True):
        assert kl == pytest.approx(w @ kl_divergence(probs, env.pi_ref), rel=1e-12, abs=1e-15)
        assert reward == pytest.approx(w @ (probs * env.r_hat).sum(1), rel=1e-12)
        assert gold == pytest.approx(w @ (probs * env.r_star).sum(1), rel=1e-12)
        assert obj == pytest.approx(objective(probs, env.pi_ref, env.r_hat, beta, w), rel=1e-12)
    every = gradient_ascent(env.pi_ref, env.r_hat, beta, steps=45, lr=3.0, prompt_probs=w)
    assert "probs" not in every.history and every.history["steps"].shape == (46,)
    np.testing.assert_array_equal(every.policy.probs, res.policy.probs)


def test_gradient_ascent_step_is_the_exact_gradient():
    """One step moves the logits by lr * dJ/dz, checked by central differences."""
    env = make_bandit(2, 5, proxy="exact", rng=5)
    beta, lr = 0.8, 1e-3
    z0 = np.log(env.pi_ref) + np.random.default_rng(0).standard_normal((2, 5))

    def j_of(z):
        return objective(TabularPolicy(z).probs, env.pi_ref, env.r_star, beta)

    fd = np.zeros_like(z0)
    for idx in np.ndindex(z0.shape):
        e = np.zeros_like(z0)
        e[idx] = 1e-6
        fd[idx] = (j_of(z0 + e) - j_of(z0 - e)) / 2e-6
    z1 = gradient_ascent(env.pi_ref, env.r_star, beta, steps=1, lr=lr,
                         init_logits=z0).policy.logits
    np.testing.assert_allclose((z1 - z0) / lr, fd, rtol=1e-6, atol=1e-9)


def test_gradient_ascent_keeps_zeros_of_pi_ref_exactly_zero():
    pi_ref = np.array([[0.5, 0.0, 0.5], [0.0, 0.3, 0.7]])
    reward = np.array([[0.0, 100.0, 1.0], [50.0, 0.0, 1.0]])  # huge reward off the support
    res = gradient_ascent(pi_ref, reward, 0.5, steps=500, lr=2.0)
    assert np.all(res.policy.probs[pi_ref == 0] == 0.0)
    np.testing.assert_allclose(res.policy.probs, optimal_policy(pi_ref, reward, 0.5), atol=1e-9)


def test_gradient_ascent_raises_naming_the_step_on_overflow():
    with pytest.raises(FloatingPointError, match="logits overflow at step 0"):
        gradient_ascent([[0.5, 0.5]], [[0.0, 1e200]], 1.0, steps=5, lr=1e200)


def test_gradient_ascent_validates_its_inputs():
    pi_ref, r = np.array([[0.5, 0.5, 0.0]]), np.zeros((1, 3))
    with pytest.raises(ValueError, match="beta"):
        gradient_ascent(pi_ref, r, 0.0, steps=1, lr=1.0)
    with pytest.raises(ValueError, match="lr"):
        gradient_ascent(pi_ref, r, 1.0, steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="steps"):
        gradient_ascent(pi_ref, r, 1.0, steps=-1, lr=1.0)
    with pytest.raises(ValueError, match="init_logits must be -inf where pi_ref is 0"):
        gradient_ascent(pi_ref, r, 1.0, steps=1, lr=1.0, init_logits=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="reward must be finite"):
        gradient_ascent(pi_ref, [[0.0, np.nan, 0.0]], 1.0, steps=1, lr=1.0)
    with pytest.raises(ValueError, match="same shape"):
        gradient_ascent(pi_ref, np.zeros((1, 2)), 1.0, steps=1, lr=1.0)
    with pytest.raises(ValueError, match="eval_rewards"):
        gradient_ascent(pi_ref, r, 1.0, steps=1, lr=1.0, eval_rewards={"g": np.zeros(3)})
    with pytest.raises(ValueError, match="clashes"):
        gradient_ascent(pi_ref, r, 1.0, steps=1, lr=1.0, eval_rewards={"kl": r})


# --- preference data sets --------------------------------------------------------------------


def test_all_pairs_weights_are_the_limit_of_sampled_comparisons():
    """Frequencies of (x, y_w, y_l), y_w != y_l, in 4e5 sampled comparisons match the weights."""
    env = make_bandit(2, 4, proxy="exact", rng=6)
    x, y_w, y_l, weights = all_pairs_preferences(env.r_star, pi=env.pi_ref)
    assert weights.sum() == pytest.approx(1.0, abs=1e-15)
    assert x.size == 2 * 4 * 3 and np.all(y_w != y_l)
    sx, sw, sl = sample_comparisons(env.pi_ref, env.r_star, 400_000, rng=0)
    keep = sw != sl
    codes = (sx[keep] * 4 + sw[keep]) * 4 + sl[keep]
    freq = np.bincount(codes, minlength=32) / keep.sum()
    expected = np.zeros(32)
    expected[(x * 4 + y_w) * 4 + y_l] = weights
    se = np.sqrt(expected * (1 - expected) / keep.sum()) + 1e-12
    assert np.max(np.abs(freq - expected) / se) < 5.0  # within 5 standard errors


def test_all_pairs_coverage_and_uniform_pairs():
    reward = np.array([[0.0, 1.0, 2.0, 3.0]])
    covered = np.array([[True, False, True, True]])
    x, y_w, y_l, w = all_pairs_preferences(reward, covered=covered)
    assert set(y_w) | set(y_l) == {0, 2, 3}
    # uniform pairs: each unordered pair has total weight 1/3, split by Bradley-Terry
    total = {}
    for a, b, wi in zip(y_w, y_l, w, strict=True):
        total[frozenset((a, b))] = total.get(frozenset((a, b)), 0.0) + wi
    np.testing.assert_allclose(sorted(total.values()), [1 / 3] * 3, rtol=1e-14)
    i = np.flatnonzero((y_w == 3) & (y_l == 0))[0]
    assert w[i] == pytest.approx((1 / 3) / (1 + np.exp(-3.0)), rel=1e-14)
    with pytest.raises(ValueError, match="empty"):
        all_pairs_preferences(reward, covered=np.array([[True, False, False, False]]))


# --- DPO converges to pi* on full coverage -----------------------------------------------------


@pytest.mark.parametrize("seed, beta, pair_policy", [(0, 0.5, "ref"), (1, 1.0, "uniform"),
                                                     (2, 0.2, "ref")])
def test_dpo_on_all_pairs_converges_to_the_optimal_policy(seed, beta, pair_policy):
    env = make_bandit(4, 8, proxy="exact", rng=seed)
    pi = env.pi_ref if pair_policy == "ref" else None
    x, y_w, y_l, w = all_pairs_preferences(env.r_star, pi=pi)
    res = train_dpo(env.pi_ref, x, y_w, y_l, beta, weights=w, steps=1500, lr=20.0 / beta**2)
    pi_star = optimal_policy(env.pi_ref, env.r_star, beta)
    kl = kl_divergence(res.policy.probs, pi_star)
    assert np.all(kl < 1e-8), kl
    loss = res.history["loss"]
    assert np.all(np.diff(loss) <= 1e-15), "full-batch GD on a convex loss never goes up"
    assert loss[0] == pytest.approx(np.log(2.0), rel=1e-14)


def test_dpo_with_adam_also_reaches_the_optimal_policy():
    env = make_bandit(3, 6, proxy="exact", rng=3)
    x, y_w, y_l, w = all_pairs_preferences(env.r_star, pi=env.pi_ref)
    res = train_dpo(env.pi_ref, x, y_w, y_l, 0.5, weights=w, steps=1500, lr=0.05,
                    optimizer="adam")
    pi_star = optimal_policy(env.pi_ref, env.r_star, 0.5)
    assert np.all(kl_divergence(res.policy.probs, pi_star) < 1e-8)


def test_dpo_named_and_callable_losses_agree():
    env = make_bandit(2, 5, proxy="exact", rng=1)
    x, y_w, y_l = sample_comparisons(env.pi_ref, env.r_star, 60, rng=1)
    named = train_dpo(env.pi_ref, x, y_w, y_l, 0.3, steps=20, lr=5.0, loss="dpo")
    called = train_dpo(env.pi_ref, x, y_w, y_l, 0.3, steps=20, lr=5.0, loss=dpo_loss)
    smoothed0 = train_dpo(env.pi_ref, x, y_w, y_l, 0.3, steps=20, lr=5.0,
                          loss=partial(cdpo_loss, label_smoothing=0.0))
    np.testing.assert_array_equal(named.policy.logits, called.policy.logits)
    np.testing.assert_allclose(smoothed0.policy.logits, named.policy.logits, rtol=1e-12,
                               atol=1e-12)
    ipo = train_dpo(env.pi_ref, x, y_w, y_l, 0.3, steps=20, lr=0.5, loss="ipo")
    np.testing.assert_array_equal(
        ipo.policy.logits,
        train_dpo(env.pi_ref, x, y_w, y_l, 0.3, steps=20, lr=0.5, loss=ipo_loss).policy.logits)
    assert not np.allclose(ipo.policy.logits, named.policy.logits)


def test_dpo_step_is_the_exact_gradient_of_the_weighted_loss():
    """One step equals -lr times the central-difference gradient, duplicates included."""
    env = make_bandit(2, 4, proxy="exact", rng=2)
    x = np.array([0, 0, 0, 1, 1])
    y_w = np.array([1, 1, 2, 0, 3])
    y_l = np.array([0, 0, 1, 3, 0])  # a duplicated pair, a response both chosen and rejected
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    beta, lr = 0.7, 1e-3
    z0 = np.log(env.pi_ref) + np.random.default_rng(1).standard_normal((2, 4))
    log_ref = np.log(env.pi_ref)

    def loss_of(z):
        lp = TabularPolicy(z).log_probs
        loss, _, _ = dpo_loss(lp[x, y_w], lp[x, y_l], log_ref[x, y_w], log_ref[x, y_l], beta)
        return float(w @ loss / w.sum())

    fd = np.zeros_like(z0)
    for idx in np.ndindex(z0.shape):
        e = np.zeros_like(z0)
        e[idx] = 1e-6
        fd[idx] = (loss_of(z0 + e) - loss_of(z0 - e)) / 2e-6
    z1 = train_dpo(env.pi_ref, x, y_w, y_l, beta, weights=w, steps=1, lr=lr,
                   init_logits=z0).policy.logits
    np.testing.assert_allclose((z0 - z1) / lr, fd, rtol=1e-6, atol=1e-10)


# --- DPO's coverage failure: uncovered responses gain probability ------------------------------


def test_dpo_moves_probability_onto_an_uncovered_response_with_the_worst_reward():
    """Data compare only a rare good response A with a common bad one B; U is never seen.

    Each pair moves the logits of A and B by equal and opposite amounts and never touches U,
    so z_A + z_B is conserved and the data fix only pi(A)/pi(B). At convergence
    pi(A)/pi(B) = pi*(A)/pi*(B), but e^{z_A} + e^{z_B} has shrunk (B fell further than A
    rose), and the freed mass goes to U through the normaliser: U, with the worst gold
    reward, ends up *more* likely than under pi_ref, while pi* makes it far less likely.
    """
    #                    A     B     U     C
    pi_ref = np.array([[0.05, 0.60, 0.30, 0.05]])
    r_star = np.array([[1.0, -1.0, -3.0, 0.0]])
    covered = np.array([[True, True, False, True]])
    beta = 1.0
    x, y_w, y_l, w = all_pairs_preferences(r_star, covered=covered)
    res = train_dpo(pi_ref, x, y_w, y_l, beta, weights=w, steps=2000, lr=4.0,
                    eval_rewards={"gold": r_star}, record_every=100)
    pi_dpo = res.policy.probs[0]
    pi_star = optimal_policy(pi_ref, r_star, beta)[0]
    u = 2
    assert r_star[0, u] == r_star.min() and not covered[0, u]
    assert pi_star[u] < 0.2 * pi_ref[0, u]  # the optimum nearly removes U ...
    assert pi_dpo[u] > 1.3 * pi_ref[0, u]  # ... DPO makes it more likely than pi_ref does
    # the data cannot tell the two apart: same ratios on the covered responses, same loss
    cov = covered[0]
    np.testing.assert_allclose(pi_dpo[cov] / pi_dpo[cov].sum(), pi_star[cov] / pi_star[cov].sum(),
                               rtol=1e-8)
    log_ref = np.log(pi_ref)
    loss_star, _, _ = dpo_loss(np.log(pi_star)[y_w], np.log(pi_star)[y_l], log_ref[0, y_w],
                               log_ref[0, y_l], beta)
    assert res.history["loss"][-1] == pytest.approx(w @ loss_star, rel=1e-10)
    # the closed form of the limit: logits log pi_ref + (r - mean_C r)/beta on the covered
    # responses, unchanged elsewhere (implicit bias of gradient descent from pi_ref)
    z = np.log(pi_ref[0]) + np.where(cov, (r_star[0] - r_star[0, cov].mean()) / beta, 0.0)
    np.testing.assert_allclose(pi_dpo, np.exp(z) / np.exp(z).sum(), rtol=1e-8)
    # gold reward is worse than under the optimum it was meant to reach
    gold_star = pi_star @ r_star[0]
    assert res.history["gold"][-1] < gold_star - 0.5


# --- DPO lowers the log-probabilities of chosen and rejected while the margin grows ----------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dpo_lowers_both_log_probs_while_the_margin_grows(seed):
    """Finite Bradley-Terry data sampled from pi_ref, as in practice."""
    env = make_bandit(8, 16, proxy="exact", rng=seed)
    x, y_w, y_l = sample_comparisons(env.pi_ref, env.r_star, 200, rng=seed)
    beta = 0.5
    res = train_dpo(env.pi_ref, x, y_w, y_l, beta, steps=1000, lr=2.0 / beta**2,
                    record_every=50, eval_rewards={"gold": env.r_star})
    h = res.history
    assert h["logp_chosen"][-1] < h["logp_chosen"][0] - 0.5
    assert h["logp_rejected"][-1] < h["logp_rejected"][0] - 2.0
    assert np.all(np.diff(h["margin"]) > 0)
    assert h["margin"][0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(h["loss"]) < 0)
    assert h["accuracy"][-1] > 0.7  # not 1: Bradley-Terry labels contradict each other
    assert h["gold"][-1] > h["gold"][0]  # and yet the policy did improve on the gold reward


# --- validation and failures -------------------------------------------------------------------


def test_train_dpo_validates_its_inputs():
    pi_ref = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    x, y_w, y_l = np.array([0, 1]), np.array([0, 2]), np.array([1, 0])
    ok = {"steps": 1, "lr": 1.0}
    with pytest.raises(ValueError, match="y_w\\[0\\] = 2 has pi_ref = 0"):
        train_dpo(pi_ref, [0], [2], [1], 1.0, **ok)
    with pytest.raises(ValueError, match="y_l must hold indices in \\[0, 3\\)"):
        train_dpo(pi_ref, x, y_w, [1, 3], 1.0, **ok)
    with pytest.raises(ValueError, match="x must hold integer indices"):
        train_dpo(pi_ref, [0.0, 1.0], y_w, y_l, 1.0, **ok)
    with pytest.raises(ValueError, match="y_l must have length 2 as x"):
        train_dpo(pi_ref, x, y_w, [1], 1.0, **ok)
    with pytest.raises(ValueError, match="cdpo needs its label smoothing"):
        train_dpo(pi_ref, x, y_w, y_l, 1.0, loss="cdpo", **ok)
    with pytest.raises(ValueError, match="optimizer"):
        train_dpo(pi_ref, x, y_w, y_l, 1.0, optimizer="sgd", **ok)
    with pytest.raises(ValueError, match="weights"):
        train_dpo(pi_ref, x, y_w, y_l, 1.0, weights=[1.0, -1.0], **ok)
    with pytest.raises(ValueError, match="beta"):
        train_dpo(pi_ref, x, y_w, y_l, np.nan, **ok)
    with pytest.raises(ValueError, match="init_logits must be finite on every response"):
        train_dpo(pi_ref, x, y_w, y_l, 1.0, init_logits=[[0.0, -np.inf, -np.inf],
                                                         [0.0, 0.0, 0.0]], **ok)


def test_train_dpo_raises_naming_the_step_on_a_non_finite_gradient():
    calls = []

    def flaky_loss(pc, pr, rc, rr, beta):
        calls.append(1)
        loss, g_c, g_r = dpo_loss(pc, pr, rc, rr, beta)
        if len(calls) == 4:
            g_c = np.full_like(g_c, np.nan)
        return loss, g_c, g_r

    with pytest.raises(FloatingPointError, match="step 3"):
        train_dpo([[0.5, 0.5]], [0], [0], [1], 1.0, steps=10, lr=1.0, loss=flaky_loss)


# --- exact records and data sets, entry by entry ------------------------------------------------


def _brute_force_all_pairs(reward, pi, covered, prompt_probs):
    """The weights of all_pairs_preferences by a loop over every (x, y_w, y_l)."""
    n_prompts, n_responses = reward.shape
    rows = {}
    for x in range(n_prompts):
        ok = [y for y in range(n_responses) if covered[x, y] and pi[x, y] > 0]
        q = {y: pi[x, y] / sum(pi[x, k] for k in ok) for y in ok}
        for a in ok:
            for b in ok:
                if a != b:
                    p = 1.0 / (1.0 + np.exp(-(reward[x, a] - reward[x, b])))
                    rows[(x, a, b)] = prompt_probs[x] * q[a] * q[b] * p
    total = sum(rows.values())
    return {k: v / total for k, v in rows.items()}


def test_all_pairs_weights_with_zeros_in_pi_and_unequal_coverage_match_a_brute_force():
    reward = np.array([[0.3, -1.0, 2.0, 0.5], [1.0, 0.0, -0.5, 4.0], [0.0, 0.7, 0.1, -2.0]])
    pi = np.array([[0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.25, 0.25], [0.5, 0.2, 0.0, 0.3]])
    covered = np.array([[True, True, True, True], [True, False, True, True],
                        [True, True, True, False]])
    prompt_probs = np.array([0.5, 0.2, 0.3])
    x, y_w, y_l, w = all_pairs_preferences(reward, pi=pi, covered=covered,
                                           prompt_probs=prompt_probs)
    expected = _brute_force_all_pairs(reward, pi, covered, prompt_probs)
    got = {(int(a), int(b), int(c)): float(v) for a, b, c, v in zip(x, y_w, y_l, w, strict=True)}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-13), key
    # each prompt's pairs carry exactly its probability: 2 pairs for prompt 2, 6 for the others
    np.testing.assert_allclose(np.bincount(x, weights=w, minlength=3) / w.sum(),
                               np.bincount(x, weights=w, minlength=3), rtol=1e-15)
    assert np.bincount(x).tolist() == [6, 6, 2]


def test_all_pairs_with_no_mass_on_the_covered_prompts_is_a_value_error():
    reward = np.zeros((2, 3))
    covered = np.array([[True, True, False], [True, False, False]])
    with pytest.raises(ValueError, match="prompt_probs puts no mass"):
        all_pairs_preferences(reward, covered=covered, prompt_probs=np.array([0.0, 1.0]))


def test_train_dpo_weights_summing_to_zero_is_a_value_error():
    pi_ref = np.full((1, 3), 1 / 3)
    with pytest.raises(ValueError, match="weights must be >= 0 with a positive sum"):
        train_dpo(pi_ref, [0, 0], [1, 2], [0, 1], 0.5, steps=1, lr=0.1, weights=[0.0, 0.0])


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_train_dpo_history_is_the_exact_weighted_record_of_each_step(optimizer):
    """Every recorded scalar recomputed from the recorded policy: the margin carries beta,
    a tie (y_w == y_l, margin 0) is not a correct pair, logp_chosen is the chosen one."""
    rng = np.random.default_rng(3)
    pi_ref = rng.dirichlet(np.ones(4), size=2)
    x = np.array([0, 0, 1, 1, 0, 1])
    y_w = np.array([1, 2, 0, 3, 3, 2])
    y_l = np.array([0, 3, 2, 1, 3, 2])  # the last two pairs are ties
    weights = np.array([0.3, 0.1, 0.2, 0.15, 0.1, 0.15])
    prompt_probs = np.array([0.7, 0.3])
    beta = 0.37
    res = train_dpo(pi_ref, x, y_w, y_l, beta, steps=6, lr=0.5, weights=weights,
                    optimizer=optimizer, prompt_probs=prompt_probs, record_every=2)
    h = res.history
    assert h["steps"].tolist() == [0, 2, 4, 6]
    assert abs(h["margin"][0]) < 1e-15  # pi = pi_ref: every margin 0 up to rounding
    for k in range(4):
        pi = h["probs"][k]
        logp, log_ref = np.log(pi), np.log(pi_ref)
        chosen, rejected = logp[x, y_w], logp[x, y_l]
        margin = beta * ((chosen - log_ref[x, y_w]) - (rejected - log_ref[x, y_l]))
        loss, _, _ = dpo_loss(chosen, rejected, log_ref[x, y_w], log_ref[x, y_l], beta)
        assert h["logp_chosen"][k] == pytest.approx(weights @ chosen, rel=1e-12)
        assert h["logp_rejected"][k] == pytest.approx(weights @ rejected, rel=1e-12)
        assert h["margin"][k] == pytest.approx(weights @ margin, rel=1e-12, abs=1e-15)
        if k > 0:  # at step 0 the margins are rounding noise around 0
            assert h["accuracy"][k] == pytest.approx(weights @ (margin > 0), abs=1e-15)
        assert h["loss"][k] == pytest.approx(weights @ loss, rel=1e-12)
        assert h["kl"][k] == pytest.approx(prompt_probs @ kl_divergence(pi, pi_ref), rel=1e-12,
                                           abs=1e-15)
    assert 0.0 < h["accuracy"][-1] <= 1.0 - weights[4:].sum() + 1e-15  # ties never count
    assert h["logp_chosen"][-1] != h["logp_rejected"][-1]
    np.testing.assert_allclose(h["probs"][-1], res.policy.probs, rtol=1e-15)


def _exact_kl_gradient(logp, log_ref):
    """d KL(pi || pi_ref) / d logits per prompt: pi (d - E_pi d), d = log(pi / pi_ref)."""
    pi = np.exp(logp)
    d = np.where(pi > 0, logp - log_ref, 0.0)
    return pi * (d - (pi * d).sum(-1, keepdims=True))


def test_gradient_ascent_with_the_exact_kl_gradient_is_the_default_ascent():
    """kl_gradient = the true KL gradient reproduces kl_gradient=None step for step
    (3 prompts, 4 responses: no broadcast can hide a wrong axis)."""
    env = make_bandit(3, 4, proxy="exact", rng=2)
    kw = dict(steps=25, lr=2.0, prompt_probs=np.array([0.5, 0.2, 0.3]), record_every=5)
    a = gradient_ascent(env.pi_ref, env.r_star, 0.4, **kw)
    b = gradient_ascent(env.pi_ref, env.r_star, 0.4, kl_gradient=_exact_kl_gradient, **kw)
    np.testing.assert_allclose(b.history["probs"], a.history["probs"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(b.history["objective"], a.history["objective"], rtol=1e-12)
    assert not np.allclose(a.history["probs"][-1], env.pi_ref)  # it moved
    # the penalty-free direction: kl_gradient = 0 climbs E r alone, past the regularised optimum
    c = gradient_ascent(env.pi_ref, env.r_star, 0.4, kl_gradient=lambda lp, lr: 0 * lp, **kw)
    assert c.history["reward"][-1] > a.history["reward"][-1]
    with pytest.raises(ValueError, match="kl_gradient must be callable"):
        gradient_ascent(env.pi_ref, env.r_star, 0.4, kl_gradient=1.0, **kw)


def test_records_are_taken_at_every_kth_step_and_the_last():
    res = gradient_ascent(np.full((1, 3), 1 / 3), np.array([[0.0, 1.0, 2.0]]), 1.0, steps=5,
                          lr=0.5, record_every=2)
    assert res.history["steps"].tolist() == [0, 2, 4, 5]
    res = gradient_ascent(np.full((1, 3), 1 / 3), np.array([[0.0, 1.0, 2.0]]), 1.0, steps=4,
                          lr=0.5, record_every=2)
    assert res.history["steps"].tolist() == [0, 2, 4]
    with pytest.raises(AttributeError):
        res.policy = None  # a TrainResult is frozen


def test_messages_point_at_the_first_bad_entry():
    pi_ref = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"got 0.0 at index \(0, 2\)"):
        gradient_ascent(pi_ref, np.zeros((2, 3)), 1.0, steps=1, lr=0.1,
                        init_logits=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"y_w\[1\] = 2 has pi_ref = 0 at prompt 0"):
        train_dpo(pi_ref, [1, 0, 1], [1, 2, 0], [2, 1, 1], 1.0, steps=1, lr=0.1)


def test_train_dpo_default_weights_are_uniform_and_zero_weights_are_allowed():
    pi_ref = np.array([[0.2, 0.3, 0.5]])
    x, y_w, y_l = [0, 0, 0], [1, 2, 2], [0, 0, 1]
    res = train_dpo(pi_ref, x, y_w, y_l, 0.5, steps=0, lr=0.1)
    lp = np.log(pi_ref[0])
    loss, _, _ = dpo_loss(lp[y_w], lp[y_l], lp[y_w], lp[y_l], 0.5)
    assert res.history["loss"][0] == pytest.approx(loss.mean(), rel=1e-12)
    w = train_dpo(pi_ref, x, y_w, y_l, 0.5, steps=0, lr=0.1, weights=[1.0, 0.0, 1.0])
    assert w.history["loss"][0] == pytest.approx((loss[0] + loss[2]) / 2, rel=1e-12)


def test_all_pairs_with_a_fully_uncovered_prompt():
    """A prompt with no covered response has no pairs; the others keep their weights."""
    reward = np.array([[0.0, 1.0, 2.0], [0.5, 0.0, 1.0]])
    covered = np.array([[True, True, True], [False, False, False]])
    x, y_w, y_l, w = all_pairs_preferences(reward, pi=np.full((2, 3), 1 / 3), covered=covered)
    assert set(x.tolist()) == {0} and w.sum() == pytest.approx(1.0, abs=1e-15)


def test_loops_are_silent_unless_verbose(capsys):
    pi_ref, r = np.full((1, 3), 1 / 3), np.array([[0.0, 1.0, 2.0]])
    gradient_ascent(pi_ref, r, 1.0, steps=3, lr=0.1)
    train_dpo(pi_ref, [0], [1], [0], 1.0, steps=3, lr=0.1)
    assert capsys.readouterr().err == ""
    train_dpo(pi_ref, [0], [1], [0], 1.0, steps=3, lr=0.1, verbose=True)
    assert "dpo" in capsys.readouterr().err


def test_overflowing_loops_raise_naming_the_step_and_the_hyper_parameters():
    pi_ref = np.array([[0.2, 0.3, 0.5]])
    with pytest.raises(FloatingPointError, match=r"at step \d+: beta, lr or the rewards"):
        train_dpo(pi_ref, [0], [1], [0], 1e308, steps=3, lr=0.1)
    with pytest.raises(ValueError, match="beta, lr or the rewards are too large"):
        gradient_ascent(pi_ref, np.array([[0.0, 1e308, -1e308]]), 1.0, steps=3, lr=10.0)
