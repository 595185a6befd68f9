"""The pitfalls gallery's figures: what their studies compute, and that they draw it."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from rlhf_toy.presentation.figures.pitfalls import (
    length_bias_study,
    negative_kl_study,
    pitfall_length_bias,
    pitfall_negative_kl,
)
from rlhf_toy.presentation.plots.pitfalls import plot_length_bias, plot_negative_kl


def test_negative_kl_study_k1_is_unbiased_and_negative_k3_is_not():
    s = negative_kl_study(n_samples=4000, rng=1)
    k1, k3 = s["k1"], s["k3"]
    se = k1.std(ddof=1) / np.sqrt(k1.size)
    assert abs(k1.mean() - s["exact_kl"]) < 4 * se
    assert abs(k3.mean() - s["exact_kl"]) < 4 * k3.std(ddof=1) / np.sqrt(k3.size)
    assert np.mean(k1 < 0) > 0.1 and np.all(k3 >= 0)
    # larger batches: fewer negative means
    assert np.mean(s["batch_means"][8] < 0) > np.mean(s["batch_means"][64] < 0)


def test_length_bias_study_matches_the_two_normalisers():
    s = length_bias_study(lengths=(2, 8, 3, 5), rewards=(1.0, 0.0, 1.0, 0.0))
    lengths, push = s["lengths"], s["push"]
    G, T = len(lengths), lengths.max()
    adv = s["rewards"] - s["rewards"].mean()  # Dr. GRPO: no std division
    mask = np.arange(T) < lengths[:, None]
    per_length = adv[:, None] / (G * lengths[:, None])
    np.testing.assert_allclose(push["seq_mean"], np.where(mask, per_length, 0))
    np.testing.assert_allclose(push["constant"], np.where(mask, adv[:, None] / (G * T), 0))
    np.testing.assert_allclose(push["seq_mean"].sum(axis=1), adv / G)  # same total per response


def test_builders_draw_titled_labelled_figures():
    for fig in (pitfall_negative_kl(), pitfall_length_bias()):
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            assert ax.has_data() and ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_plots_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        plot_negative_kl(np.zeros(3), np.zeros(4), 0.1, {})
    with pytest.raises(ValueError, match="same length"):
        plot_length_bias([2, 3], [1.0], {"seq_mean": np.zeros((2, 3))})
