"""Wrong: beta left out of the implicit reward (sigma of the raw log-ratio margin)."""

from scipy.special import expit

FAILS = "weight"


def dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    w = beta * expit(-margin)
    return -w, w
