"""The search loop: ask Optuna for an assignment, answer repeats from the study, train the rest, tell.

Any number of worker groups may run this loop on one study (`moesearch worker`), each with its own
supervisor; they coordinate through the study alone:
- trials of dead groups are settled first (`recovery`);
- a group waits while the trials running elsewhere would complete --trials, and withdraws a fresh
  trial when lower-numbered ones already do, so the study stops at exactly --trials trained trials;
- an assignment running in another group is not started again (TPE's constant liar steers away).
Re-running the same search resumes it. The uniform baselines are enqueued when the study is created,
so they are always its first trials. SIGTERM or SIGUSR1 stops the trial in flight (recorded as
preempted, queued again) and ends the loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import optuna
from tqdm.auto import tqdm

from moesearch import liveness, preempt, recovery, results
from moesearch import study as study_mod
from moesearch.group import WorkerGroup
from moesearch.runner import Outcome, run_trial, summary
from moesearch.search_limits import MAX_REPEATS_IN_A_ROW
from moesearch.settings import Settings

WAIT_S = 2.0  # between looks at a study whose remaining trials run in other groups


@dataclass(frozen=True)
class SearchReport:
    trained_now: int
    trained_total: int
    repeats_answered: int
    stopped_early: str | None  # why the search stopped before n_trials, if it did


def run_search(settings: Settings, n_trials: int, study: optuna.Study) -> SearchReport:
    trained_now = repeats = in_a_row = 0
    stopped = None
    bar = tqdm(total=n_trials, desc=f"study {settings.study}", unit="trial",
               disable=None if settings.progress else True, dynamic_ncols=True)  # None: off unless a tty
    with WorkerGroup(settings.launch, settings.results / settings.study / "logs") as group, bar:
        while True:
            for line in recovery.recover(study, settings.results):
                bar.write(line)
            now = study_mod.snapshot(study, settings.seed)
            bar.update(min(now.done, n_trials) - bar.n)
            stopped = _why_stop(settings, now, n_trials, in_a_row)
            if stopped or now.done >= n_trials:
                break
            if now.done + len(now.running) >= n_trials:  # the rest is in other groups' hands, unless they die
                time.sleep(WAIT_S)
                continue
            trial = study.ask()
            try:
                outcome = _answer(settings, study, trial, group, n_trials)
            except BaseException as e:  # interrupted, group never started, or a bug: the trial must not stay RUNNING
                study_mod.abandon(study, trial, e)
                raise
            if outcome is None:
                repeats, in_a_row = repeats + 1, in_a_row + 1
                continue
            trained_now, in_a_row = trained_now + (not outcome.preempted), 0
            bar.set_postfix(front=len(study.best_trials))
            bar.write(summary(outcome, settings.space.search.objectives))
    return SearchReport(trained_now, study_mod.snapshot(study, settings.seed).done, repeats, stopped)


def _why_stop(settings: Settings, now: study_mod.Snapshot, n_trials: int, in_a_row: int) -> str | None:
    if preempt.requested():
        return f"preempted by {preempt.requested()}; run the same command again to resume"
    if now.done < n_trials and len(now.known) >= settings.space.size():
        return f"all {settings.space.size()} assignments of the space are evaluated"
    if in_a_row >= MAX_REPEATS_IN_A_ROW:
        return f"the sampler proposed only evaluated or running assignments {in_a_row} times in a row"
    return None


def _answer(settings: Settings, study: optuna.Study, trial: optuna.Trial, group: WorkerGroup,
            n_trials: int) -> Outcome | None:
    """Tell the study this trial's result: from an earlier trial or not at all (returns None), or trained."""
    trial.set_user_attr("worker", liveness.me())  # first: recovery must know whose trial this is
    choices = settings.space.layer_choices()
    layers = [trial.suggest_categorical(study_mod.param_name(i), c) for i, c in enumerate(choices)]
    assignment = ",".join(layers)
    trial.set_user_attr("assignment", assignment)
    trial.set_user_attr("seed", settings.seed)
    now = study_mod.snapshot(study, settings.seed)
    if assignment in now.known:  # already trained with this seed: its result answers the trial
        number, values = now.known[assignment]
        trial.set_user_attr("duplicate_of", number)
        study.tell(trial, values)
        return None
    if reason := _elsewhere(trial, now, n_trials, settings.seed):
        study_mod.fail_outside_budget(study, now.running[trial.number], reason,
                                      requeue="fixed_params" in now.running[trial.number].system_attrs)
        return None
    trial.set_user_attr("trained", True)
    trial.set_user_attr("origin", "search")
    with liveness.beating(study, trial.number):
        outcome = run_trial(settings, group, trial.number, layers, origin="search",
                            replicate_of=study_mod.replicate_of(study, assignment, settings.seed),
                            reference=study_mod.reference_point(study))
        results.write_trial(settings.results, outcome.record)  # the record first: a told trial always has one
    values = outcome.values(settings.space.search.objectives) if outcome.ok else None
    study_mod.tell_result(study, trial, values, outcome.row["failure_reason"], preempted=outcome.preempted)
    return outcome


def _elsewhere(trial: optuna.Trial, now: study_mod.Snapshot, n_trials: int, seed: int) -> str | None:
    """Why another group's running trials make this one unnecessary, if they do."""
    others = [t for t in now.running.values() if t.number != trial.number]
    same = next((t for t in others if t.params == trial.params and t.user_attrs.get("seed", seed) == seed), None)
    if same is not None:  # every group defers to every other: two can never train it at once
        return f"withdrawn: the same assignment is running in trial {same.number}"
    if now.done + sum(t.number < trial.number for t in others) >= n_trials:  # the lowest numbers go first
        return f"withdrawn: trials running in other groups complete the study's {n_trials} trials"
    return None
