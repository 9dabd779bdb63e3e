"""Seed replicates: train known assignments again with fresh seeds, so a front can state its noise.

Used by `verify` (the front and the baselines) and by `search` (the baselines, search.baseline_seeds).
Plans are made from the study's records, so an interrupted run resumes: seeds already done are kept.
Replicates are trials of origin 'verify': they re-measure, and never count toward a search's --trials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import optuna
import pandas as pd
from tqdm.auto import tqdm

from moesearch.analysis import expected, noise
from moesearch.core import preempt, results
from moesearch.core.assignment import Assignment
from moesearch.core.errors import InputError
from moesearch.core.trial import Origin, State
from moesearch.supervisor import recovery, studies
from moesearch.supervisor.group import WorkerGroup
from moesearch.supervisor.runner import run_named, summary
from moesearch.supervisor.settings import Settings


def baseline_plan(settings: Settings) -> list[tuple[str, int]]:
    """The (baseline, seed) pairs still missing for search.baseline_seeds, from the study's records."""
    n_seeds = settings.space.search.baseline_seeds
    if not n_seeds or not results.trials_dir(settings.results, settings.study).is_dir():
        return []
    trials = results.load_trials(settings.results, settings.study)
    if not (trials["state"] == State.COMPLETE).any():
        return []
    return noise.plan(trials, n_seeds, first_seed=settings.seed + 1, baselines_only=True)


def auto_next(trials: pd.DataFrame, share: float, first_seed: int) -> tuple[str, int] | None:
    """The next replicate search.replicates = 'auto' trains: the trained assignment whose place on the
    expected front is most open (probability of being non-dominated nearest 1/2), with a seed from
    `first_seed` it has not trained with (`_seed_for`); under common random numbers first the partner of
    a replicate alone at its seed (`_partner`). None once every trained one is resolved, or the share is spent.

    Every trial of origin 'verify' counts against the share (baseline seeds and `verify` included): the
    budget is for re-measuring, whoever asked. Both sides count trials that gave a result, failed or
    pruned ones included (they cost compute); preempted ones, trained again, do not.
    """
    trained = trials["state"] != State.PREEMPTED  # what cost compute and gave a result, on both sides
    searched = int((trained & (trials["origin"] != Origin.VERIFY)).sum())
    if int((trained & (trials["origin"] == Origin.VERIFY)).sum()) >= int(share * searched):
        return None
    found = expected.expected_front(trials)
    if found is None:
        return None
    if (partner := _partner(trials, first_seed)) is not None:
        return partner
    table = found[0]
    open_ = table[(table["trained"] > 0) & table["verdict"].isin(expected.UNSETTLED)]
    if open_.empty:
        return None
    pick = open_.assign(gap=(open_["p_front"] - 0.5).abs()).sort_values(["gap", "trained"]).iloc[0]["assignment"]
    return pick, _seed_for(trials, pick, first_seed)


def _crn(trials: pd.DataFrame) -> bool:
    return "random_streams" in trials and bool((trials["random_streams"] == "crn").all())


def _seed_for(trials: pd.DataFrame, pick: str, first_seed: int) -> int:
    """A seed from `first_seed` the pick has no result with (a failed seed would fail again; a preempted
    one has none): under common random numbers the lowest one other assignments have (its block is then
    informative at once), else the lowest unused."""
    done = trials[trials["state"] == State.COMPLETE]
    used = noise.seeds_with_result(trials, pick)
    if _crn(trials) and (shared := sorted(s for s in set(done["seed"]) - used if s >= first_seed)):
        return int(shared[0])
    return next(noise.fresh_seeds(used, first_seed))


def _partner(trials: pd.DataFrame, first_seed: int) -> tuple[str, int] | None:
    """Under common random numbers a replicate alone at its seed is a block of its own, which the noise
    model fits exactly: it tells nothing until another assignment trains with that seed. Its partner is
    the study's first assignment (the reference baseline), else the next in trial order without a result at
    that seed (one that failed there would fail again); none for a seed where every one has failed."""
    if not _crn(trials):
        return None
    done = trials[trials["state"] == State.COMPLETE]
    settled = noise.with_result(trials)
    per_seed = done[done["seed"] >= first_seed].groupby("seed")["assignment"].unique()
    order = done.sort_values("trial")["assignment"].drop_duplicates().tolist()
    for seed, there in per_seed.items():
        if len(there) == 1:
            tried = set(settled.loc[settled["seed"] == seed, "assignment"])
            if (partner := next((a for a in order if a not in tried), None)) is not None:
                return partner, int(seed)
    return None


def retrain_auto(settings: Settings, study: optuna.Study, group: WorkerGroup, bar: tqdm | None = None) -> int:
    """search.replicates = 'auto': one replicate at a time, planned again from the records after each."""
    trained = 0
    while not preempt.requested():
        pick = auto_next(
            results.load_trials(settings.results, settings.study),
            settings.space.search.replicate_share,
            settings.seed + 1,
        )
        if pick is None:
            break
        (bar or tqdm).write(f"replicates: {pick[0]} is inside noise on the expected front; seed {pick[1]}")
        if not retrain(settings, study, group, [pick], bar):
            break  # preempted, or settled elsewhere: the next run plans again
        trained += 1
    return trained


def retrain(
    settings: Settings,
    study: optuna.Study,
    group: WorkerGroup,
    todo: list[tuple[str, int]],
    bar: tqdm | None = None,
    origin: Origin = Origin.VERIFY,
) -> int:
    """Train each (assignment, seed) of `todo` as a trial of `origin`; returns how many were trained.

    Stops at a preemption (the rest is trained when the command runs again: plans are made from the
    records, so seeds already done are kept).
    """
    objectives = settings.space.search.objectives
    trained = 0
    for assignment, seed in todo:
        if preempt.requested():
            break
        outcome = run_named(replace(settings, seed=seed), study, group, Assignment.parse(assignment), origin=origin)
        if outcome is None:
            continue  # settled by another group; planning again trains that seed
        trained += not outcome.preempted
        (bar or tqdm).write(f"{summary(outcome, objectives)} seed {seed}")
        if bar is not None:
            bar.update(1)
        if outcome.preempted:
            tqdm.write("preempted: run the same command again to finish")
            break
    return trained


def verify(
    settings: Settings, storage: optuna.storages.BaseStorage, n_seeds: int, planned: Callable[[int], None]
) -> pd.DataFrame:
    """`moesearch verify`: train the front and the baselines until each has 1 + n_seeds seeds.

    Fresh seeds count up from settings.seed + 1; `planned` hears how many trials that takes before
    any starts. Returns the study's records afterwards.
    """
    if settings.study not in optuna.get_all_study_names(storage):
        raise InputError(f"--study: no study {settings.study!r} in this storage; run `moesearch search` first")
    study = studies.open_for(storage, settings)
    for line in recovery.recover(study, settings.results):  # what a dead run left RUNNING: see `recovery`
        tqdm.write(line)
    trials = results.load_trials(settings.results, settings.study)
    if not (trials["state"] == State.COMPLETE).any():
        raise InputError(f"--study: {settings.study!r} has no completed trial yet in {str(settings.results)!r}")
    todo = noise.plan(trials, n_seeds, first_seed=settings.seed + 1)
    planned(len(todo))
    bar = tqdm(
        total=len(todo), desc="verify", unit="trial", disable=None if settings.progress else True, dynamic_ncols=True
    )
    with WorkerGroup(settings.launch, settings.results / settings.study / "logs") as group, bar:
        retrain(settings, study, group, todo, bar)
    return results.load_trials(settings.results, settings.study)
