"""Does the proxy's answer hold at a larger size? Rank correlation and effect transfer between two sizes.

A study searches a proxy; the space's scale ladder names larger sizes of the same model, at which its
expected front and baselines are trained again. Each size has its own noise model (`analysis/effects.py`),
and each question gets an interval:
- Ordering: Spearman's and Kendall's rank correlation between the sizes' expected values of the
  assignments trained at both. The point is the correlation of the two models' predictions; the 95%
  interval is over joint posterior draws (each draw takes both sizes' expected values from their own
  models, which share no trainings, and ranks them). Noise the models have not averaged out pulls a draw's
  correlation toward zero, so a wide interval says "train more seeds", not "the order breaks".
- Effects: every effect resolved at the smaller size, beside its estimate at the larger one. Its sign
  *holds* when the larger size resolves it the same way, *reverses* when it resolves it the other way, and
  is *inside noise* otherwise; its size holds when the two estimates differ by less than their difference's
  95% interval (normal: the two fits are independent).
Light: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from moesearch.analysis import effects
from moesearch.analysis.pareto import one_text
from moesearch.core.trial import State

DRAWS = 1000  # posterior draws per interval: its 2.5% and 97.5% points to about ±0.01 of a correlation
SEED = 0  # the same intervals each time a ladder is read
MIN_SHARED = 3  # assignments trained at both sizes that a rank correlation needs
Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class Correlation:
    """The rank correlation of expected values between two sizes, over `shared` assignments."""

    shared: int
    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]

    def text(self, objective: str) -> str:
        lo_s, hi_s = self.spearman_ci
        lo_k, hi_k = self.kendall_ci
        return (
            f"rank correlation of expected {objective} over {self.shared} assignments trained at both sizes: "
            f"Spearman {self.spearman:+.2f} (95% {lo_s:+.2f} to {hi_s:+.2f}), "
            f"Kendall {self.kendall:+.2f} (95% {lo_k:+.2f} to {hi_k:+.2f})"
        )


def correlation(small: effects.Fit, large: effects.Fit, assignments: pd.DataFrame) -> Correlation | None:
    """Rank correlation of the two fits' expected values of `assignments` (rows of layer columns, as
    `effects.layer_codes` gives); None with fewer than MIN_SHARED rows or no variation at a size."""
    if len(assignments) < MIN_SHARED:
        return None
    point = [f.predict(assignments)[0] for f in (small, large)]
    if any(np.ptp(p) == 0 for p in point):
        return None
    rng = np.random.default_rng(SEED)
    drawn = [f.draws(assignments, DRAWS, rng) for f in (small, large)]
    spearman = [stats.spearmanr(a, b).statistic for a, b in zip(*drawn, strict=True)]
    kendall = [stats.kendalltau(a, b).statistic for a, b in zip(*drawn, strict=True)]
    return Correlation(
        shared=len(assignments),
        spearman=float(stats.spearmanr(*point).statistic),
        spearman_ci=_ci(spearman),
        kendall=float(stats.kendalltau(*point).statistic),
        kendall_ci=_ci(kendall),
    )


def _ci(values: list[float]) -> tuple[float, float]:
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def transfer(small: effects.Fit, large: effects.Fit) -> pd.DataFrame:
    """Each effect resolved at the smaller size: `effect` and its 95% half-width `ci95` there, and
    `effect_large`, `ci95_large`,
    `resolved_large` at the larger, then `sign` ("holds", "reverses", "inside noise", or "not estimated"
    where the larger fit has no such term) and `size_holds`."""
    here = small.effects()
    there = large.effects().set_index("term")
    rows = []
    for row in here[here["resolved"]].itertuples():
        if row.term not in there.index:
            rows.append({"term": row.term, "effect": row.effect, "ci95": row.ci95, "sign": "not estimated"})
            continue
        far = there.loc[row.term]
        same = math.copysign(1, far["effect"]) == math.copysign(1, row.effect)
        sign = ("holds" if same else "reverses") if far["resolved"] else "inside noise"
        apart = abs(far["effect"] - row.effect) <= Z95 * math.hypot(row.se, far["se"])
        rows.append(
            {
                "term": row.term,
                "effect": row.effect,
                "ci95": row.ci95,
                "effect_large": far["effect"],
                "ci95_large": far["ci95"],
                "resolved_large": bool(far["resolved"]),
                "sign": sign,
                "size_holds": bool(apart),
            }
        )
    columns = ["term", "effect", "ci95", "effect_large", "ci95_large", "resolved_large", "sign", "size_holds"]
    return pd.DataFrame(rows, columns=columns)


def shared_assignments(small: pd.DataFrame, large: pd.DataFrame) -> pd.DataFrame:
    """The assignments with a complete training at both sizes, as layer columns (sorted by assignment)."""
    done = [one_text(t)[0] for t in (small, large)]
    done = [t[t["state"] == State.COMPLETE] for t in done]
    both = sorted(set(done[0]["assignment"]) & set(done[1]["assignment"]))
    rows = done[1].drop_duplicates("assignment").set_index("assignment").loc[both].reset_index()
    return effects.layer_codes(rows)


def text(small: pd.DataFrame, large: pd.DataFrame, objective: str = "val_loss") -> list[str]:
    """The ladder's answer for one objective in words: the ordering, then each resolved effect."""
    fits = [effects.fit(t, objective) for t in (small, large)]
    if any(f is None for f in fits):
        return [f"{objective}: too few trainings at one size for a noise model (3 and 2 assignments needed)"]
    found = correlation(*fits, shared_assignments(small, large))
    lines = [found.text(objective) if found else f"{objective}: fewer than {MIN_SHARED} assignments at both sizes"]
    moved = transfer(*fits)
    if moved.empty:
        lines.append(f"no effect on {objective} is resolved at the smaller size: nothing to carry")
    for row in moved.itertuples():
        if row.sign == "not estimated":
            lines.append(f"  {row.term}: {row.effect:+.4f} at the smaller size; not estimated at the larger")
            continue
        size = "same size" if row.size_holds else "different size"
        lines.append(
            f"  {row.term}: {row.effect:+.4f} ± {row.ci95:.4f} -> {row.effect_large:+.4f} ± "
            f"{row.ci95_large:.4f}: sign {row.sign}, {size}"
        )
    return lines
