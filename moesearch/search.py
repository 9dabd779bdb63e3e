"""The search loop: ask Optuna for an assignment, answer repeats from the study, train the rest, tell.

Re-running the same search resumes it: only trials missing up to `n_trials` are trained. The uniform
baselines are enqueued when the study is created, so they are always its first trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from tqdm.auto import tqdm

from moesearch import results
from moesearch import study as study_mod
from moesearch.group import WorkerGroup
from moesearch.runner import Outcome, run_trial, summary
from moesearch.search_limits import MAX_REPEATS_IN_A_ROW
from moesearch.settings import Settings


@dataclass(frozen=True)
class SearchReport:
    trained_now: int
    trained_total: int
    repeats_answered: int
    stopped_early: str | None  # why the search stopped before n_trials, if it did


def run_search(settings: Settings, n_trials: int, storage: optuna.storages.BaseStorage) -> SearchReport:
    study = study_mod.open_study(storage, settings.study, settings.space, settings.seed)
    done = len(study_mod.trained(study))
    known = study_mod.evaluated(study, settings.seed)
    trained_now = repeats = in_a_row = 0
    stopped = None
    bar = tqdm(total=n_trials, initial=min(done, n_trials), desc=f"study {settings.study}", unit="trial",
               disable=None if settings.progress else True, dynamic_ncols=True)  # None: off unless a tty
    with WorkerGroup(settings.nproc, settings.results / settings.study / "logs") as group, bar:
        while done < n_trials:
            if len(known) >= settings.space.size():
                stopped = f"all {settings.space.size()} assignments of the space are evaluated"
                break
            if in_a_row >= MAX_REPEATS_IN_A_ROW:
                stopped = f"the sampler proposed only evaluated assignments {in_a_row} times in a row"
                break
            trial = study.ask()
            try:
                outcome = _answer(settings, study, trial, group, known)
            except BaseException as e:  # interrupted, group never started, or a bug: the trial must not stay RUNNING
                study_mod.abandon(study, trial, e)
                raise
            if outcome is None:
                repeats, in_a_row = repeats + 1, in_a_row + 1
                continue
            done, trained_now, in_a_row = done + 1, trained_now + 1, 0
            bar.update(1)
            bar.set_postfix(front=len(study.best_trials))
            bar.write(summary(outcome, settings.space.search.objectives))
    return SearchReport(trained_now, done, repeats, stopped)


def _answer(settings: Settings, study: optuna.Study, trial: optuna.Trial, group: WorkerGroup,
            known: dict[str, tuple[int, list[float]]]) -> Outcome | None:
    """Tell the study this trial's result: from an earlier trial (returns None) or trained and recorded."""
    choices = settings.space.layer_choices()
    layers = [trial.suggest_categorical(study_mod.param_name(i), c) for i, c in enumerate(choices)]
    assignment = ",".join(layers)
    trial.set_user_attr("assignment", assignment)
    trial.set_user_attr("seed", settings.seed)
    if assignment in known:  # already trained with this seed: its result answers the trial
        number, values = known[assignment]
        trial.set_user_attr("duplicate_of", number)
        study.tell(trial, values)
        return None
    trial.set_user_attr("trained", True)
    trial.set_user_attr("origin", "search")
    outcome = run_trial(settings, group, trial.number, layers, origin="search",
                        replicate_of=study_mod.replicate_of(study, assignment, settings.seed),
                        reference=study_mod.reference_point(study))
    results.write_trial(settings.results, outcome.record)  # the record first: a told trial always has one
    values = outcome.values(settings.space.search.objectives) if outcome.ok else None
    study_mod.tell_result(study, trial, values, outcome.row["failure_reason"])
    if values is not None:
        known[assignment] = (trial.number, values)
    return outcome
