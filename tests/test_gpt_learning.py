"""The numpy GPT learns: AdamW + backward drive a toy language to exact answers.

The digit language (``rlhf_toy.tasks.digits``) asks the model to reverse four random digits
after a separator; reversal needs attention to fetch a token by position, so reaching
near-zero loss and exact greedy answers on held-out prompts checks the forward pass, the
hand-written backward, AdamW and the sampler together. The training loop must also stop
with a ``FloatingPointError`` naming the step when a loss or gradient goes non-finite.
"""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_toy.gpt import GPT, GPTConfig, sample
from rlhf_toy.gpt.train import train_lm
from rlhf_toy.tasks.digits import (
    DIGIT_VOCAB_SIZE,
    SEP,
    digit_batches,
    digit_sequences,
    lm_batch,
)

N_DIGITS = 4
PROMPT_LEN = N_DIGITS + 1


def tiny_gpt(seed: int) -> GPT:
    config = GPTConfig(
        vocab_size=DIGIT_VOCAB_SIZE, n_ctx=2 * N_DIGITS + 1, n_embd=32, n_layer=2, n_head=4
    )
    return GPT(config, seed=seed)


# ------------------------------------------------------------------------ digit language


def test_digit_sequences_answers():
    rng = np.random.default_rng(0)
    for task, answer in (
        ("copy", lambda d: d),
        ("reverse", lambda d: d[:, ::-1]),
        ("sort", lambda d: np.sort(d, axis=1)),
    ):
        seq = digit_sequences(rng, 50, n_digits=3, task=task)
        assert seq.shape == (50, 7)
        assert np.all(seq[:, 3] == SEP)
        assert seq[:, :3].max() <= 9 and seq[:, :3].min() >= 0
        np.testing.assert_array_equal(seq[:, 4:], answer(seq[:, :3]))
    np.testing.assert_array_equal(digit_sequences(7, 5), digit_sequences(7, 5))  # seeded


def test_lm_batch_masks_the_response_only():
    seq = digit_sequences(0, 3, n_digits=2, task="copy")  # d d SEP a a
    tokens, targets, mask = lm_batch(seq, prompt_len=3)
    np.testing.assert_array_equal(tokens, seq[:, :-1])
    np.testing.assert_array_equal(targets, seq[:, 1:])
    np.testing.assert_array_equal(mask, np.tile([0.0, 0.0, 1.0, 1.0], (3, 1)))  # targets a a


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: digit_sequences(0, 2, task="add"), "task must be one of"),
        (lambda: digit_sequences(0, 0), "n must be >= 1"),
        (lambda: digit_sequences(0, 2, n_digits=0), "n_digits must be >= 1"),
        (lambda: lm_batch(np.zeros((2, 3), int), 3), "longer than prompt_len=3"),
        (lambda: lm_batch(np.zeros((2, 3)), 1), "2-D int array"),
        (lambda: digit_batches(0, 0), "batch_size must be >= 1"),
    ],
)
def test_digit_language_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------ learning


@pytest.mark.parametrize("seed", [0, 1])
def test_gpt_learns_to_reverse_digits(seed):
    model = tiny_gpt(seed)
    log = train_lm(
        model,
        digit_batches(seed, batch_size=32, n_digits=N_DIGITS, task="reverse"),
        steps=150,
        lr=1e-2,
        warmup_steps=10,
        min_lr=1e-3,
        weight_decay=0.0,
        verbose=False,
    )
    assert log.loss.shape == (150,) and np.all(np.isfinite(log.loss))
    assert log.loss[0] > 2.0  # starts near log(11): knows nothing
    assert log.loss[-10:].mean() < 0.02  # ~0.003 on this machine

    held_out = digit_sequences(1000 + seed, 500, N_DIGITS, "reverse")
    loss, _ = model.loss(*lm_batch(held_out, PROMPT_LEN))
    assert loss < 0.02
    greedy = sample(model, held_out[:, :PROMPT_LEN], N_DIGITS, rng=0, top_k=1)
    exact = np.all(greedy.response == held_out[:, PROMPT_LEN:], axis=1).mean()
    assert exact >= 0.99


def test_train_log_and_continuation():
    model = tiny_gpt(0)
    log = train_lm(model, digit_batches(0, 8), steps=6, lr=1e-3, warmup_steps=2, verbose=False)
    np.testing.assert_allclose(log.lr[:3], [5e-4, 1e-3, 1e-3])
    assert np.all(np.diff(log.lr[1:]) <= 0)
    assert np.all(log.grad_norm > 0) and log.optimizer.t == 6
    # continue with the same optimiser (its moments and step count carry over)
    log2 = train_lm(model, digit_batches(1, 8), 3, lr=1e-3, optimizer=log.optimizer, verbose=False)
    assert log2.optimizer is log.optimizer and log.optimizer.t == 9
    # a callable gives the batch of each step; no clipping leaves grad_norm unrecorded
    batch = lm_batch(digit_sequences(2, 8), PROMPT_LEN)
    log3 = train_lm(model, lambda step: batch, 2, max_grad_norm=None, verbose=False)
    assert np.all(np.isnan(log3.grad_norm))


def test_train_lm_rejects_bad_input():
    model = tiny_gpt(0)
    batches = [lm_batch(digit_sequences(0, 4), PROMPT_LEN)] * 2
    with pytest.raises(ValueError, match="batches ran out at step 2 of 3"):
        train_lm(model, batches, 3, verbose=False)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_lm(model, batches, 0, verbose=False)
    with pytest.raises(ValueError, match="warmup_steps must be <= total_steps"):
        train_lm(model, batches, 2, warmup_steps=3, verbose=False)
    with pytest.raises(ValueError, match="max_grad_norm must be > 0"):
        train_lm(model, batches, 2, max_grad_norm=0.0, verbose=False)
    other = train_lm(tiny_gpt(1), batches, 1, verbose=False).optimizer
    with pytest.raises(ValueError, match="optimizer must have been built on this model"):
        train_lm(model, batches, 1, optimizer=other, verbose=False)


# ------------------------------------------------------------------------------ NaN stops


class PoisonedGPT(GPT):
    """A GPT whose backward returns a NaN gradient from its ``bad_call``-th call on."""

    bad_call = 3

    def backward(self, *args, **kwargs):
        grads = super().backward(*args, **kwargs)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls > self.bad_call:
            grads["h.1.mlp.c_fc.weight"][0, 0] = np.nan
        return grads


def test_training_stops_on_nan_gradient_naming_the_step():
    model = PoisonedGPT(tiny_gpt(0).config, seed=0)
    data = digit_batches(0, 8)
    snapshots = {}

    def batches(step):
        snapshots[step] = {k: p.copy() for k, p in model.params.items()}
        return next(data)

    with pytest.raises(FloatingPointError, match=r"step 3\b.*'h\.1\.mlp\.c_fc\.weight'"):
        train_lm(model, batches, 10, verbose=False)
    assert max(snapshots) == 3
    for k, p in model.params.items():  # the bad step changed nothing
        np.testing.assert_array_equal(p, snapshots[3][k])
        assert np.all(np.isfinite(p))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_training_stops_on_nan_loss_naming_the_step():
    model = tiny_gpt(0)
    data = digit_batches(0, 8)

    def batches(step):
        if step == 2:
            model.params["wte"][:] = np.inf  # diverged weights: the loss is NaN
        return next(data)

    with pytest.raises(FloatingPointError, match="non-finite loss at step 2"):
        train_lm(model, batches, 5, verbose=False)
