"""policy_loss for each loss type, clip, dual-clip and KL estimator, against values computed by hand."""

import math

import pytest
import torch

from grpo.loss import kl_penalty, policy_loss

# Row 0 (A = +1) has ratios 1.5, 1.0, 0.5; row 1 (A = -1) has 1.1, 0.7 and one padding token.
RATIOS = torch.tensor([[1.5, 1.0, 0.5], [1.1, 0.7, 1.0]])
OLD = torch.zeros(2, 3)
ADV = torch.tensor([1.0, -1.0])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
# Token losses with clip 0.2: row 0: -1.2, -1.0, -0.5 (sum -2.7); row 1: 1.1, 0.8 (sum 1.9).


def logprobs():
    return RATIOS.log().clone().requires_grad_(True)


@pytest.mark.parametrize(
    ("loss_type", "kwargs", "expected"),
    [
        ("grpo", {}, (-2.7 / 3 + 1.9 / 2) / 2),
        ("bnpo", {}, (-2.7 + 1.9) / 5),
        ("dr_grpo", {}, (-2.7 + 1.9) / (2 * 3)),
        ("dr_grpo", {"max_completion_length": 4}, (-2.7 + 1.9) / (2 * 4)),
        ("dapo", {}, (-2.7 + 1.9) / 5),
        ("dapo", {"num_tokens": 10}, (-2.7 + 1.9) / 10),
    ],
)
def test_loss_types_reduce_as_trl_does(loss_type, kwargs, expected):
    loss, metrics = policy_loss(logprobs(), OLD, ADV, MASK, loss_type=loss_type, **kwargs)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert metrics["loss/clip_frac_high"] == pytest.approx(1 / 5)  # 1.5 > 1.2 with A > 0
    assert metrics["loss/clip_frac_low"] == pytest.approx(1 / 5)  # 0.7 < 0.8 with A < 0
    assert metrics["loss/ratio_max"] == pytest.approx(1.5)


def test_clipped_tokens_get_no_gradient():
    lp = logprobs()
    loss, _ = policy_loss(lp, OLD, ADV, MASK, loss_type="bnpo")
    loss.backward()
    # d/dlogp of -A * r is -A * r; clipped tokens and padding contribute nothing.
    expected = torch.tensor([[0.0, -1.0, -0.5], [1.1, 0.0, 0.0]]) / 5
    torch.testing.assert_close(lp.grad, expected)


def test_clip_higher_widens_only_the_upper_bound():
    loss, metrics = policy_loss(logprobs(), OLD, ADV, MASK, loss_type="bnpo", clip_high=0.28)
    assert loss.item() == pytest.approx((-1.28 - 1.0 - 0.5 + 1.9) / 5, abs=1e-6)
    assert metrics["loss/clip_frac_high"] == pytest.approx(1 / 5)


def test_dual_clip_bounds_negative_advantage_losses():
    lp = torch.tensor([[math.log(5.0)]])
    adv = torch.tensor([-1.0])
    plain, _ = policy_loss(lp, torch.zeros(1, 1), adv, torch.ones(1, 1))
    dual, _ = policy_loss(lp, torch.zeros(1, 1), adv, torch.ones(1, 1), dual_clip=3.0)
    assert plain.item() == pytest.approx(5.0)
    assert dual.item() == pytest.approx(3.0)


def test_kl_estimators():
    lp = torch.tensor([[0.0]])
    ref = torch.tensor([[math.log(2.0)]])  # ref - logp = log 2
    assert kl_penalty(lp, ref, "k1").item() == pytest.approx(-math.log(2))
    assert kl_penalty(lp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_penalty(lp, ref, "k3").item() == pytest.approx(2 - math.log(2) - 1)


def test_kl_term_is_added_per_token_before_reduction():
    ref = torch.full((2, 3), math.log(2.0)) + RATIOS.log()  # ref - logp = log 2 on every token
    k3 = 2 - math.log(2) - 1
    loss, metrics = policy_loss(logprobs(), OLD, ADV, MASK, ref_logprobs=ref, kl_coef=0.1, loss_type="bnpo")
    assert loss.item() == pytest.approx((-2.7 + 1.9) / 5 + 0.1 * k3, abs=1e-6)
    assert metrics["loss/kl"] == pytest.approx(k3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss_type": "ppo"}, "unknown loss_type"),
        ({"clip_low": -0.1}, "must be >= 0"),
        ({"kl_coef": 0.1}, "needs ref_logprobs"),
        ({"dual_clip": 0.5}, "dual_clip must be > 1"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        policy_loss(logprobs(), OLD, ADV, MASK, **kwargs)
