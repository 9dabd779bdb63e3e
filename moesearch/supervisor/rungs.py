"""A trial's rungs against the whole study: store its objectives at each rung, rank them against every
record there, decide (`decide.rung_verdict`).

Every record of a rung lives in the study, as the trial's `rungs` attribute, so worker groups on
several nodes prune against one another's trials. Light: optuna only.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from moesearch.space import Space
from moesearch.supervisor import decide
from moesearch.vocab import TrialAttr, Verdict


def judge(study: optuna.Study, trial: optuna.Trial, space: Space, may_stop: bool) -> Callable[[int, dict], Verdict]:
    """The `on_rung` of one RUNNING trial: record its metrics at the rung, then rank them.

    may_stop False (baselines, replicates): the trial's rungs are recorded for the others, and it goes on.
    """
    objectives = space.search.objectives
    reached: dict[str, dict[str, float]] = {}

    def on_rung(step: int, metrics: dict) -> Verdict:
        mine = {o: float(metrics[o]) for o in objectives}
        reached[str(step)] = mine  # stored first: a group deciding at the same moment counts this record too
        trial.set_user_attr(TrialAttr.RUNGS, dict(reached))
        if not may_stop:
            return Verdict(True, "a baseline or replicate: its rungs are recorded, it is never stopped")
        peers = records_at(study, step, objectives, but=trial.number)
        return decide.rung_verdict(step, list(mine.values()), peers, list(objectives.values()), space.search.pruning)

    return on_rung


def records_at(study: optuna.Study, step: int, objectives: dict[str, str], but: int) -> list[list[float]]:
    """Every other trial's objectives at rung `step`, whatever became of it (running, complete, pruned, failed)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        at = t.user_attrs.get(TrialAttr.RUNGS, {}).get(str(step))
        if t.number != but and at is not None and all(o in at for o in objectives):
            rows.append([at[o] for o in objectives])
    return rows
