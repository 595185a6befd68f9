"""rlhf_toy: the runnable companion to the chapter *RLHF and Alignment*.

Two worlds share one set of objectives:

- the exact tabular world (:mod:`rlhf_toy.bandit`): a contextual bandit whose
  expectations and KLs are sums over tables, never samples;
- the sequence world (:mod:`rlhf_toy.gpt`): a tiny GPT-2 written in numpy with a
  hand-written backward pass.

The objectives (:mod:`rlhf_toy.kl`, :mod:`rlhf_toy.optimal`,
:mod:`rlhf_toy.bradley_terry`, :mod:`rlhf_toy.preference_losses`,
:mod:`rlhf_toy.best_of_n`, :mod:`rlhf_toy.gao`) take log-probabilities and rewards and
return losses with their gradients, so one implementation serves both worlds. The
experiments of the tabular world are in :mod:`rlhf_toy.bandit.experiments`; figures and
their registry in :mod:`rlhf_toy.presentation`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
