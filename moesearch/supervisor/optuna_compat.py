"""The Optuna internals moesearch relies on, each in one place, with why. Tested with optuna 5.0.0
(`pyproject.toml` bounds optuna to the tested minor release; re-check these when raising it).

- `FrozenTrial._trial_id`: a live `optuna.Trial` handle for a trial this process did not `ask` for
  (recovery of a dead group's trial, the heartbeat thread, a trial added by `reserve`). The public
  API tells by trial number but sets user attributes only through a Trial.
- `system_attrs["fixed_params"]`: where `Study.enqueue_trial` keeps a queued trial's parameters. It
  tells a queued trial (a baseline, a retry) from a sampled one, and re-queues exactly its
  parameters when it gave no result.
- `Study._storage`, `Study._study_id`: one trial read by its number (`trial`), and a trial added with its
  handle back (`add_trial`); the public API reads every trial of the study to return one, which costs each
  trial the whole study on a large PostgreSQL study. `FrozenTrial._validate`: the check `Study.add_trial`
  makes before it stores a trial.
- `BruteForceSampler.after_trial` calls `Study.stop`, which only works inside `study.optimize`:
  moesearch's ask-and-tell loops stop by themselves, so `Exhaustive` leaves it out.
"""

from __future__ import annotations

import optuna
from optuna.samplers import BruteForceSampler
from optuna.trial import FrozenTrial

_FIXED_PARAMS = "fixed_params"


def handle(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """A Trial to set attributes on and tell, for any trial of the study."""
    return optuna.Trial(study, frozen._trial_id)


def add_trial(study: optuna.Study, template: FrozenTrial) -> optuna.Trial:
    """`Study.add_trial`, returning a handle to the trial added: it returns nothing, and finding the trial again
    would read every trial of the study."""
    template._validate()
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id, template_trial=template))


def trial(study: optuna.Study, number: int) -> FrozenTrial:
    """Trial `number` of the study, read alone (not the whole study, as `get_trials()[number]` does)."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def was_queued(frozen: FrozenTrial) -> bool:
    """Whether the trial came from the queue (`enqueue_trial`), not from the sampler."""
    return _FIXED_PARAMS in frozen.system_attrs


def queued_params(frozen: FrozenTrial) -> dict | None:
    """The parameters the trial was queued with, if it was."""
    return frozen.system_attrs.get(_FIXED_PARAMS)


class Exhaustive(BruteForceSampler):
    """Optuna's brute-force sampler for ask-and-tell loops (its after_trial only decides when to call
    Study.stop, which raises outside study.optimize)."""

    def after_trial(self, study, trial, state, values) -> None:
        pass
