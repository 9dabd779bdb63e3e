"""The search loop: ask Optuna for an assignment, answer repeats from the study, train the rest, tell.

Re-running the same search resumes it: only trials missing up to `n_trials` are trained. The uniform
baselines are enqueued when the study is created, so they are always its first trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from moesearch import results
from moesearch import study as study_mod
from moesearch.group import WorkerGroup
from moesearch.runner import Settings, run_trial, summary

_MAX_REPEATS_IN_A_ROW = 100  # a sampler stuck on evaluated assignments has converged; stop asking


@dataclass(frozen=True)
class SearchReport:
    trained_now: int
    trained_total: int
    repeats_answered: int
    stopped_early: str | None  # why the search stopped before n_trials, if it did


def run_search(settings: Settings, n_trials: int, storage: optuna.storages.BaseStorage) -> SearchReport:
    space, objectives = settings.space, settings.space.search.objectives
    study = study_mod.open_study(storage, settings.study, space, settings.seed)
    done = len(study_mod.trained(study))
    known = study_mod.evaluated(study, settings.seed)
    trained_now = repeats = in_a_row = 0
    stopped = None
    bar = tqdm(total=n_trials, initial=min(done, n_trials), desc=f"study {settings.study}", unit="trial",
               disable=not settings.progress, dynamic_ncols=True)
    with WorkerGroup(settings.nproc, settings.results / settings.study / "logs") as group, bar:
        while done < n_trials:
            if len(known) >= space.size():
                stopped = f"all {space.size()} assignments of the space are evaluated"
                break
            trial = study.ask()
            layers = [trial.suggest_categorical(study_mod.param_name(i), c) for i, c in enumerate(space.layer_choices())]
            assignment = ",".join(layers)
            trial.set_user_attr("assignment", assignment)
            trial.set_user_attr("seed", settings.seed)
            if assignment in known:  # already trained with this seed: its result answers the trial
                number, values = known[assignment]
                trial.set_user_attr("duplicate_of", number)
                study.tell(trial, values)
                repeats, in_a_row = repeats + 1, in_a_row + 1
                if in_a_row >= _MAX_REPEATS_IN_A_ROW:
                    stopped = f"the sampler proposed only evaluated assignments {in_a_row} times in a row"
                    break
                continue
            in_a_row = 0
            trial.set_user_attr("trained", True)
            try:
                outcome = run_trial(settings, group, trial.number, layers)
            except KeyboardInterrupt:
                trial.set_user_attr("budget", False)
                trial.set_user_attr("failure_reason", "interrupted by the user")
                study.tell(trial, state=TrialState.FAIL)
                raise
            results.write_trial(settings.results, outcome.row)  # the record first: a told trial always has one
            if outcome.ok:
                study.tell(trial, outcome.values(objectives))
                known[assignment] = (trial.number, outcome.values(objectives))
            else:
                trial.set_user_attr("failure_reason", outcome.row["failure_reason"])
                study.tell(trial, state=TrialState.FAIL)
            done, trained_now = done + 1, trained_now + 1
            bar.update(1)
            bar.set_postfix(front=len(study.best_trials))
            bar.write(summary(outcome, objectives))
    return SearchReport(trained_now, done, repeats, stopped)
