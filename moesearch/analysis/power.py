"""How many trials an effect needs: the exact power of the t test the noise model resolves effects with, and
how sure the noise estimate it rests on is. Light: scipy only."""

from __future__ import annotations

import math

from scipy import optimize, stats


def multiplier(level: float, dof: float, power: float) -> float:
    """The noncentrality (effect / its se) at which a two-sided t test at `level` with `dof` residual degrees
    of freedom rejects `power` of the time: the t statistic of an effect estimated with a noise estimated on
    `dof` degrees of freedom follows the noncentral t (scipy's nct), so this is the exact power, not the sum
    of two t quantiles (which overstates it at few dof). It takes the noise as the study estimated it; the
    true noise may be larger or smaller by the estimate's own spread (its 95% interval: `noise_interval`)."""
    dof = max(dof, 1.0)
    crit = stats.t.ppf(1 - level / 2, dof)

    def shortfall(nc: float) -> float:
        # the wrong-sign tail is at most level / 2; scipy returns NaN for some of its tiny values
        wrong_sign = stats.nct.cdf(-crit, dof, nc)
        return stats.nct.sf(crit, dof, nc) + (wrong_sign if math.isfinite(wrong_sign) else 0.0) - power

    high = crit + 2 * stats.norm.ppf(power) + 1
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10))


def noise_interval(sigma: float, dof: float) -> tuple[float, float]:
    """The 95% interval of a noise sd estimated as `sigma` on `dof` degrees of freedom (chi-square)."""
    if not math.isfinite(dof) or dof < 1:
        return (math.nan, math.nan)
    return (sigma * math.sqrt(dof / stats.chi2.ppf(0.975, dof)), sigma * math.sqrt(dof / stats.chi2.ppf(0.025, dof)))
