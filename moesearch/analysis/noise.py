"""Is the front real? Which assignments stay non-dominated once the spread over seeds is counted.

Each assignment trained with two or more seeds is summarised as mean ± one standard deviation per
objective. Assignment B *clearly dominates* A when B is at least as good in every objective and
better in one even with B at its worst (mean + sd for a minimised objective) and A at its best
(mean - sd). An assignment stays on the front unless something clearly dominates it: a difference
inside the seed spread never knocks it off. Light: no torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd

from moesearch.analysis.pareto import by_assignment, objectives_of, one_text, rank
from moesearch.core.assignment import baseline_name
from moesearch.core.metrics import fmt_pm
from moesearch.core.trial import Origin, State


def plan(trials: pd.DataFrame, n_seeds: int, first_seed: int, baselines_only: bool = False) -> list[tuple[str, int]]:
    """(assignment, seed) pairs still to train so every front member and baseline has 1 + n_seeds seeds.

    baselines_only: the uniform baselines alone (what `search` trains for search.baseline_seeds).

    The targets are the front and baselines of the search's own trials (verify replicates left out),
    so they do not move while replicates land: after an interruption the plan resumes where it stopped,
    and once finished it is empty. Fresh seeds count up from `first_seed`, skipping any seed the
    assignment has a result with (a failed seed would fail again); a preempted seed has none and is
    trained again, so every target's replicates share their seeds (under common random numbers a seed
    trained by one assignment alone tells the noise model nothing).
    """
    objectives = objectives_of(trials)
    trials, _ = one_text(trials)
    searched = trials[
        trials["origin"] != Origin.VERIFY
    ]  # targets from the search alone: they stay put as replicates land
    table = rank(by_assignment(searched, objectives), objectives)
    targets = table[table["baseline"] | (table["pareto"] & (not baselines_only))]
    seeds = trials[trials["state"] == State.COMPLETE].groupby("assignment")["seed"].nunique()
    todo = []
    for assignment in targets["assignment"]:
        fresh = fresh_seeds(seeds_with_result(trials, assignment), first_seed)
        todo += [(assignment, next(fresh)) for _ in range(max(0, 1 + n_seeds - seeds.get(assignment, 0)))]
    return todo


def with_result(trials: pd.DataFrame) -> pd.DataFrame:
    """The records with a result: complete, failed (a seed that would fail again) or pruned. A preempted
    training has none: its seed is trained again."""
    return trials[trials["state"] != State.PREEMPTED]


def seeds_with_result(trials: pd.DataFrame, assignment: str) -> set[int]:
    settled = with_result(trials)
    return set(settled.loc[settled["assignment"] == assignment, "seed"])


def fresh_seeds(used: set[int], first_seed: int) -> Iterator[int]:
    """Seeds from `first_seed` up, skipping `used`."""
    return (s for s in itertools.count(first_seed) if s not in used)


def replicate_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Assignments with at least two seeds: mean and sd per objective, `robust` and `clearly_dominated_by`."""
    objectives = objectives_of(trials)
    table = by_assignment(one_text(trials)[0], objectives)
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
    """Does a hybrid clearly beat every uniform baseline? And which baselines does each hybrid clearly beat?"""
    baselines = table.loc[table["baseline"], "assignment"].tolist()
    if not baselines:
        return "no uniform baseline has seed replicates yet: run `moesearch verify`"
    beaten = table.set_index("assignment")["clearly_dominated_by"]
    wins = {h: [b for b in baselines if h in beaten[b]] for h in table.loc[~table["baseline"], "assignment"]}
    names = ", ".join(baseline_name(b) for b in baselines)
    everything = [h for h, w in wins.items() if len(w) == len(baselines)]
    if everything:
        return f"yes: {', '.join(everything)} clearly dominate{'s' if len(everything) == 1 else ''} {names}"
    some = "; ".join(f"{h} clearly beats {', '.join(baseline_name(b) for b in w)}" for h, w in wins.items() if w)
    robust = "; ".join(table.loc[table["robust"], "assignment"]) or "(empty)"
    return (
        f"no hybrid clearly dominates every baseline ({names}){'; ' + some if some else ''}. "
        f"Within the seed spread the front is: {robust}"
    )


def view(table: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The replicate table for people: mean ± sd per objective, and whether each assignment stays on the front."""
    shown = pd.DataFrame({"assignment": table["assignment"], "seeds": table["seeds"]})
    for name in objectives:
        shown[name] = [fmt_pm(m, s) for m, s in zip(table[name], table[f"{name}_std"], strict=True)]
    shown["stays on front"] = table["robust"].map({True: "yes", False: "no"})
    shown["clearly dominated by"] = table["clearly_dominated_by"].map(lambda b: "; ".join(b) or "-")
    return shown


def text(table: pd.DataFrame, objectives: dict[str, str]) -> str:
    return f"{view(table, objectives).to_string(index=False)}\n{verdict(table)}"
