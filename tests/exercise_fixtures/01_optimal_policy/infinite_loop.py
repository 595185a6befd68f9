"""Never returns: the grader's time limit must stop it."""

FAILS = "rows sum to one"
TIMEOUT = True


def optimal_policy(pi_ref, reward, beta):
    total = 0
    while True:
        total += 1
