"""What a study knows, read in one pass: the trainings done, running, queued and known, and the compute spent.

Light: optuna only. The trials' user attributes it reads are listed in `supervisor/studies.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from moesearch.core.trial import TrialAttr
from moesearch.supervisor import decide


def trained(study: optuna.Study, budget_only: bool = True) -> list[FrozenTrial]:
    """Finished trials that the worker group actually trained (by default: those counting toward --trials)."""
    return trained_among(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)), budget_only
    )


def trained_among(trials: list[FrozenTrial], budget_only: bool) -> list[FrozenTrial]:
    """The finished trials of `trials` that a worker group trained (by the same rule as `trained`)."""
    return [
        t
        for t in trials
        if t.state.is_finished()
        and t.user_attrs.get(TrialAttr.TRAINED)
        and (t.user_attrs.get(TrialAttr.BUDGET, True) or not budget_only)
    ]


@dataclass(frozen=True)
class Snapshot:
    """What the study knows now, from one read: what a search loop (of any group) decides on."""

    done: int
    """Finished trials that count toward --trials."""
    running: dict[int, FrozenTrial]
    """RUNNING trials that will count if they finish (verify trials never do), by number."""
    waiting: list[int]
    """Numbers of queued trials (baselines, retries): the next asks take them, lowest first."""
    known: dict[str, tuple[int, list[float] | None]]
    """assignment -> (trial number, objective values; None: pruned), decided with this seed (verify included)."""
    failed: dict[str, int]
    """assignment -> trial number, failed with this seed in a way that repeats (`decide.remembered`): diverged,
    out of memory, a shape error (other crashes and timeouts may be the machine's: not here)."""
    spent: dict[str, float]
    """Compute every trial trained so far (any state, any group): {"steps": ..., "device_s": ...}."""


def snapshot(study: optuna.Study, seed: int) -> Snapshot:
    trials = study.get_trials(deepcopy=False)
    finished = trained_among(trials, budget_only=False)
    return Snapshot(
        done=sum(1 for t in finished if t.user_attrs.get(TrialAttr.BUDGET, True)),
        running={
            t.number: t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get(TrialAttr.BUDGET, True)
        },
        waiting=[t.number for t in trials if t.state == TrialState.WAITING],
        known={
            t.user_attrs[TrialAttr.ASSIGNMENT]: (t.number, t.values)
            for t in finished
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.user_attrs.get(TrialAttr.SEED) == seed
        },
        failed={
            t.user_attrs[TrialAttr.ASSIGNMENT]: t.number
            for t in finished
            if t.state == TrialState.FAIL
            and decide.remembered(t.user_attrs.get(TrialAttr.FAILURE_REASON, ""))
            and t.user_attrs.get(TrialAttr.SEED) == seed
        },
        spent=spent(trials),
    )


def spent(trials: list[FrozenTrial]) -> dict[str, float]:
    """The compute `trials` trained, from their `compute` attributes (what --budget counts)."""
    counted = [t.user_attrs[TrialAttr.COMPUTE] for t in trials if TrialAttr.COMPUTE in t.user_attrs]
    return {"steps": sum(c["steps"] for c in counted), "device_s": sum(c["device_s"] for c in counted)}


def set_compute(trial: optuna.Trial, steps: int, device_s: float) -> None:
    """Record what a trial trained (pruned and failed ones too), before it is told."""
    trial.set_user_attr(TrialAttr.COMPUTE, {"steps": steps, "device_s": device_s})
