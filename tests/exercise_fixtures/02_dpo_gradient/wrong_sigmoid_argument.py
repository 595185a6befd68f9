"""Wrong: sigma(h_w - h_l) instead of sigma(h_l - h_w)."""

from scipy.special import expit

FAILS = "weight"


def dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    h_w = beta * (policy_chosen - ref_chosen)
    h_l = beta * (policy_rejected - ref_rejected)
    w = beta * expit(h_w - h_l)
    return -w, w
