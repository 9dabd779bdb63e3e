"""The search loop: ask Optuna for an assignment, answer repeats from the study, train the rest, tell.

Any number of worker groups may run this loop on one study (`moesearch worker`), each with its own
supervisor; they coordinate through the study alone:
- trials of dead groups are settled first (`recovery`);
- a group waits while the trials running elsewhere would complete --trials, and withdraws a fresh
  trial when lower-numbered ones already do, so the study stops at exactly --trials trained trials;
- an assignment running in another group is not started again (TPE's constant liar steers away);
- with `[search.pruning]`, each trial is ranked at its rungs against every group's records (`rungs`),
  and the study's compute budget (--budget, steps or device-hours) counts every group's trials.
What to do next (baselines first, repeats, stop conditions, rung verdicts) is `decide`'s, shared with replay.
Re-running the same search resumes it. The uniform baselines are enqueued when the study is created,
so they are always its first trials. Once the study has its trials, the group that created it
(`search`, not `worker`) trains the baselines with search.baseline_seeds fresh seeds: the seed noise
its front states, then (search.replicates = "auto") the assignments whose place on the expected
front is inside noise, until they are resolved or the replicate share is spent. SIGTERM or SIGUSR1
stops the trial in flight (recorded as preempted, queued again)
and ends the loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from moesearch.core import preempt
from moesearch.core.assignment import Assignment, layer_name
from moesearch.core.trial import Origin, StudyAttr, TrialAttr
from moesearch.supervisor import accounting, decide, liveness, optuna_compat, recovery, replicates, status, telling
from moesearch.supervisor.group import WorkerGroup
from moesearch.supervisor.runner import Outcome, record_and_tell, summary
from moesearch.supervisor.settings import Settings

WAIT_S = 2.0  # between looks at a study whose remaining trials run in other groups


@dataclass(frozen=True)
class SearchReport:
    target: int  # the study's --trials when the loop ended
    trained_now: int
    trained_total: int
    repeats_answered: int
    stopped_early: str | None  # why the search stopped before the target, if it did
    replicates_now: int = 0  # seed replicates of the baselines trained now (search.baseline_seeds)
    pruned_now: int = 0  # of trained_now, stopped at a rung
    spent: dict = field(default_factory=lambda: {"steps": 0, "device_s": 0.0})  # the study's compute at the end


def run_search(settings: Settings, study: optuna.Study, replicate_baselines: bool = False) -> SearchReport:
    """Train until the study has its target of trained trials (user attribute `trials`, re-read each round).

    replicate_baselines: then train the baselines' missing seed replicates (search.baseline_seeds) and, with
    search.replicates = "auto", the replicates the expected front asks for.
    """
    trained_now = pruned_now = repeats = in_a_row = 0
    bar = tqdm(
        total=target(study),
        desc=f"study {settings.study}",
        unit="trial",
        disable=None if settings.progress else True,
        dynamic_ncols=True,
    )  # None: off unless a tty
    with WorkerGroup(settings.launch, settings.results / settings.study / "logs") as group, bar:
        while True:
            for line in recovery.recover(study, settings.results):
                bar.write(line)
            now, n_trials = accounting.snapshot(study, settings.seed), target(study)
            bar.total = n_trials
            bar.update(min(now.done, n_trials) - bar.n)
            if stopped := _why_stop(settings, study, now, n_trials, in_a_row):
                break
            if _others_finish(settings, now, n_trials):
                time.sleep(WAIT_S)
                continue
            trial = study.ask()
            try:
                outcome = _answer(settings, study, trial, group, n_trials)
            except BaseException as e:  # interrupted, group never started, or a bug: the trial must not stay RUNNING
                if not recovery.tell_if_recorded(study, settings.results, trial.number):  # a record is the truth
                    telling.abandon(study, trial, e, retry=preempt.requested() is not None)
                raise
            if outcome == "repeat":
                repeats, in_a_row = repeats + 1, in_a_row + 1
            elif outcome in ("pruned repeat", "failed repeat"):  # the sampler's blind spot, not its convergence
                repeats += 1
            elif outcome == "withdrawn":  # another group has it: give that group time
                time.sleep(WAIT_S)
            else:
                trained_now, in_a_row = trained_now + (not outcome.preempted), 0
                pruned_now += outcome.pruned
                # the study's compute: every group's at this round's snapshot, plus this trial's (no extra read)
                bar.set_postfix(
                    front=_front_size(study),
                    pruned=pruned_now,
                    steps=f"{now.spent['steps'] + outcome.steps_trained:,.0f}",
                )
                bar.write(summary(outcome, settings.space.search.objectives))
        spent_all = decide.budget_spent(accounting.snapshot(study, settings.seed).spent, budget(study))
        todo = (
            replicates.baseline_plan(settings) if replicate_baselines and not (preempt.requested() or spent_all) else []
        )
        if todo:
            bar.write(f"seed noise: training the baselines with {len(todo)} fresh seeds (search.baseline_seeds)")
        replicated = replicates.retrain(settings, study, group, todo)
        if (
            replicate_baselines
            and settings.space.search.replicates == "auto"
            and not (preempt.requested() or spent_all)
        ):
            replicated += replicates.retrain_auto(settings, study, group, bar)
    end = accounting.snapshot(study, settings.seed)
    early = stopped if end.done < n_trials or preempt.requested() else None  # complete: nothing stopped it early
    return SearchReport(n_trials, trained_now, end.done, repeats, early, replicated, pruned_now, end.spent)


def _front_size(study: optuna.Study) -> int:
    """The front's size as `pareto` and `status` count it (assignments, seed means), not Optuna's best_trials."""
    return status.front_size(study, accounting.trained_among(study.get_trials(deepcopy=False), budget_only=False))


def target(study: optuna.Study) -> int:
    """The study's --trials: set by `search` and `worker --trials`, read by every group."""
    return study.user_attrs[StudyAttr.TRIALS]


def budget(study: optuna.Study) -> dict | None:
    """The study's compute budget, set by `search --budget` and `worker --budget`: {"steps": n} or {"device_h": x}."""
    return study.user_attrs.get(StudyAttr.BUDGET)


def _why_stop(
    settings: Settings, study: optuna.Study, now: accounting.Snapshot, n_trials: int, in_a_row: int
) -> str | None:
    if preempt.requested():
        return f"preempted by {preempt.requested()}; run the same command again to resume"
    return decide.why_stop(
        decided=now.done,
        target=n_trials,
        evaluated=len(now.known | now.failed),
        space_size=settings.space.size(),
        in_a_row=in_a_row,
        spent=now.spent,
        budget=budget(study),
    )


def _others_finish(settings: Settings, now: accounting.Snapshot, n_trials: int) -> bool:
    """Whether the trials running in other groups complete the study or the space (unless those groups die)."""
    running = {t.user_attrs.get(TrialAttr.ASSIGNMENT) for t in now.running.values()}
    decided = now.known.keys() | now.failed.keys() | running
    return now.done + len(now.running) >= n_trials or len(decided) >= settings.space.size()


def _answer(
    settings: Settings, study: optuna.Study, trial: optuna.Trial, group: WorkerGroup, n_trials: int
) -> Outcome | str:
    """Tell the study this trial's result: trained, "repeat" (an earlier result answers), "pruned repeat" or
    "failed repeat" (a pruned or diverged one proposed again: a random undecided one is queued next) or "withdrawn"."""
    trial.set_user_attr(TrialAttr.GROUP, liveness.me())  # first: recovery must know whose trial this is
    choices = settings.space.layer_choices()
    layers = Assignment(trial.suggest_categorical(layer_name(i), c) for i, c in enumerate(choices))
    assignment = layers.text
    trial.set_user_attr(TrialAttr.ASSIGNMENT, assignment)
    trial.set_user_attr(TrialAttr.SEED, settings.seed)
    now = accounting.snapshot(study, settings.seed)
    if (earlier := decide.repeat_of(now.known, assignment)) is not None:
        number, values = earlier  # values None: pruned, and it stays pruned
        trial.set_user_attr(TrialAttr.DUPLICATE_OF, number)
        if values is not None:
            study.tell(trial, values)
            return "repeat"
        study.tell(trial, state=TrialState.PRUNED)
        return _instead(study, now, choices, trial.number, "pruned repeat")  # the sampler cannot learn from it
    if (failed := now.failed.get(assignment)) is not None:  # a seed's training is deterministic: it diverges again
        trial.set_user_attr(TrialAttr.DUPLICATE_OF, failed)
        trial.set_user_attr(
            TrialAttr.FAILURE_REASON,
            f"a repeat of trial {failed}, which failed with this seed in a way that repeats: not trained again "
            "(`moesearch train` can)",
        )
        study.tell(trial, state=TrialState.FAIL)
        return _instead(study, now, choices, trial.number, "failed repeat")  # TPE and NSGA-II ignore failed ones
    if same := _running_elsewhere(trial, now, settings.seed):  # that group trains it: not queued again
        telling.fail_outside_budget(
            study,
            now.running[trial.number],
            f"withdrawn: the same assignment is running in trial {same}",
            requeue=False,
        )
        return "withdrawn"
    if _target_taken(trial, now, n_trials):  # a queued trial (baseline, retry) goes back for later
        mine = now.running[trial.number]
        telling.fail_outside_budget(
            study,
            mine,
            f"withdrawn: trials running in other groups complete the study's {n_trials} trials",
            requeue=optuna_compat.was_queued(mine),
        )
        return "withdrawn"
    trial.set_user_attr(TrialAttr.TRAINED, True)
    trial.set_user_attr(TrialAttr.ORIGIN, Origin.SEARCH)
    return record_and_tell(settings, study, trial, group, layers, Origin.SEARCH) or "withdrawn"


def _instead(study: optuna.Study, now: accounting.Snapshot, choices: list[list[str]], number: int, outcome: str) -> str:
    """After a repeat the sampler cannot learn from: queue an undecided assignment as its next proposal
    (`outcome`), or, when none is left to find, count it as a plain repeat (toward the stall stop)."""
    if fresh := decide.instead_of_pruned(now.known | now.failed, choices, np.random.default_rng(number)):
        study.enqueue_trial(fresh.params())
        return outcome
    return "repeat"


def _running_elsewhere(trial: optuna.Trial, now: accounting.Snapshot, seed: int) -> int | None:
    """Another RUNNING trial of the same assignment and seed. Every group defers to every other, so two
    can never train it at once (both may withdraw in a tight race; the sampler proposes it again)."""
    return next(
        (
            t.number
            for t in now.running.values()
            if t.number != trial.number and t.params == trial.params and t.user_attrs.get(TrialAttr.SEED, seed) == seed
        ),
        None,
    )


def _target_taken(trial: optuna.Trial, now: accounting.Snapshot, n_trials: int) -> bool:
    """Whether lower-numbered running or queued trials already complete the target: the lowest numbers go first."""
    ahead = sum(n < trial.number for n in now.running) + sum(n < trial.number for n in now.waiting)
    return now.done + ahead >= n_trials
