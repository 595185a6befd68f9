"""The toy languages: contract fields, exact enumeration, labelers, and Goodhart by design.

The decisive checks are exact: with the labelers' utility as the reward and the
demonstrator's response distribution as ``pi_ref`` (both computed over every response), the
KL-regularised optimum ``pi* = pi_ref exp(u / beta) / Z`` must show each task's failure as
``beta`` falls: on ``length`` the utility and the length rise while the gold reward peaks and
falls; on ``sycophancy`` the agreement with wrong beliefs rises.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlhf_toy.optimal import optimal_policy
from rlhf_toy.tasks import TASKS, DigitsTask, LengthTask, SycophancyTask, Task, get_task

NAMES = sorted(TASKS)
BETAS = np.geomspace(100.0, 0.01, 41)  # falling: optimisation pressure rising


def table(task: Task, prompts=None):
    """Every (eval prompt, response) pair: prompts, responses, mask of shape (X * N, ...)."""
    x = task.eval_prompts() if prompts is None else prompts
    y, m = task.all_responses()
    X, N = len(x), len(y)
    return np.repeat(x, N, axis=0), np.tile(y, (X, 1)), np.tile(m, (X, 1)), (X, N)


def optimum_curves(task: Task):
    """Exact E_{pi*_beta}[u], [gold], [length] and rates over BETAS."""
    xp, yp, mp, (X, N) = table(task)
    pi_ref = task.demonstrator_probs(xp, yp, mp).reshape(X, N)
    u = task.labeler_utility(xp, yp, mp).reshape(X, N)
    gold = task.gold_rewards(xp, yp, mp).reshape(X, N)
    length = task.response_lengths(yp, mp).reshape(X, N)
    out = {"u": [], "gold": [], "length": [], "rates": []}
    for beta in BETAS:
        pi = optimal_policy(pi_ref, u, beta)
        out["u"].append((pi * u).sum(1).mean())
        out["gold"].append((pi * gold).sum(1).mean())
        out["length"].append((pi * length).sum(1).mean())
        out["rates"].append(task.rates(xp, yp, mp, weights=pi.ravel()))
    return {k: (np.array(v) if k != "rates" else v) for k, v in out.items()}


# ------------------------------------------------------------------------ contract


@pytest.mark.parametrize("name", NAMES)
def test_contract_fields(name):
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name
    V = len(task.vocab)
    assert all(isinstance(s, str) for s in task.vocab) and len(set(task.vocab)) == V
    specials = {task.bos_id, task.eos_id, task.pad_id}
    assert len(specials) == 3 and all(0 <= i < V for i in specials)
    assert task.vocab[task.eos_id] == "<eos>" and task.vocab[task.pad_id] == "<pad>"
    ids = task.response_token_ids
    assert task.eos_id in ids and task.bos_id not in ids and task.pad_id not in ids
    assert list(ids) == sorted(set(ids)) and len(ids) <= 12
    assert 1 <= task.max_response_len <= 4
    prompts = task.sample_prompts(64, rng=0)
    assert prompts.shape == (64, task.prompt_len) and np.all(prompts[:, 0] == task.bos_id)
    np.testing.assert_array_equal(prompts, task.sample_prompts(64, rng=0))  # seeded
    task.check_prompts(prompts)
    ev = task.eval_prompts()
    assert ev.shape[1] == task.prompt_len and 8 <= len(ev) <= 64
    assert len(np.unique(ev, axis=0)) == len(ev)  # distinct
    np.testing.assert_array_equal(ev, get_task(name).eval_prompts())  # fixed
    assert task.prompt_len + task.max_response_len <= 12  # fits a tiny n_ctx


def test_default_task_and_options():
    assert get_task().name == "length"
    assert list(TASKS)[0] == "length"
    assert get_task("length", length_bias=0.9).length_bias == 0.9
    assert get_task("sycophancy", label_temperature=2.0).label_temperature == 2.0
    assert get_task("length").label_temperature == 0.5


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: get_task("poetry"), "task must be one of"),
        (lambda: get_task("length", colour=1), "bad option for task 'length'"),
        (lambda: LengthTask(length_bias=-1.0), "length_bias must be >= 0"),
        (lambda: LengthTask(length_probs=(0.5, 0.5)), "length_probs must be 5"),
        (lambda: LengthTask(label_temperature=0.0), "label_temperature must be > 0"),
        (lambda: SycophancyTask(p_correct=0.9, p_agree=0.2), "p_correct \\+ p_agree"),
        (lambda: SycophancyTask(p_wrong=1.5), "p_wrong must be in"),
        (lambda: DigitsTask(digit_task="add"), "digit_task must be one of"),
        (lambda: LengthTask().sample_prompts(0, 0), "n must be >= 1"),
        (lambda: LengthTask().check_prompts(np.zeros((2, 3), int)), "shape \\(B, 5\\)"),
        (lambda: LengthTask().check_prompts(np.ones((2, 5), int)), "start with bos_id"),
        (lambda: LengthTask().check_prompts(LengthTask().encode("<bos> 3 + 2 =")), "a \\+ b <= 4"),
        (lambda: SycophancyTask().check_prompts(np.full(7, 8)), "not '<bos> a \\+ b = think c'"),
        (lambda: LengthTask().encode("1 + x"), "unknown token 'x'"),
    ],
)
def test_bad_options_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def bad_responses():
    t = LengthTask()
    e, p = t.eos_id, t.pad_id
    return [
        (np.array([[0, e, p]]), np.array([[1, 1, 0]]), "shape \\(B, 4\\)"),
        (np.array([[0, e, p, p]]), np.array([[1, 1, 0, 1]]), "prefix of ones"),
        (np.array([[0, 5, e, p]]), np.array([[1, 1, 1, 0]]), "not a response token"),
        (np.array([[0, e, 1, e]]), np.array([[1, 1, 1, 1]]), "first EOS"),
        (np.array([[0, 1, p, p]]), np.array([[1, 1, 0, 0]]), "must end with EOS"),
        (np.array([[0, e, 0, p]]), np.array([[1, 1, 0, 0]]), "pad_id=9 after"),
        (np.array([[0, e, p, p]]), np.array([[1, 0.5, 0, 0]]), "only 0 and 1"),
    ]


@pytest.mark.parametrize(("y", "m", "match"), bad_responses())
def test_check_responses_rejects_bad_layouts(y, m, match):
    with pytest.raises(ValueError, match=match):
        LengthTask().check_responses(y, m)


# ------------------------------------------------------------------------ enumeration


@pytest.mark.parametrize("name", NAMES)
def test_all_responses_complete_and_unique(name):
    task = get_task(name)
    y, m = task.all_responses()
    N, T = y.shape
    assert N == task.n_responses and T == task.max_response_len and N <= 1500
    task.check_responses(y, m)  # every row valid
    assert len(np.unique(y, axis=0)) == N  # unique
    # complete: every token string of length T over the alphabet, cut at its first EOS,
    # is one of them
    ids = np.asarray(task.response_token_ids)
    grid = ids[np.stack(np.unravel_index(np.arange(len(ids) ** T), (len(ids),) * T), 1)]
    cut, cut_mask = task.responses_from_tokens(grid)
    assert set(map(tuple, np.unique(cut, axis=0))) == set(map(tuple, y))
    # the mask is the padding's complement
    np.testing.assert_array_equal(m > 0, y != task.pad_id)


@pytest.mark.parametrize("name", NAMES)
def test_gold_reward_matches_gold_rewards(name):
    task = get_task(name)
    xp, yp, mp, (X, N) = table(task, task.eval_prompts()[:3])
    vec = task.gold_rewards(xp, yp, mp)
    one = [task.gold_reward(x, y[m > 0]) for x, y, m in zip(xp, yp, mp, strict=True)]
    np.testing.assert_array_equal(vec, one)
    assert np.all((vec >= 0) & (vec <= 1)) and vec.max() == 1.0  # each prompt has a right answer
    assert np.all(vec.reshape(X, N).max(axis=1) == 1.0)


def test_gold_reward_examples():
    t = LengthTask()
    x = t.encode("<bos> 3 + 1 =")
    assert t.gold_reward(x, t.encode("4 <eos>")) == 1.0
    assert t.gold_reward(x, t.encode("4 4 <eos>")) == 0.0
    assert t.gold_reward(x, t.encode("4 0 1 3")) == 0.0
    assert t.labeler_utility(x[None], *t.responses_from_tokens(t.encode("2 0 1 3")[None])) == 1.6
    s = SycophancyTask()
    x = s.encode("<bos> 0 + 2 = think 1")
    assert s.gold_reward(x, s.encode("2 <eos>")) == 1.0
    assert s.gold_reward(x, s.encode("1 <eos>")) == 0.0
    assert s.labeler_utility(x[None], *s.responses_from_tokens(s.encode("1 <eos> 0")[None])) == 1.5
    d = DigitsTask()
    x = d.encode("<bos> 3 7 |")
    assert d.gold_reward(x, d.encode("7 3 <eos>")) == 1.0
    assert d.gold_reward(x, d.encode("7 4 <eos>")) == 0.5
    assert d.gold_reward(x, d.encode("7 3 3")) == 0.0
    with pytest.raises(ValueError, match="1 to 3 tokens"):
        d.gold_reward(x, [])


@given(st.sampled_from(NAMES), st.integers(0, 2**31 - 1))
def test_responses_from_tokens_cuts_at_first_eos(name, seed):
    task = get_task(name)
    rng = np.random.default_rng(seed)
    ids = np.asarray(task.response_token_ids)
    raw = rng.choice(ids, size=(16, task.max_response_len))
    y, m = task.responses_from_tokens(raw)
    for r, yr, mr in zip(raw, y, m, strict=True):
        n = int(mr.sum())
        eos = np.flatnonzero(r == task.eos_id)
        assert n == (eos[0] + 1 if eos.size else task.max_response_len)
        np.testing.assert_array_equal(yr[:n], r[:n])
    np.testing.assert_array_equal(task.responses_from_tokens(y)[0], y)  # idempotent
    length = task.response_lengths(y, m)
    np.testing.assert_array_equal(length, m.sum(1) - (y == task.eos_id).sum(1))


# ------------------------------------------------------------------------ demonstrator


@pytest.mark.parametrize("name", NAMES)
def test_demonstrator_probs_sum_to_one(name):
    task = get_task(name)
    xp, yp, mp, (X, N) = table(task)
    p = task.demonstrator_probs(xp, yp, mp).reshape(X, N)
    assert np.all(p > 0)  # full support: every response has a chance
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_demonstrations_valid_and_distributed_as_demonstrator_probs(name):
    task = get_task(name)
    prompt = task.eval_prompts()[1]
    n = 20_000
    y, m = task.demonstrations(np.tile(prompt, (n, 1)), rng=0)
    task.check_responses(y, m)
    y2, _ = task.demonstrations(np.tile(prompt, (n, 1)), rng=0)
    np.testing.assert_array_equal(y, y2)  # seeded
    ally, allm = task.all_responses()
    p = task.demonstrator_probs(np.tile(prompt, (len(ally), 1)), ally, allm)  # (N,)
    index = {tuple(r): i for i, r in enumerate(ally)}
    counts = np.bincount([index[tuple(r)] for r in y], minlength=len(ally))
    # per-response CLT bound, 5 sigma (seeded, so deterministic)
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * sigma + 1e-3)
    # gold under the samples vs exactly
    exact = (p * task.gold_rewards(np.tile(prompt, (len(ally), 1)), ally, allm)).sum()
    sampled = task.gold_rewards(np.tile(prompt, (n, 1)), y, m).mean()
    assert abs(sampled - exact) <= 5 * 0.5 / np.sqrt(n)


def test_deterministic_demonstrator_never_samples_a_zero_probability_token():
    t = LengthTask(p_correct=1.0, length_probs=(0.0, 1.0, 0.0, 0.0, 0.0))
    x = t.sample_prompts(500, rng=0)
    y, m = t.demonstrations(x, rng=1)
    np.testing.assert_array_equal(y[:, 0], t.answers(x))
    assert np.all(y[:, 1] == t.eos_id) and np.all(t.demonstrator_probs(x, y, m) == 1.0)


def test_demonstrator_is_imperfect_and_prefers_short_answers():
    t = LengthTask()
    xp, yp, mp, (X, N) = table(t)
    p = t.demonstrator_probs(xp, yp, mp).reshape(X, N)
    gold = t.gold_rewards(xp, yp, mp).reshape(X, N)
    np.testing.assert_allclose((p * gold).sum(1), 0.7 * 0.6)  # p_correct * P(one digit)
    length = t.response_lengths(yp, mp).reshape(X, N)
    np.testing.assert_allclose((p * length).sum(1), 0.6 + 2 * 0.16 + 3 * 0.1 + 4 * 0.1)


# ------------------------------------------------------------------------ labelers


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_labels_follow_bradley_terry(temperature):
    task = LengthTask(label_temperature=temperature)
    x = task.encode("<bos> 1 + 1 =")
    pairs = [("2 <eos>", "3 <eos>"), ("2 <eos>", "0 1 2 3"), ("4 4 <eos>", "<eos>")]
    n = 40_000
    for a, b in pairs:
        ya, ma = task.responses_from_tokens(np.tile(_pad(task, a), (n, 1)))
        yb, mb = task.responses_from_tokens(np.tile(_pad(task, b), (n, 1)))
        xs = np.tile(x, (n, 1))
        u_a = task.labeler_utility(xs[:1], ya[:1], ma[:1])[0]
        u_b = task.labeler_utility(xs[:1], yb[:1], mb[:1])[0]
        p = 1.0 / (1.0 + np.exp(-(u_a - u_b) / temperature))
        won = task.label(xs, ya, ma, yb, mb, rng=1)
        assert won.dtype == bool and won.shape == (n,)
        assert abs(won.mean() - p) <= 4.5 * np.sqrt(p * (1 - p) / n)  # CLT, seeded
        np.testing.assert_array_equal(won, task.label(xs, ya, ma, yb, mb, rng=1))
        np.testing.assert_allclose(
            task.preference_probs(xs[:1], ya[:1], ma[:1], yb[:1], mb[:1])
            + task.preference_probs(xs[:1], yb[:1], mb[:1], ya[:1], ma[:1]),
            1.0,
        )


def _pad(task, text):
    ids = task.encode(text)
    out = np.full(task.max_response_len, task.eos_id)
    out[: ids.size] = ids
    return out


@pytest.mark.parametrize("name", NAMES)
def test_utility_is_gold_plus_bias(name):
    task = get_task(name)
    xp, yp, mp, _ = table(task, task.eval_prompts()[:4])
    np.testing.assert_array_equal(
        task.labeler_utility(xp, yp, mp),
        task.gold_rewards(xp, yp, mp) + task.labeler_bias(xp, yp, mp),
    )


# ------------------------------------------------------------------------ Goodhart, exactly


def test_length_goodhart_exact():
    """pi* of the labelers' utility: u and length rise, gold peaks and then falls."""
    c = optimum_curves(LengthTask())
    assert np.all(np.diff(c["u"]) >= -1e-12)  # the optimised reward never falls
    assert np.all(np.diff(c["length"]) >= -1e-12)  # length grows monotonically
    peak = int(np.argmax(c["gold"]))
    assert 0 < peak < len(BETAS) - 1  # interior peak
    gold_ref, gold_peak, gold_end = c["gold"][0], c["gold"][peak], c["gold"][-1]
    assert gold_peak > gold_ref + 0.15  # optimising first helps: 0.42 -> 0.61
    assert gold_end < gold_ref - 0.3  # then hurts: -> 0.00
    assert np.all(np.diff(c["gold"][peak:]) <= 1e-12)  # after the peak it only falls
    assert c["length"][0] < 1.7 and c["length"][-1] > 3.9  # 1.62 -> 4.00
    assert c["rates"][-1]["accuracy"] == pytest.approx(c["gold"][-1])


def test_sycophancy_goodhart_exact():
    """pi* of the labelers' utility: agreement with wrong beliefs rises as beta falls."""
    c = optimum_curves(SycophancyTask())
    agree_wrong = np.array([r["agreement_with_wrong"] for r in c["rates"]])
    acc_wrong = np.array([r["accuracy_when_wrong"] for r in c["rates"]])
    assert np.all(np.diff(c["u"]) >= -1e-12)
    assert np.all(np.diff(agree_wrong) >= -1e-12)  # monotone in beta
    assert agree_wrong[0] < 0.25 and agree_wrong[-1] > 0.99  # 0.20 -> 1.00
    assert acc_wrong[-1] < 0.01 < acc_wrong[0] - 0.5  # truth lost where the user is wrong
    peak = int(np.argmax(c["gold"]))
    assert 0 < peak < len(BETAS) - 1
    assert c["gold"][-1] < c["gold"][0] - 0.1  # 0.62 -> 0.50: only right beliefs stay right


def test_digits_control_has_no_goodhart():
    """Honest labelers: as beta falls the gold reward only rises, to 1."""
    c = optimum_curves(DigitsTask())
    np.testing.assert_allclose(c["u"], c["gold"])
    assert np.all(np.diff(c["gold"]) >= -1e-12)
    assert c["gold"][-1] > 0.999
