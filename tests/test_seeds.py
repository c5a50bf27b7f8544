"""reporting/seeds.py: where a number lies among a few seeds, said so that no K misleads."""
import math
import statistics

import pytest

from reporting import seeds


def test_two_nearly_coinciding_seeds_give_a_distance_from_their_range_not_in_sd():
    """The issue's case: 0.9326 and 0.9327 have a sample sd of 0.0001; the course's 0.9373 is
    0.0046 above both, not '+65.8 sd above the mean'."""
    text = seeds.placement(0.9373, [0.9326, 0.9327])
    assert text == "0.0046 above the highest of 2 seeds"
    assert "sd" not in text


def test_a_number_far_outside_many_seeds_gets_a_conservative_sd_distance():
    values = [0.930, 0.932, 0.931, 0.933, 0.929, 0.931, 0.932, 0.930, 0.931, 0.932]
    text = seeds.placement(0.900, values)
    below = min(values) - 0.900
    assert text.startswith(f"{below:.4f} below the lowest of 10 seeds; at least ")
    z_plain = (statistics.fmean(values) - 0.900) / statistics.stdev(values)
    z_quoted = float(text.split("at least ")[1].split(" sd")[0])
    # measured in the sd's upper confidence bound: smaller than the naive z, by the bound's factor
    factor = math.sqrt(9 / 2.700)
    assert z_quoted == pytest.approx(z_plain / factor, abs=0.05)
    assert z_quoted < z_plain


def test_inside_the_range_is_said_so_at_any_count():
    assert seeds.placement(0.5, [0.4, 0.6]) == "inside the range of 2 seeds"
    assert seeds.placement(0.5, [0.5]) == "equal to the one seed"
    assert seeds.placement(0.7, [0.5]) == "0.2000 above the one seed"
    assert seeds.placement(0.5, []) == "no seed finished"


def test_no_sd_distance_below_the_minimum_count():
    four = [0.1, 0.2, 0.3, 0.4]
    assert "sd" not in seeds.placement(0.9, four)
    assert "at least" in seeds.placement(0.9, four + [0.25])
    assert seeds.summary(four)["sd_upper"] is None
    assert seeds.summary(four + [0.25])["sd_upper"] > seeds.summary(four + [0.25])["sd"]


def test_chi_square_quantiles_from_the_table_and_beyond():
    assert seeds.chi2_low_quantile(1) == pytest.approx(0.000982, rel=1e-3)
    assert seeds.chi2_low_quantile(9) == pytest.approx(2.700, rel=1e-3)
    # Wilson-Hilferty beyond the table: continuous with it, and the known 2.5% quantile at 40
    assert seeds.chi2_low_quantile(31) == pytest.approx(17.539, rel=2e-3)
    assert seeds.chi2_low_quantile(40) == pytest.approx(24.433, rel=2e-3)
    with pytest.raises(ValueError):
        seeds.chi2_low_quantile(0)


def test_band_few_seeds_is_the_range_widened_by_the_floor():
    low, high = seeds.band([0.93, 0.94])
    assert (low, high) == pytest.approx((0.92, 0.95))


def test_band_many_seeds_is_the_mean_plus_minus_three_upper_sds_or_the_floor():
    tight = [0.9326 + 0.0001 * (i % 3) for i in range(10)]
    low, high = seeds.band(tight)  # sd tiny: the floor decides
    mean = statistics.fmean(tight)
    assert (low, high) == pytest.approx((mean - 0.01, mean + 0.01))
    wide = [0.90, 0.92, 0.94, 0.91, 0.93]
    low, high = seeds.band(wide)
    half = 3 * seeds.sd_upper(wide)
    assert half > 0.01
    assert (low, high) == pytest.approx((0.92 - half, 0.92 + half))
    assert low <= min(wide) and high >= max(wide)


def test_numbers_are_compared_at_the_precision_they_are_given_to():
    """0.93731 against a seed at 0.9373 is not "0.0000 above" it: at four decimals, inside."""
    assert seeds.placement(0.93731, [0.9373, 0.9301]) == "inside the range of 2 seeds"
    assert seeds.placement(0.9374, [0.9373, 0.9301]) == "0.0001 above the highest of 2 seeds"
