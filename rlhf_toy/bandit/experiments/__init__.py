"""Experiments in the tabular world, one module per topic of the chapter.

- :mod:`~rlhf_toy.bandit.experiments.goodhart`: Goodhart curves (``beta`` sweeps,
  best-of-n, gradient-ascent trajectories) against ``d = sqrt(KL)``;
- :mod:`~rlhf_toy.bandit.experiments.proxy_error`: where and how much the proxy errs under
  an optimised policy (distributional shift);
- :mod:`~rlhf_toy.bandit.experiments.overestimation`: exercise 3, the expected
  overestimation of a noisy proxy, exact and Monte Carlo;
- :mod:`~rlhf_toy.bandit.experiments.ensembles`: reward-model ensembles (Coste et al. 2023);
- :mod:`~rlhf_toy.bandit.experiments.kl_study`: the KL estimators k1, k2, k3 and the KL
  penalty's gradients;
- :mod:`~rlhf_toy.bandit.experiments.modes`: mode-seeking of reverse KL;
- :mod:`~rlhf_toy.bandit.experiments.rft`: best-of-n against ``pi*`` and rejection-sampling
  fine-tuning.
"""

#: The experiments are the submodules; the package itself exports nothing.
__all__ = []
