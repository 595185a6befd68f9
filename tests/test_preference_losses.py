"""Properties of DPO and its relatives (chapter, DPO: Direct Preference Optimization)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlhf_toy.bradley_terry import preference_probability
from rlhf_toy.preference_losses import (
    cdpo_loss,
    dpo_loss,
    hinge_loss,
    implicit_reward,
    ipo_loss,
    kto_loss,
    orpo_loss,
    simpo_loss,
)

H = 1e-6  # central-difference step


def central_difference(f, x):
    """Elementwise derivative of an elementwise function: every loss is per example."""
    return (f(x + H) - f(x - H)) / (2 * H)


def logps(n, low=-30.0, high=0.0):
    return hnp.arrays(np.float64, n, elements=st.floats(low, high))


@st.composite
def pairs(draw, low=-30.0, high=0.0):
    """Policy and reference log-probs of n pairs, and a beta."""
    n = draw(st.integers(1, 8))
    pc, pr, rc, rr = (draw(logps(n, low, high)) for _ in range(4))
    beta = draw(st.floats(0.01, 10.0))
    return pc, pr, rc, rr, beta


REFERENCE_LOSSES = {
    "dpo": dpo_loss,
    "ipo": ipo_loss,
    "cdpo": lambda pc, pr, rc, rr, beta: cdpo_loss(pc, pr, rc, rr, beta, label_smoothing=0.2),
    "hinge": hinge_loss,
}


def assert_grads_match(loss_fn, pc, pr, g_c, g_r, mask=None):
    fd_c = central_difference(lambda v: loss_fn(v, pr)[0], pc)
    fd_r = central_difference(lambda v: loss_fn(pc, v)[0], pr)
    if mask is not None:
        g_c, g_r, fd_c, fd_r = g_c[mask], g_r[mask], fd_c[mask], fd_r[mask]
    np.testing.assert_allclose(g_c, fd_c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_r, fd_r, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# gradients against central differences
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REFERENCE_LOSSES))
@given(problem=pairs())
def test_reference_loss_gradients_match_central_differences(name, problem):
    pc, pr, rc, rr, beta = problem
    fn = REFERENCE_LOSSES[name]
    loss, g_c, g_r = fn(pc, pr, rc, rr, beta)
    assert loss.shape == g_c.shape == g_r.shape == pc.shape
    mask = None
    if name == "hinge":  # not differentiable at the kink beta * h = 1
        margin = (pc - rc) - (pr - rr)
        mask = np.abs(1.0 - beta * margin) > 1e-3
    assert_grads_match(lambda c, r: fn(c, r, rc, rr, beta), pc, pr, g_c, g_r, mask)


@given(
    problem=pairs(),
    gamma=st.floats(-2.0, 5.0),
    lengths=st.tuples(st.floats(1.0, 50.0), st.floats(1.0, 50.0)),
)
def test_simpo_gradients_match_central_differences(problem, gamma, lengths):
    pc, pr, _, _, beta = problem
    len_c, len_r = lengths
    loss, g_c, g_r = simpo_loss(pc, pr, beta, gamma, len_c, len_r)
    assert loss.shape == pc.shape
    assert_grads_match(lambda c, r: simpo_loss(c, r, beta, gamma, len_c, len_r), pc, pr, g_c, g_r)


@given(
    n=st.integers(1, 8),
    data=st.data(),
    lam=st.floats(0.0, 5.0),
)
def test_orpo_gradients_match_central_differences(n, data, lam):
    # averaged log-probs kept a little below 0, where the odds stay finite
    avg_c = data.draw(logps(n, -20.0, -0.01))
    avg_r = data.draw(logps(n, -20.0, -0.01))
    len_c = data.draw(hnp.arrays(np.float64, n, elements=st.floats(1.0, 20.0)))
    len_r = data.draw(hnp.arrays(np.float64, n, elements=st.floats(1.0, 20.0)))
    pc, pr = avg_c * len_c, avg_r * len_r
    loss, g_c, g_r = orpo_loss(pc, pr, lam, len_c, len_r)
    assert loss.shape == pc.shape
    assert_grads_match(lambda c, r: orpo_loss(c, r, lam, len_c, len_r), pc, pr, g_c, g_r)


@given(
    n=st.integers(1, 8),
    data=st.data(),
    beta=st.floats(0.01, 10.0),
    kl_ref=st.floats(-1.0, 5.0),
    lambdas=st.tuples(st.floats(0.1, 3.0), st.floats(0.1, 3.0)),
)
def test_kto_gradient_matches_central_differences(n, data, beta, kl_ref, lambdas):
    policy, ref = data.draw(logps(n)), data.draw(logps(n))
    desirable = data.draw(hnp.arrays(bool, n))
    lambda_d, lambda_u = lambdas

    def f(p):
        return kto_loss(p, ref, desirable, beta, kl_ref, lambda_d, lambda_u)

    loss, grad = f(policy)
    assert loss.shape == grad.shape == policy.shape
    np.testing.assert_allclose(grad, central_difference(lambda p: f(p)[0], policy), atol=1e-6)


# --------------------------------------------------------------------------------------
# DPO: the chapter's claims
# --------------------------------------------------------------------------------------


@settings(max_examples=20)  # an exact identity: few examples suffice
@given(policy=st.tuples(logps(5), logps(5)), beta=st.floats(1e-8, 1e8))
def test_dpo_at_the_reference_is_log_2_exactly(policy, beta):
    pc, pr = policy
    loss, g_c, g_r = dpo_loss(pc, pr, pc, pr, beta)
    np.testing.assert_array_equal(loss, np.log(2.0))
    np.testing.assert_allclose(g_c, -beta / 2, rtol=1e-15)
    np.testing.assert_allclose(g_r, beta / 2, rtol=1e-15)


@given(problem=pairs())
def test_dpo_gradient_raises_chosen_and_lowers_rejected(problem):
    pc, pr, rc, rr, beta = problem
    _, g_c, g_r = dpo_loss(pc, pr, rc, rr, beta)
    assert np.all(g_c < 0)  # gradient descent raises log pi(y_w)
    assert np.all(g_r > 0)  # ... and lowers log pi(y_l)
    np.testing.assert_array_equal(g_c, -g_r)
    # DESIGN: dL/dlog pi(y_w) = -beta sigma(h_l - h_w), h the implicit reward
    h_w, h_l = implicit_reward(pc, rc, beta), implicit_reward(pr, rr, beta)
    np.testing.assert_allclose(g_c, -beta * preference_probability(h_l, h_w), rtol=1e-9)


@settings(max_examples=20)  # an exact identity: few examples suffice
@given(problem=pairs())
def test_dpo_is_bradley_terry_on_the_implicit_reward(problem):
    pc, pr, rc, rr, beta = problem
    loss, _, _ = dpo_loss(pc, pr, rc, rr, beta)
    h_w, h_l = implicit_reward(pc, rc, beta), implicit_reward(pr, rr, beta)
    p = preference_probability(h_w, h_l)
    ok = p > 1e-300  # -log p itself underflows past there; dpo_loss does not
    np.testing.assert_allclose(loss[ok], -np.log(p[ok]), rtol=1e-9, atol=1e-15)


def test_dpo_broadcasts_reference_and_keeps_the_pairs_shape():
    pc = np.array([[-1.0, -2.0, -3.0], [-0.5, -0.1, -4.0]])
    pr = pc - 1.0
    loss, g_c, g_r = dpo_loss(
        pc, pr, ref_chosen=-1.0, ref_rejected=np.array([-2.0, -2.0, -2.0]), beta=0.5
    )
    assert loss.shape == g_c.shape == g_r.shape == (2, 3)
    expected, _, _ = dpo_loss(pc, pr, np.full_like(pc, -1.0), np.full_like(pc, -2.0), 0.5)
    np.testing.assert_array_equal(loss, expected)


def test_implicit_reward():
    np.testing.assert_allclose(implicit_reward([-1.0, -3.0], -2.0, 0.5), [0.5, -0.5])
    with pytest.raises(ValueError, match="beta"):
        implicit_reward(-1.0, -2.0, 0.0)
    with pytest.raises(ValueError, match="broadcast"):
        implicit_reward(np.zeros(2), np.zeros(3), 1.0)


# --------------------------------------------------------------------------------------
# relatives: special cases that tie them to each other
# --------------------------------------------------------------------------------------


@settings(max_examples=20)  # an exact identity: few examples suffice
@given(problem=pairs())
def test_cdpo_with_no_smoothing_is_dpo(problem):
    pc, pr, rc, rr, beta = problem
    for a, b in zip(
        cdpo_loss(pc, pr, rc, rr, beta, 0.0), dpo_loss(pc, pr, rc, rr, beta), strict=True
    ):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=20)  # an exact identity: few examples suffice
@given(problem=pairs())
def test_cdpo_with_half_smoothing_ignores_the_label(problem):
    pc, pr, rc, rr, beta = problem
    loss, g_c, g_r = cdpo_loss(pc, pr, rc, rr, beta, 0.5)
    loss_swapped, g_c_swapped, g_r_swapped = cdpo_loss(pr, pc, rr, rc, beta, 0.5)
    np.testing.assert_allclose(loss, loss_swapped, rtol=1e-12)
    np.testing.assert_allclose(g_c, g_r_swapped, rtol=1e-12, atol=1e-15)


def test_cdpo_minimum_is_at_the_smoothed_margin():
    beta, eps = 0.5, 0.1
    margin = np.log((1 - eps) / eps) / beta  # beta h = log((1 - eps) / eps)
    _, g_c, g_r = cdpo_loss(margin, 0.0, 0.0, 0.0, beta, eps)
    assert abs(g_c) < 1e-15 and abs(g_r) < 1e-15


def test_ipo_regresses_the_margin_onto_one_over_two_beta():
    beta = 0.25
    loss, g_c, g_r = ipo_loss(-1.0 + 2.0, -1.0, -1.0, -1.0, beta)  # h = 2 = 1/(2 beta)
    assert loss == 0.0 and g_c == 0.0 and g_r == 0.0
    loss, g_c, _ = ipo_loss(0.0, 0.0, 0.0, 0.0, beta)  # h = 0
    assert loss == pytest.approx(4.0) and g_c == pytest.approx(-4.0)


def test_hinge_is_zero_beyond_the_margin():
    beta = 0.5
    loss, g_c, g_r = hinge_loss([3.0, 1.0], [0.0, 0.0], 0.0, 0.0, beta)  # beta h = 1.5, 0.5
    np.testing.assert_array_equal(loss, [0.0, 0.5])
    np.testing.assert_array_equal(g_c, [0.0, -beta])
    np.testing.assert_array_equal(g_r, [0.0, beta])
    # at the kink the subgradient 0 is returned
    loss, g_c, _ = hinge_loss(2.0, 0.0, 0.0, 0.0, beta)
    assert loss == 0.0 and g_c == 0.0


@settings(max_examples=20)  # an exact identity: few examples suffice
@given(problem=pairs())
def test_simpo_without_margin_or_lengths_is_reference_free_dpo(problem):
    pc, pr, _, _, beta = problem
    simpo = simpo_loss(pc, pr, beta, gamma=0.0)
    dpo = dpo_loss(pc, pr, 0.0, 0.0, beta)
    for a, b in zip(simpo, dpo, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)


def test_simpo_normalises_by_length():
    # 10 tokens at -0.5 each versus 2 tokens at -1.0 each: chosen wins per token
    loss, g_c, g_r = simpo_loss(-5.0, -2.0, beta=2.0, gamma=0.5, len_chosen=10, len_rejected=2)
    z = 2.0 * (-0.5) - 2.0 * (-1.0) - 0.5
    assert loss == pytest.approx(np.log1p(np.exp(-z)))
    assert g_c == pytest.approx(-2.0 / 10 / (1 + np.exp(z)))
    assert g_r == pytest.approx(2.0 / 2 / (1 + np.exp(z)))


@settings(max_examples=20)  # an exact identity: few examples suffice
@given(policy=st.tuples(logps(4, -20.0, -0.01), logps(4, -20.0, -0.01)))
def test_orpo_without_odds_ratio_is_sft(policy):
    pc, pr = policy
    loss, g_c, g_r = orpo_loss(pc, pr, lam=0.0, len_chosen=4.0)
    np.testing.assert_allclose(loss, -pc / 4.0, rtol=1e-15)
    np.testing.assert_array_equal(g_c, -0.25)
    np.testing.assert_array_equal(g_r, 0.0)


def test_orpo_value_against_direct_formula():
    p_w, p_l = 0.6, 0.2
    loss, _, _ = orpo_loss(np.log(p_w), np.log(p_l), lam=0.7)
    odds_ratio = (p_w / (1 - p_w)) / (p_l / (1 - p_l))
    assert loss == pytest.approx(-np.log(p_w) + 0.7 * np.log1p(1 / odds_ratio), rel=1e-12)


def test_kto_values_and_directions():
    beta, z0 = 0.5, 0.3
    logp = np.array([-1.0, -1.0, -1.0, -1.0])
    ref = logp - np.array([z0, z0, 2.0, 2.0])  # h = z0, z0, 2, 2
    desirable = np.array([True, False, True, False])
    loss, grad = kto_loss(logp, ref, desirable, beta, kl_ref=z0, lambda_d=2.0, lambda_u=1.5)
    # at h = z0 the value is half the weight; beyond it desirable wins, undesirable loses
    np.testing.assert_allclose(loss[:2], [1.0, 0.75], rtol=1e-15)
    assert loss[2] < 1.0 and loss[3] > 0.75
    assert np.all(grad[desirable] < 0) and np.all(grad[~desirable] > 0)
    assert np.all((loss >= 0) & (loss <= np.where(desirable, 2.0, 1.5)))
    # labels as 0/1 and a scalar label broadcast
    loss01, _ = kto_loss(logp, ref, desirable.astype(int), beta, z0, 2.0, 1.5)
    np.testing.assert_array_equal(loss01, loss)
    loss_all, _ = kto_loss(logp, ref, True, beta, z0)
    assert loss_all.shape == (4,)


# --------------------------------------------------------------------------------------
# numerics at extreme margins and betas
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1e-8, 1.0, 1e8])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_extreme_margins_stay_finite(beta, sign):
    margin = sign * 1e4
    pc, pr = np.array([-1.0]), np.array([-1.0 - margin])
    zero = np.zeros(1)
    outputs = {
        "dpo": dpo_loss(pc, pr, zero, zero, beta),
        "ipo": ipo_loss(pc, pr, zero, zero, beta),
        "cdpo": cdpo_loss(pc, pr, zero, zero, beta, 0.1),
        "hinge": hinge_loss(pc, pr, zero, zero, beta),
        "simpo": simpo_loss(pc, pr, beta, gamma=1.0),
        "kto_d": kto_loss(pc - margin, zero, True, beta, kl_ref=0.0),
        "kto_u": kto_loss(pc - margin, zero, False, beta, kl_ref=0.0),
    }
    for name, arrays in outputs.items():
        for a in arrays:
            assert np.all(np.isfinite(a)), name
    dpo, _, _ = outputs["dpo"]
    z = beta * margin
    if z > 50:
        assert dpo[0] < 1e-20  # right ranking, confidently: loss ~ exp(-z)
    elif z < -50:
        assert dpo[0] == pytest.approx(-z, rel=1e-12)  # wrong ranking: loss ~ |z|, linear


@pytest.mark.parametrize("lam", [0.0, 1.0, 1e3])
def test_orpo_extreme_log_probs_stay_finite(lam):
    # chosen almost certain vs rejected impossible, and the reverse
    for pc, pr in [(-1e-12, -1e4), (-1e4, -1e-12), (-1e-300, -1e-300)]:
        for a in orpo_loss(np.array([pc]), np.array([pr]), lam):
            assert np.all(np.isfinite(a))
    loss, _, g_r = orpo_loss(-1e4, -1e-12, 1.0)
    assert loss == pytest.approx(1e4 + 1e4 - np.log(1e-12), rel=1e-9)
    assert g_r == pytest.approx(1e12, rel=1e-6)  # sigma(-m) / (1 - e^b) ~ 1 / 1e-12


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------

ALL_PAIR_LOSSES = {
    "dpo": lambda pc, pr, rc, rr, beta: dpo_loss(pc, pr, rc, rr, beta),
    "ipo": lambda pc, pr, rc, rr, beta: ipo_loss(pc, pr, rc, rr, beta),
    "cdpo": lambda pc, pr, rc, rr, beta: cdpo_loss(pc, pr, rc, rr, beta, 0.1),
    "hinge": lambda pc, pr, rc, rr, beta: hinge_loss(pc, pr, rc, rr, beta),
    "simpo": lambda pc, pr, rc, rr, beta: simpo_loss(pc, pr, beta, 0.5),
    "kto": lambda pc, pr, rc, rr, beta: kto_loss(pc, rc, True, beta),
}


@pytest.mark.parametrize("name", list(ALL_PAIR_LOSSES))
@pytest.mark.parametrize("beta", [0.0, -1.0, np.nan, np.inf, "0.1x", None])
def test_bad_beta_is_rejected(name, beta):
    z = np.zeros(3)
    with pytest.raises(ValueError, match="beta"):
        ALL_PAIR_LOSSES[name](z - 1, z - 2, z, z, beta)


@pytest.mark.parametrize("name", list(ALL_PAIR_LOSSES))
def test_nan_log_probs_are_rejected(name):
    z = np.zeros(3)
    bad = np.array([-1.0, np.nan, -1.0])
    with pytest.raises(ValueError, match="policy_(chosen|logp) must be finite"):
        ALL_PAIR_LOSSES[name](bad, z - 2, z, z, 0.1)
    if name != "kto":  # KTO is unpaired: no rejected response
        with pytest.raises(ValueError, match="policy_rejected must be finite"):
            ALL_PAIR_LOSSES[name](z - 1, bad, z, z, 0.1)
    if name != "simpo":  # SimPO has no reference model
        with pytest.raises(ValueError, match="ref_(chosen|logp) must be finite"):
            ALL_PAIR_LOSSES[name](z - 1, z - 2, bad, z, 0.1)


@pytest.mark.parametrize("name", ["dpo", "ipo", "cdpo", "hinge", "simpo"])
def test_shape_mismatch_is_rejected(name):
    with pytest.raises(ValueError, match="policy_chosen and policy_rejected"):
        ALL_PAIR_LOSSES[name](np.zeros(3) - 1, np.zeros(4) - 1, 0.0, 0.0, 0.1)
    if name != "simpo":
        with pytest.raises(ValueError, match="ref_chosen of shape"):
            ALL_PAIR_LOSSES[name](np.zeros(3) - 1, np.zeros(3) - 1, np.zeros(2), 0.0, 0.1)
        with pytest.raises(ValueError, match="ref_rejected of shape"):
            # a reference may broadcast *to* the pairs, never enlarge them
            ALL_PAIR_LOSSES[name](np.zeros(3) - 1, np.zeros(3) - 1, 0.0, np.zeros((2, 3)), 0.1)


@pytest.mark.parametrize("eps", [-0.1, 0.51, 1.0, np.nan])
def test_cdpo_rejects_label_smoothing_outside_zero_half(eps):
    with pytest.raises(ValueError, match="label_smoothing"):
        cdpo_loss(-1.0, -2.0, -1.0, -2.0, 0.1, eps)


def test_cdpo_accepts_the_closed_interval():
    for eps in (0.0, 0.5):
        loss, _, _ = cdpo_loss(-1.0, -2.0, -1.0, -2.0, 0.1, eps)
        assert loss == pytest.approx(np.log(2))


def test_simpo_and_orpo_reject_bad_lengths_and_values():
    with pytest.raises(ValueError, match="len_chosen must be > 0"):
        simpo_loss([-1.0], [-2.0], 1.0, 0.5, len_chosen=0)
    with pytest.raises(ValueError, match="len_rejected"):
        simpo_loss([-1.0], [-2.0], 1.0, 0.5, len_rejected=np.nan)
    with pytest.raises(ValueError, match="gamma"):
        simpo_loss([-1.0], [-2.0], 1.0, np.inf)
    with pytest.raises(ValueError, match="len_rejected of shape"):
        orpo_loss([-1.0], [-2.0], 1.0, len_rejected=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"policy_chosen / len_chosen must be < 0"):
        orpo_loss([-1.0, 0.0], [-2.0, -2.0], 1.0)
    with pytest.raises(ValueError, match=r"policy_rejected / len_rejected must be < 0"):
        orpo_loss([-1.0], [0.5], 1.0)
    for lam in (-0.1, np.nan):
        with pytest.raises(ValueError, match="lam"):
            orpo_loss([-1.0], [-2.0], lam)


def test_kto_rejects_bad_labels_and_weights():
    with pytest.raises(ValueError, match="desirable"):
        kto_loss([-1.0, -2.0], [-1.0, -1.0], [1, 2], 0.1)
    with pytest.raises(ValueError, match="desirable"):
        kto_loss([-1.0, -2.0], [-1.0, -1.0], ["yes", "no"], 0.1)
    with pytest.raises(ValueError, match="desirable of shape"):
        kto_loss([-1.0, -2.0], [-1.0, -1.0], [True, False, True], 0.1)
    with pytest.raises(ValueError, match="lambda_d"):
        kto_loss([-1.0], [-1.0], True, 0.1, lambda_d=0.0)
    with pytest.raises(ValueError, match="lambda_u"):
        kto_loss([-1.0], [-1.0], True, 0.1, lambda_u=-1.0)
    with pytest.raises(ValueError, match="kl_ref"):
        kto_loss([-1.0], [-1.0], True, 0.1, kl_ref=np.nan)


# --- the overflow guard: finite inputs whose losses leave float64 -----------------------

_FOUR = ("dpo_loss", "ipo_loss", "cdpo_loss", "hinge_loss")


@pytest.mark.parametrize("name", _FOUR)
def test_an_inf_minus_inf_margin_is_refused(name):
    fn = globals()[name]
    extra = (0.1,) if name == "cdpo_loss" else ()
    with pytest.raises(ValueError, match="overflow float64"):
        fn([1e308, -1.0], [1e308, -2.0], [-1e308, -1.0], [-1e308, -2.0], 1.0, *extra)


@pytest.mark.parametrize("name", _FOUR)
def test_a_one_sided_infinite_margin_gives_the_exact_limit(name):
    """``h = +inf`` from finite inputs: DPO/cDPO/hinge saturate; IPO's square overflows."""
    fn = globals()[name]
    extra = (0.1,) if name == "cdpo_loss" else ()
    args = ([1e308], [-1e308], [-1e308], [1e308], 1.0, *extra)
    if name == "ipo_loss":
        with pytest.raises(ValueError, match="ipo_loss: the inputs .* overflow float64"):
            fn(*args)
        return
    if name == "cdpo_loss":  # eps log sigma(-inf) = -inf: the loss itself is infinite
        with pytest.raises(ValueError, match="overflow float64"):
            fn(*args)
        return
    loss, g_w, g_l = fn(*args)
    assert loss[0] == 0.0 and g_w[0] == 0.0 and g_l[0] == 0.0


def test_overflowing_reference_free_losses_are_refused():
    with pytest.raises(ValueError, match="simpo_loss: the inputs"):
        simpo_loss([-1e308], [1e308], 1e8, 0.0)  # z = -inf: the loss is +inf
    with pytest.raises(ValueError, match="implicit_reward: the inputs"):
        implicit_reward([1e308], [-1e308], 2.0)
    # KTO saturates instead: u = +inf is its exact limit, loss and gradient 0
    loss, grad = kto_loss([1e308], [-1e308], [True], 1.0, kl_ref=[1e308])
    assert loss[0] == 0.0 and grad[0] == 0.0


def test_scalars_that_are_not_numbers_are_type_errors():
    for bad in ("0.1", True, 0.1j, None):
        with pytest.raises(TypeError, match="beta must be a real number"):
            dpo_loss(-1.0, -2.0, -1.0, -2.0, bad)
    with pytest.raises(TypeError, match="label_smoothing"):
        cdpo_loss(-1.0, -2.0, -1.0, -2.0, 0.1, "0.1")
    with pytest.raises(TypeError, match="policy_chosen must be real"):
        dpo_loss([-1.0 + 1j], [-2.0], [-1.0], [-2.0], 0.1)


def test_kto_values_against_the_sigmoid_formula():
    """``lambda_d sigma(-beta (h - z0))`` if desirable, ``lambda_u sigma(-beta (z0 - h))`` if
    not, away from ``h = z0`` (where every sign convention agrees)."""
    from scipy.special import expit

    beta, z0 = 0.5, 0.3
    h = np.array([2.0, 2.0, -1.5, -1.5])
    desirable = np.array([True, False, True, False])
    loss, _ = kto_loss(h - 1.0, np.full(4, -1.0), desirable, beta, kl_ref=z0, lambda_d=2.0,
                       lambda_u=1.5)
    want = np.where(desirable, 2.0 * expit(-beta * (h - z0)), 1.5 * expit(-beta * (z0 - h)))
    np.testing.assert_allclose(loss, want, rtol=1e-14)


def test_orpo_without_odds_ratio_is_sft_even_at_probabilities_next_to_one():
    """lam = 0 is plain SFT exactly, also where ``1 - P`` is below 1e-308 and the odds-ratio
    pull ``sigma(-m) / (1 - P_w)`` would overflow: it is never formed."""
    pc = pr = np.array([-1e-320, -5e-324])
    loss, g_c, g_r = orpo_loss(pc, pr, lam=0.0)
    np.testing.assert_array_equal(loss, -pc)
    np.testing.assert_array_equal(g_c, -1.0)
    np.testing.assert_array_equal(g_r, 0.0)
