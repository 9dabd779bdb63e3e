"""A study's progress, read from its storage alone: for `moesearch status` (light: optuna, and pandas for the front)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from moesearch.analysis import pareto
from moesearch.core.trial import State, StudyAttr, TrialAttr
from moesearch.supervisor import accounting, liveness


@dataclass(frozen=True)
class Status:
    target: int | None  # the --trials the last search set
    complete: int  # trained trials, counting toward --trials
    failed: int
    pruned_at: dict[int, int]  # rung step -> trials stopped there (search.pruning)
    spent: dict[str, float]  # compute trained by every trial: {"steps", "device_s"}
    uncounted: int  # trained trials without a compute record (made before moesearch kept one): not in `spent`
    budget: dict | None  # the study's --budget: {"steps": n} or {"device_h": x}
    running: int  # dead groups' trials included, until they are settled
    repeats: int  # proposals answered from an earlier trial: COMPLETE in Optuna, never trained
    outside_budget: int  # preempted, lost, interrupted or withdrawn: failed without counting, retried if queued
    waiting: int  # queued: baselines and retries
    groups: list[str]  # worker groups ("host:pid" of their supervisors) with a trial running and alive
    stale: list[int]  # RUNNING trials whose group is gone: settled when a search or worker next starts
    per_hour_last: int  # trained trials finished in the last hour
    per_hour_overall: float | None
    front: int  # assignments on the Pareto front of the complete trials (seed means, as `pareto` shows it)


def of(study: optuna.Study, now: float | None = None) -> Status:
    now = now or time.time()
    trials = study.get_trials(deepcopy=False)
    counted = accounting.trained_among(trials, budget_only=True)
    # trials with a result (verify replicates too): preempted, lost or withdrawn ones trained nothing to count
    trained = [
        t
        for t in accounting.trained_among(trials, budget_only=False)
        if t.state == TrialState.COMPLETE or t.user_attrs.get(TrialAttr.BUDGET, True)
    ]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    stale = [t for t in running if liveness.is_dead(t, now)]
    finished_at = sorted(t.datetime_complete.timestamp() for t in trained)
    started_at = min((t.datetime_start.timestamp() for t in trained), default=None)
    return Status(
        target=study.user_attrs.get(StudyAttr.TRIALS),
        complete=sum(t.state == TrialState.COMPLETE for t in counted),
        failed=sum(t.state == TrialState.FAIL for t in counted),
        pruned_at=dict(sorted(Counter(_pruned_at(t) for t in counted if t.state == TrialState.PRUNED).items())),
        spent=accounting.spent(trials),
        uncounted=sum(TrialAttr.COMPUTE not in t.user_attrs for t in trained),
        budget=study.user_attrs.get(StudyAttr.BUDGET),
        running=len(running),
        repeats=sum(TrialAttr.DUPLICATE_OF in t.user_attrs for t in trials),
        outside_budget=sum(t.state == TrialState.FAIL and not t.user_attrs.get(TrialAttr.BUDGET, True) for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
        groups=sorted(
            {
                ":".join(t.user_attrs[TrialAttr.GROUP].split(":")[:2])
                for t in running
                if t not in stale and TrialAttr.GROUP in t.user_attrs
            }
        ),
        stale=[t.number for t in stale],
        per_hour_last=sum(f > now - 3600 for f in finished_at),
        per_hour_overall=len(finished_at) / (finished_at[-1] - started_at) * 3600
        if finished_at and finished_at[-1] > started_at
        else None,
        front=front_size(study, trained),  # verify replicates too: fronts are of seed means
    )


def last_trial_at(storage: optuna.storages.BaseStorage, name: str) -> float:
    """When study `name` last started or finished a trial (seconds since the epoch; 0: none yet)."""
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    times = [at for t in trials for at in (t.datetime_start, t.datetime_complete) if at is not None]
    return max((at.timestamp() for at in times), default=0.0)


def _pruned_at(trial: FrozenTrial) -> int:
    """The rung a trained, pruned trial stopped at: the last it reported (`rungs.judge` stores each rung's
    values before it decides, so a trial pruned there always has them)."""
    return max(int(step) for step in trial.user_attrs[TrialAttr.RUNGS])


def front_size(study: optuna.Study, trials: list[FrozenTrial]) -> int:
    """Assignments on the front, by `pareto.front`'s one definition (seed means), from the study's trials
    (`status` and the search's progress bar; Optuna's best_trials would count each seed's trial apart)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return 0
    objectives = study.user_attrs[StudyAttr.SPACE]["search"]["objectives"]
    rows = pd.DataFrame(
        [
            {
                "trial": t.number,
                "state": State.COMPLETE,
                "data_sha256": None,
                "assignment": t.user_attrs[TrialAttr.ASSIGNMENT],
                "seed": t.user_attrs.get(TrialAttr.SEED),
                **t.params,
                **dict(zip(objectives, t.values, strict=True)),
            }
            for t in complete
        ]
    )
    on, _ = pareto.front(rows, objectives, study.user_attrs[StudyAttr.REFERENCE_POINT])
    return len(on)


def text(name: str, where: str, s: Status) -> str:
    target = f" of {s.target:,}" if s.target else ""
    pruned = sum(s.pruned_at.values())
    lines = [
        f"study {name!r} in {where}",
        f"trials: {s.complete + s.failed + pruned}{target} trained ({s.complete} complete, {pruned} pruned, "
        f"{s.failed} failed), {s.running} running, {s.waiting} queued, {s.outside_budget} outside the budget "
        "(preempted, lost, interrupted or withdrawn)",
        f"compute: {s.spent['steps']:,.0f} steps, {s.spent['device_s'] / 3600:.3g} device-hours trained"
        + (f" of a budget of {_budget_text(s.budget)}" if s.budget else "")
        + (
            f" ({s.uncounted} trained trials made before moesearch recorded compute are not counted, nor by --budget)"
            if s.uncounted
            else ""
        ),
        f"repeated proposals answered from the study: {s.repeats} "
        "(Optuna lists them as COMPLETE, PRUNED or FAIL trials too, as the trial they repeat)",
        f"worker groups with a trial running: {len(s.groups)}" + (f" ({', '.join(s.groups)})" if s.groups else ""),
        f"throughput: {s.per_hour_last} trials in the last hour"
        + (f", {s.per_hour_overall:.1f} per hour overall" if s.per_hour_overall else ""),
        f"front: {s.front} assignments",
    ]
    if s.pruned_at:
        lines.insert(3, "pruned per rung: " + ", ".join(f"{n} at step {step}" for step, n in s.pruned_at.items()))
    if s.stale:
        lines.append(
            f"of the running trials, {', '.join(map(str, s.stale))} belong to dead groups: the next search "
            "or worker settles them"
        )
    return "\n".join(lines)


def _budget_text(budget: dict) -> str:
    return f"{budget['steps']:,} steps" if "steps" in budget else f"{budget['device_h']:g} device-hours"
