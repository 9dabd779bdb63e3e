"""Is the front real? Which assignments stay non-dominated once the spread over seeds is counted.

Each assignment trained with two or more seeds is summarised as mean ± one standard deviation per
objective. Assignment B *clearly dominates* A when B is at least as good in every objective and
better in one even with B at its worst (mean + sd for a minimised objective) and A at its best
(mean - sd). An assignment stays on the front unless something clearly dominates it: a difference
inside the seed spread never knocks it off. Light: no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moesearch.metrics import fmt
from moesearch.pareto import baseline_name, by_assignment, objectives_of, rank


def plan(trials: pd.DataFrame, n_seeds: int, first_seed: int) -> list[tuple[str, int]]:
    """(assignment, seed) pairs still to train so every front member and baseline has 1 + n_seeds seeds.

    Fresh seeds count up from `first_seed`, skipping any seed the assignment was already trained
    with (a failed seed would fail again). Running the plan again after it finished adds nothing.
    """
    objectives = objectives_of(trials)
    table = rank(by_assignment(trials, objectives), objectives)
    targets = table[table["pareto"] | table["baseline"]]
    todo = []
    for assignment, have in zip(targets["assignment"], targets["seeds"], strict=True):
        used = set(trials.loc[trials["assignment"] == assignment, "seed"])
        fresh = (s for s in range(first_seed, first_seed + 10**6) if s not in used)
        todo += [(assignment, next(fresh)) for _ in range(max(0, 1 + n_seeds - have))]
    return todo


def replicate_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Assignments with at least two seeds: mean and sd per objective, `robust` and `clearly_dominated_by`."""
    objectives = objectives_of(trials)
    table = by_assignment(trials, objectives)
    table = table[table["seeds"] >= 2].reset_index(drop=True)
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in objectives.values()])  # all minimised
    mean = table[list(objectives)].to_numpy(float) * signs
    sd = table[[f"{o}_std" for o in objectives]].to_numpy(float)
    worst, best = mean + sd, mean - sd
    beaten_by = []
    for a in range(len(table)):
        clear = (worst <= best[a]).all(axis=1) & (worst < best[a]).any(axis=1)
        beaten_by.append([table["assignment"][b] for b in np.flatnonzero(clear) if b != a])
    table["clearly_dominated_by"] = beaten_by
    table["robust"] = table["clearly_dominated_by"].map(len) == 0
    return table


def verdict(table: pd.DataFrame) -> str:
    """The answer to 'does a hybrid beat every uniform baseline beyond the seed spread?'."""
    baselines = table.loc[table["baseline"], "assignment"].tolist()
    if not baselines:
        return "no uniform baseline has seed replicates yet: run `moesearch verify`"
    names = ", ".join(baseline_name(b) for b in baselines)
    winners = [row.assignment for row in table[~table["baseline"]].itertuples()
               if all(row.assignment in table.set_index("assignment").loc[b, "clearly_dominated_by"] for b in baselines)]
    if winners:
        return f"yes: {', '.join(winners)} clearly dominate{'s' if len(winners) == 1 else ''} {names}"
    robust = table.loc[table["robust"], "assignment"].tolist()
    return (f"no hybrid clearly dominates {names}; within the seed spread the front is: "
            f"{'; '.join(robust) or '(empty)'}")


def view(table: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The replicate table for people: mean ± sd per objective, and whether each assignment stays on the front."""
    shown = pd.DataFrame({"assignment": table["assignment"], "seeds": table["seeds"]})
    for name in objectives:
        shown[name] = [f"{fmt(m)} ± {fmt(s)}" for m, s in zip(table[name], table[f"{name}_std"], strict=True)]
    shown["stays on front"] = table["robust"].map({True: "yes", False: "no"})
    shown["clearly dominated by"] = table["clearly_dominated_by"].map(lambda b: "; ".join(b) or "-")
    return shown


def text(table: pd.DataFrame, objectives: dict[str, str]) -> str:
    return f"{view(table, objectives).to_string(index=False)}\n{verdict(table)}"
