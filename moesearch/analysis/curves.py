"""Does a short run predict a long one? The rank correlation of val_loss at each evaluated step with
val_loss at the last step, over the assignments trained to the end; and what early stopping spent and saved.

Early stopping is only as safe as this correlation: where it is weak, a trial stopped early may have
been a future front member. Evaluated steps are the space's `train.eval_interval` multiples (the
rungs a pruner can use). Seed replicates count once, at their mean, as on the front. Light: pandas,
scipy.
"""

from __future__ import annotations

import pandas as pd
from scipy.stats import kendalltau, spearmanr

from moesearch.analysis.pareto import one_text
from moesearch.core.trial import State

WEAK = 0.5  # a Spearman correlation below this: the early ranking says little about the final one
MIN_ASSIGNMENTS = 3  # fewer points give no rank correlation worth printing
# Fewer assignments than this, and a strong correlation may be chance: Spearman's two-sided 5% critical
# value (exact, by permutation) is 1.0 with 5 assignments, 0.83 with 6, 0.64 with 10.
FEW = 10


def rung_correlation(trials: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated step before the last: step, assignments, spearman, kendall."""
    done = one_text(trials)[0]
    done = done[done["state"] == State.COMPLETE]
    evals = steps.loc[
        steps["trial"].isin(set(done["trial"])) & steps["val_loss"].notna(), ["trial", "step", "val_loss"]
    ]
    evals = evals.merge(done[["trial", "assignment"]].astype({"assignment": str}), on="trial")
    columns = ["step", "assignments", "spearman", "kendall"]
    if evals.empty:
        return pd.DataFrame(columns=columns)
    curves = evals.pivot_table(index="assignment", columns="step", values="val_loss", aggfunc="mean")
    last = curves.columns.max()
    rows = []
    for step in curves.columns[curves.columns < last]:
        pair = curves[[step, last]].dropna()  # assignments evaluated at this step and trained to the end
        if len(pair) >= MIN_ASSIGNMENTS:
            rows.append(
                {
                    "step": int(step),
                    "assignments": len(pair),
                    "spearman": float(spearmanr(pair[step], pair[last]).statistic),
                    "kendall": float(kendalltau(pair[step], pair[last]).statistic),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def text(table: pd.DataFrame, pruned: bool = True) -> list[str]:
    """Lines for people: the correlation per step, and a warning where it is weak; none without curves.
    pruned: whether any trial was stopped early; where none was, the same findings are notes on whether
    search.pruning would be safe, not warnings about what it did."""
    if table.empty:
        return []
    flag = "warning:" if pruned else "note (no trial was stopped early; this is whether search.pruning would be safe):"
    shown = "; ".join(
        f"step {r.step}: Spearman {r.spearman:.2f}, Kendall {r.kendall:.2f} over {r.assignments} assignments"
        for r in table.itertuples()
    )
    lines = [f"does a short run predict the final ranking? rank correlation of val_loss with the last step: {shown}"]
    weak = table[table["spearman"] < WEAK]
    if len(weak):
        lines.append(
            f"{flag} at step {', '.join(map(str, weak['step']))} the early ranking predicts the final one "
            f"weakly (Spearman < {WEAK}): stopping trials there could stop future front members"
        )
    few = table[table["assignments"] < FEW]
    if len(few):  # a strong correlation of few points is no evidence either
        lines.append(
            f"{flag} at step {', '.join(map(str, few['step']))} the correlation rests on "
            f"{', '.join(map(str, few['assignments']))} assignments, fewer than {FEW}: too few to say how "
            "well a short run predicts, either way"
        )
    return lines


def any_pruned(trials: pd.DataFrame) -> bool:
    return bool((trials["state"] == State.PRUNED).any())


def compute_text(trials: pd.DataFrame, steps: pd.DataFrame) -> list[str]:
    """Compute spent (optimizer steps, from each trial's step rows) and trials pruned per rung; none
    without pruned trials. steps: the steps table, or its evaluated rows (a pruned trial ends on one)."""
    trials = trials[trials["state"] != State.PREEMPTED]  # trained again under another number: counted there
    pruned = trials[trials["state"] == State.PRUNED]
    if pruned.empty:
        return []
    trained = steps[steps["trial"].isin(set(trials["trial"]))].groupby("trial")["step"].max()
    at = trained.reindex(pruned["trial"]).dropna().astype(int).value_counts().sort_index()
    per_rung = ", ".join(f"{n} at step {step}" for step, n in at.items())
    line = f"pruned: {len(pruned)} of {len(trials)} trials ({per_rung}); {int(trained.sum()):,} steps trained"
    full = trained.reindex(trials.loc[trials["state"] == State.COMPLETE, "trial"]).max()
    if pd.notna(full):  # what training every trial to the end would have cost
        whole = int(full) * len(trained)
        line += f", {1 - trained.sum() / whole:.0%} fewer than training every trial to step {int(full)} ({whole:,})"
    return [line]
