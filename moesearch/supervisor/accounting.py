"""What a study knows, read in one pass: the trainings done, running, queued and known, and the compute spent.

A search loop reads it every round, so its work grows with what changed, not with the study: Optuna's
storage caches finished trials (it reads the unfinished ones again), and a finished trial never changes
(Optuna refuses updates to it), so each is tallied once (`_Tally`). Light: optuna only.
The trials' user attributes it reads are listed in `supervisor/studies.py`.
"""

from __future__ import annotations

import weakref
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


class _Tally:
    """What one search (a Study object, a seed) has counted of the study's finished trials, each once."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.counted: set[int] = set()
        self.done = 0
        self.known: dict[str, tuple[int, list[float] | None]] = {}
        self.failed: dict[str, int] = {}
        self.spent = {"steps": 0.0, "device_s": 0.0}

    def add(self, t: FrozenTrial) -> None:
        """Count a finished trial: trained ones toward done, known and failed; any toward the compute spent."""
        self.counted.add(t.number)
        for key, value in (t.user_attrs.get(TrialAttr.COMPUTE) or {}).items():
            self.spent[key] += value
        if not t.user_attrs.get(TrialAttr.TRAINED):
            return
        self.done += t.user_attrs.get(TrialAttr.BUDGET, True)
        if t.user_attrs.get(TrialAttr.SEED) != self.seed:
            return
        assignment = t.user_attrs[TrialAttr.ASSIGNMENT]
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and self.known.get(assignment, (-1,))[0] < t.number:
            self.known[assignment] = (t.number, t.values)  # the latest trial of it, as the study orders them
        if t.state == TrialState.FAIL and decide.remembered(t.user_attrs.get(TrialAttr.FAILURE_REASON, "")):
            self.failed[assignment] = max(t.number, self.failed.get(assignment, -1))


_tallies: weakref.WeakKeyDictionary[optuna.Study, dict[int, _Tally]] = weakref.WeakKeyDictionary()


def snapshot(study: optuna.Study, seed: int) -> Snapshot:
    trials = study.get_trials(deepcopy=False)
    tally = _tallies.setdefault(study, {}).setdefault(seed, _Tally(seed))
    for t in trials:
        if t.state.is_finished() and t.number not in tally.counted:
            tally.add(t)
    unfinished = [t for t in trials if not t.state.is_finished()]
    now = spent(unfinished)  # a trial sets its compute just before it is told
    return Snapshot(
        done=tally.done,
        running={
            t.number: t
            for t in unfinished
            if t.state == TrialState.RUNNING and t.user_attrs.get(TrialAttr.BUDGET, True)
        },
        waiting=[t.number for t in unfinished if t.state == TrialState.WAITING],
        known=dict(tally.known),
        failed=dict(tally.failed),
        spent={key: tally.spent[key] + now[key] for key in tally.spent},
    )


def spent(trials: list[FrozenTrial]) -> dict[str, float]:
    """The compute `trials` trained, from their `compute` attributes (what --budget counts)."""
    counted = [t.user_attrs[TrialAttr.COMPUTE] for t in trials if TrialAttr.COMPUTE in t.user_attrs]
    return {"steps": sum(c["steps"] for c in counted), "device_s": sum(c["device_s"] for c in counted)}


def set_compute(trial: optuna.Trial, steps: int, device_s: float) -> None:
    """Record what a trial trained (pruned and failed ones too), before it is told."""
    trial.set_user_attr(TrialAttr.COMPUTE, {"steps": steps, "device_s": device_s})
