"""Wrong: the chain rule's factor beta forgotten."""

from scipy.special import expit

FAILS = "weight"


def dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    h_w = beta * (policy_chosen - ref_chosen)
    h_l = beta * (policy_rejected - ref_rejected)
    w = expit(h_l - h_w)
    return -w, w
