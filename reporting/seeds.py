"""What a few seeds say about a number, and no more: their spread, where another number lies
among them, and the band in which a correct implementation's number should fall.

One rule for every reader (results.md, results.tex, the figures' captions and the checker of
students' solutions):

- A number is placed against the seeds' range first: inside it, or how far above the highest
  or below the lowest of the K seeds.
- A distance in standard deviations is given only from MIN_SEEDS_FOR_SD seeds on, and then
  with the sd's upper 95% confidence bound, so it reads "at least z sd". With K seeds the
  sample sd s has (K-1) s^2 / sigma^2 ~ chi^2(K-1): at K = 2 sigma may be up to 32 s, at
  K = 5 up to 2.9 s, at K = 10 up to 1.8 s (95%). Below 5 seeds an sd-based distance says
  more about the luck of the draw than about the number.
- A band: mean ± max(3 sd_upper, BAND_FLOOR) from MIN_SEEDS_FOR_SD seeds on, never narrower
  than the seeds' own range; with fewer seeds, the range widened by BAND_FLOOR on each side.
"""
import math
import statistics

MIN_SEEDS_FOR_SD = 5
BAND_FLOOR = 0.01  # accuracies: a percent, what a correct chaotic run can move by with the seed
CONFIDENCE = 0.95

# chi^2 quantiles at (1 - CONFIDENCE) / 2 = 0.025 for 1..30 degrees of freedom (standard tables)
_CHI2_LOW = (0.000982, 0.0506, 0.216, 0.484, 0.831, 1.237, 1.690, 2.180, 2.700, 3.247,
             3.816, 4.404, 5.009, 5.629, 6.262, 6.908, 7.564, 8.231, 8.907, 9.591,
             10.283, 10.982, 11.689, 12.401, 13.120, 13.844, 14.573, 15.308, 16.047, 16.791)


def chi2_low_quantile(dof):
    """The 2.5% quantile of chi^2(dof): the table to 30, Wilson-Hilferty beyond (within 0.2%
    there)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof <= len(_CHI2_LOW):
        return _CHI2_LOW[dof - 1]
    z = -1.959964  # the standard normal's 2.5% quantile
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def sd_upper_factor(count):
    """How many times the sample sd of `count` seeds the true sd may be: the factor of the
    upper 95% confidence bound (needs 2 seeds)."""
    dof = count - 1
    return math.sqrt(dof / chi2_low_quantile(dof))


def sd_upper(values):
    """The upper 95% confidence bound of the seeds' standard deviation (needs 2 values)."""
    return statistics.stdev(values) * sd_upper_factor(len(values))


def summary(values):
    """{count, mean, min, max, sd (None for one value), sd_upper (None below
    MIN_SEEDS_FOR_SD)} of the seeds' `values`."""
    values = list(values)
    if not values:
        raise ValueError("no values")
    many = len(values) >= MIN_SEEDS_FOR_SD
    return {"count": len(values), "mean": statistics.fmean(values), "min": min(values),
            "max": max(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "sd_upper": sd_upper(values) if many else None}


def _seeds(count):
    return f"{count} seed{'s' if count != 1 else ''}"


def placement(value, values, digits=4):
    """Where `value` lies among the seeds' `values`, as one phrase: "inside the range of 5
    seeds", "0.0046 above the highest of 2 seeds", and from MIN_SEEDS_FOR_SD seeds on a
    conservative distance in sd: "...; at least 1.9 sd above their mean". Compared at
    `digits` decimals, the precision the numbers are given to."""
    values = [round(v, digits) for v in values]
    value = round(value, digits)
    if not values:
        return "no seed finished"
    low, high = min(values), max(values)
    if low <= value <= high:
        if len(values) == 1:
            return "equal to the one seed"
        return f"inside the range of {_seeds(len(values))}"
    if value > high:
        text = f"{value - high:.4f} above the highest of {_seeds(len(values))}"
    else:
        text = f"{low - value:.4f} below the lowest of {_seeds(len(values))}"
    if len(values) == 1:
        text = text.replace("the highest of 1 seed", "the one seed").replace(
            "the lowest of 1 seed", "the one seed")
    if len(values) >= MIN_SEEDS_FOR_SD:
        mean, bound = statistics.fmean(values), sd_upper(values)
        if bound > 0:
            side = "above" if value > mean else "below"
            text += f"; at least {abs(value - mean) / bound:.1f} sd {side} their mean"
    return text


def band(values, floor=BAND_FLOOR):
    """(low, high): where a correct implementation's number should fall, by the rule above."""
    values = list(values)
    if not values:
        raise ValueError("no values")
    if len(values) < MIN_SEEDS_FOR_SD:
        return min(values) - floor, max(values) + floor
    mean = statistics.fmean(values)
    half = max(3 * sd_upper(values), floor)
    return min(mean - half, min(values)), max(mean + half, max(values))


BAND_RULE = (f"mean ± max(3 sd, {BAND_FLOOR}) with the sd's upper {CONFIDENCE:.0%} confidence "
             f"bound, from {MIN_SEEDS_FOR_SD} seeds on; with fewer, the seeds' range ± "
             f"{BAND_FLOOR}")
