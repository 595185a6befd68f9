"""The KL-estimator table is exact in log space across every accepted beta.

References in 700-digit mpmath from the definitions (``q = pi_ref e^{r / beta} / Z``,
``l = log(pi_ref / q)``, ``k1 = -l``, ``k2 = l^2 / 2``, ``k3 = e^l - 1 - l``).
"""

import mpmath
import numpy as np
import pytest

from rlhf_toy.bandit.experiments.kl_study import (
    MIN_TABLE_KL,
    estimator_stats,
    estimator_table,
    tilted_policies,
)

WORLDS = [
    (np.array([0.2, 0.3, 0.5]), np.array([0.0, 1.0, 2.0])),
    (np.array([1e-300, 0.4, 0.0, 0.6]), np.array([5.0, -3.0, 7.0, 1.0])),
]
BETAS = [5e-4, 1e-3, 1e-2, 1 / 30, 0.1, 1.0, 100.0, 1e6, 1e8, 1e20, 1e100, 1e138]


def _reference(pi_ref, reward, beta):
    mpmath.mp.dps = 700
    keep = pi_ref > 0
    p = [mpmath.mpf(float(v)) for v in pi_ref[keep]]
    p = [v / sum(p) for v in p]
    r = [mpmath.mpf(float(v)) for v in reward[keep]]
    w = [pv * mpmath.exp(rv / mpmath.mpf(beta)) for pv, rv in zip(p, r, strict=True)]
    q = [wv / sum(w) for wv in w]
    log_r = [mpmath.log(pv / qv) for pv, qv in zip(p, q, strict=True)]
    kl = sum(qv * -lv for qv, lv in zip(q, log_r, strict=True))
    ks = {"k1": [-lv for lv in log_r], "k2": [lv**2 / 2 for lv in log_r],
          "k3": [mpmath.expm1(lv) - lv for lv in log_r]}
    out = {"kl": kl, "p_negative_k1": sum(qv for qv, lv in zip(q, log_r, strict=True) if lv > 0)}
    for name, k in ks.items():
        mean = sum(qv * kv for qv, kv in zip(q, k, strict=True))
        std = mpmath.sqrt(sum(qv * (kv - mean) ** 2 for qv, kv in zip(q, k, strict=True)))
        out[f"{name}_rel_bias"] = (mean - kl) / kl
        out[f"{name}_rel_std"] = std / kl
        out[f"{name}_std"] = std
    return out


@pytest.mark.parametrize("world", range(len(WORLDS)))
def test_matches_700_digit_references_from_near_to_far(world):
    pi_ref, reward = WORLDS[world]
    table = estimator_table(pi_ref, reward, BETAS)
    for i, beta in enumerate(BETAS):
        ref = _reference(pi_ref, reward, beta)
        for key, exact in ref.items():
            got = table[key][i]
            if abs(exact) > mpmath.mpf("1.7e308"):  # beyond float64: documented as +inf
                assert got == np.inf, (beta, key)
            elif abs(exact) < mpmath.mpf("1e-300"):
                assert abs(got) < 1e-290, (beta, key, got)
            elif key in ("k1_rel_bias", "k3_rel_bias"):  # exactly 0; the reference ~1e-600
                assert got == 0.0
            else:
                assert abs(got - float(exact)) <= 2e-13 * abs(float(exact)), (beta, key, got)


def test_agrees_with_the_generic_statistics_where_those_are_exact():
    pi_ref, reward = WORLDS[0]
    betas = np.array([0.3, 1.0, 3.0])
    table = estimator_table(pi_ref, reward, betas)
    stats = estimator_stats(tilted_policies(pi_ref, reward, betas), pi_ref)
    np.testing.assert_allclose(table["kl"], stats["kl"], rtol=1e-12)
    for name in ("k1", "k2", "k3"):
        np.testing.assert_allclose(table[f"{name}_std"], stats[name]["std"], rtol=1e-10)
    np.testing.assert_allclose(table["k2_bias"], stats["k2"]["bias"], rtol=1e-10)
    np.testing.assert_allclose(table["p_negative_k1"], stats["p_negative_k1"], rtol=1e-12)


def test_refuses_betas_where_the_relative_columns_are_not_computable():
    pi_ref, reward = WORLDS[0]
    with pytest.raises(ValueError, match=r"betas\[1\] = 1e\+308 .*not computable"):
        estimator_table(pi_ref, reward, [1.0, 1e308])
    with pytest.raises(ValueError, match="spread on the support of pi_ref is 0"):
        estimator_table(pi_ref, np.ones(3), [1.0])
    # the documented limit: a KL of about MIN_TABLE_KL is still reported, exactly
    beta = 1e138
    assert estimator_table(pi_ref, reward, [beta])["kl"][0] > MIN_TABLE_KL


def test_k3_spread_is_inf_only_where_it_exceeds_float64():
    """beta = 1e-3: pi* suppresses y = 0 by e^-2000, and std(k3) ~ e^1000 overflows;
    at beta = 1e-2 it is ~8.5e42 and reported."""
    pi_ref, reward = WORLDS[0]
    table = estimator_table(pi_ref, reward, [1e-3, 1e-2])
    assert table["k3_std"][0] == np.inf and np.isfinite(table["k3_std"][1])
    assert table["k3_std"][1] == pytest.approx(8.500572785480823e42, rel=1e-13)
    assert np.all(np.isfinite(table["kl"])) and np.all(np.isfinite(table["k1_rel_std"]))
