"""`rewards.blend`: per-group normalisation and the execution / reward-model / blend rewards."""

import pytest

from rewards.blend import combine, normalise_per_group


def test_normalise_per_group_is_zero_mean_unit_std_and_zero_for_flat_groups():
    got = normalise_per_group([1.0, 3.0, 5.0, 5.0, 2.0, 2.0], 3)
    assert got[:3] == pytest.approx([-1.2247449, 0.0, 1.2247449])
    assert got[3:] == pytest.approx([1.4142136, -0.7071068, -0.7071068])
    assert normalise_per_group([4.0, 4.0], 2) == [0.0, 0.0]
    with pytest.raises(ValueError, match="group_size=4 does not divide 6 values"):
        normalise_per_group([0.0] * 6, 4)


def test_combine_picks_or_blends_the_sources():
    execution, rm = [1.0, 0.0, 0.0, 1.0], [0.2, 0.4, 3.0, 3.0]
    assert combine("execution", execution, None, 2) == execution
    assert combine("rm", execution, rm, 2) == rm
    # group 1: rm says the second is better, execution the first; group 2: rm is flat
    assert combine("blend", execution, rm, 2, alpha=0.25) == pytest.approx([0.5, -0.5, -0.75, 0.75])
    assert combine("blend", execution, rm, 2, alpha=1.0) == pytest.approx([-1.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="needs reward-model scores"):
        combine("blend", execution, None, 2)
    with pytest.raises(ValueError, match="3 reward-model scores for 4 completions"):
        combine("rm", execution, rm[:3], 2)
    with pytest.raises(ValueError, match=r"alpha=1\.5 must be within"):
        combine("blend", execution, rm, 2, alpha=1.5)
    with pytest.raises(ValueError, match="'rlhf' is not one of execution, rm, blend"):
        combine("rlhf", execution, rm, 2)  # type: ignore[arg-type]
