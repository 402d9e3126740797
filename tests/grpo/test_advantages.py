"""group_advantages and process_advantages against values computed by hand."""

import math

import pytest
import torch

from grpo.advantages import group_advantages, process_advantages

REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # two groups of G=4


def test_group_scale_divides_by_unbiased_group_std():
    std = math.sqrt(4 * 0.25 / 3)  # group 0: mean 0.5, unbiased std sqrt(1/3)
    a = 0.5 / (std + 1e-4)
    expected = torch.tensor([a, -a, -a, a, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(REWARDS, 4), expected)


def test_none_scale_is_dr_grpo_mean_centering():
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale="none"), expected)


def test_batch_scale_divides_by_std_of_all_rewards():
    std = math.sqrt((6 * 0.25**2 + 2 * 0.75**2) / 7)
    a = 0.5 / (std + 1e-4)
    expected = torch.tensor([a, -a, -a, a, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale="batch"), expected)


def test_leave_one_out_baseline():
    # completion 0 of group 0: 1 - mean(0, 0, 1) = 2/3
    expected = torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale="none", baseline="loo"), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_size": 3}, "does not divide"),
        ({"group_size": 4, "scale": "groups"}, "unknown scale"),
        ({"group_size": 1, "baseline": "loo"}, "group_size >= 2"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_advantages(REWARDS, **kwargs)


def test_process_advantages_sum_normalised_rewards_of_later_steps():
    # One group of G=2; completion 0 has steps ending at tokens 1 and 3, completion 1 one step at 2.
    step_rewards = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    step_mask = torch.tensor([[1, 1], [1, 0]])
    step_end = torch.tensor([[1, 3], [2, 0]])
    values = torch.tensor([1.0, 0.0, 0.5])
    mean, std = values.mean(), values.std()
    n = (values - mean) / (std + 1e-4)  # normalised step rewards
    expected = torch.tensor(
        [
            [n[0] + n[1], n[0] + n[1], n[1], n[1]],
            [n[2], n[2], n[2], 0.0],
        ]
    )
    got = process_advantages(step_rewards, step_mask, step_end, num_tokens=4, group_size=2)
    torch.testing.assert_close(got, expected)
