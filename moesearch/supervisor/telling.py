"""Trials outside the sampler and results told back: reserve a trial, tell what it gave, fail one that gave
nothing outside the budget (and queue it again where it must be retrained). Light: optuna only."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from moesearch.core.assignment import Assignment, layer_name
from moesearch.core.space import Space
from moesearch.core.trial import Origin, StudyAttr, TrialAttr
from moesearch.supervisor import liveness, optuna_compat
from moesearch.supervisor.accounting import trained


def replicate_of(study: optuna.Study, assignment: str, seed: int) -> int | None:
    """The first completed trial of `assignment` trained with a seed other than `seed`, if any."""
    return next(
        (
            t.number
            for t in trained(study, budget_only=False)
            if t.state == TrialState.COMPLETE
            and t.user_attrs[TrialAttr.ASSIGNMENT] == assignment
            and t.user_attrs.get(TrialAttr.SEED) != seed
        ),
        None,
    )


def is_running(study: optuna.Study, number: int) -> bool:
    """Still RUNNING: not settled by another group's recovery while this one trained it."""
    return _frozen(study, number).state == TrialState.RUNNING


def reference_point(study: optuna.Study) -> dict[str, float]:
    """The hypervolume reference point fixed when the study was created."""
    return study.user_attrs[StudyAttr.REFERENCE_POINT]


def tell_result(
    study: optuna.Study,
    trial: optuna.Trial,
    values: list[float] | None,
    failure_reason: str | None,
    preempted: bool = False,
    pruned: bool = False,
) -> None:
    """Tell a trained trial's result (None: it failed or was pruned, for `failure_reason`); its record is
    already written.

    A pruned trial is PRUNED in Optuna too (TPE counts it among the poor trials). A preempted trial is
    no result: it fails outside the budget, and a search trial goes back in the queue to be trained again.
    """
    if values is not None:
        study.tell(trial, values)
    elif pruned:
        trial.set_user_attr(TrialAttr.FAILURE_REASON, failure_reason)
        study.tell(trial, state=TrialState.PRUNED)
    elif preempted:
        retry = trial.user_attrs.get(TrialAttr.ORIGIN) == Origin.SEARCH
        fail_outside_budget(study, _frozen(study, trial.number), failure_reason, requeue=retry)
    else:
        trial.set_user_attr(TrialAttr.FAILURE_REASON, failure_reason)
        study.tell(trial, state=TrialState.FAIL)


def abandon(study: optuna.Study, trial: optuna.Trial, error: BaseException, retry: bool = False) -> None:
    """Fail a trial that produced no result, outside the budget; a baseline (or any, with retry) is queued again."""
    frozen = _frozen(study, trial.number)
    if frozen.state != TrialState.RUNNING:
        return  # told before the error
    reason = "interrupted by the user" if isinstance(error, KeyboardInterrupt) else (str(error) or repr(error))
    fail_outside_budget(study, frozen, reason, requeue=retry or optuna_compat.was_queued(frozen))


def fail_outside_budget(study: optuna.Study, frozen: FrozenTrial, reason: str, requeue: bool) -> bool:
    """Fail a RUNNING trial that gave no result, so it does not count toward --trials.

    requeue: its assignment goes back in the queue (a baseline, a preempted or lost search trial).
    Returns False if another process finished the trial first (then nothing is queued twice).
    """
    trial = optuna_compat.handle(study, frozen)
    try:
        trial.set_user_attr(TrialAttr.BUDGET, False)
        trial.set_user_attr(TrialAttr.FAILURE_REASON, reason)
        study.tell(frozen.number, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
        return False
    if requeue and (params := optuna_compat.queued_params(frozen) or frozen.params):
        study.enqueue_trial(params)
    return True


def _frozen(study: optuna.Study, number: int) -> FrozenTrial:
    return optuna_compat.trial(study, number)


def reserve(study: optuna.Study, space: Space, layers: list[str], seed: int, origin: str) -> optuna.Trial:
    """A RUNNING trial for an assignment chosen outside the sampler (`train`, `verify`).

    Its number exists before training, so these trials follow the search's order: train, write the
    record under that number, then tell. Verify trials re-measure known assignments: they do not
    count toward a search's --trials.
    """
    return optuna_compat.add_trial(
        study,
        optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=Assignment(layers).params(),
            distributions={layer_name(i): CategoricalDistribution(c) for i, c in enumerate(space.layer_choices())},
            user_attrs={
                TrialAttr.ASSIGNMENT: Assignment(layers).text,
                TrialAttr.SEED: seed,
                TrialAttr.TRAINED: True,
                TrialAttr.ORIGIN: origin,
                TrialAttr.GROUP: liveness.me(),
                **({TrialAttr.BUDGET: False} if origin == Origin.VERIFY else {}),
            },
        ),
    )
