"""Wrong: the gradient of log sigma (the likelihood) instead of the loss -log sigma."""

from scipy.special import expit

FAILS = "signs"


def dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    h_w = beta * (policy_chosen - ref_chosen)
    h_l = beta * (policy_rejected - ref_rejected)
    w = beta * expit(h_l - h_w)
    return w, -w
