"""`moesearch promote`: train a study's answer at the next size of its space's scale ladder.

The trainings go to a linked study in the same storage, `<study>-<size>`, created for the space at that
size (`Space.at_size`), so every record carries its size in its study name and its run config. What is
promoted (the smaller size's expected front and baselines, or the assignments named, in the proxy's layers
and deepened to the size's: `ladder.in_layers`, `assignment.deepen`) is fixed when the
linked study is created and kept with it (named ones are added later), so an interrupted promotion resumes
the same plan. Seeds come in rounds: each round plans from the records (`ladder.seeds_for`) and trains
every (assignment, seed) not yet complete, until a round finds nothing to train. Seeds count up from
--seed, the same for every assignment, so common random numbers pair them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

import optuna
import pandas as pd
from tqdm.auto import tqdm

from moesearch.analysis import ladder
from moesearch.core import preempt, results
from moesearch.core.assignment import Assignment, deepen
from moesearch.core.errors import InputError
from moesearch.core.files import write_atomic
from moesearch.core.scale import PROXY
from moesearch.core.space import Space
from moesearch.core.trial import Origin, State
from moesearch.supervisor import recovery, studies
from moesearch.supervisor.group import WorkerGroup
from moesearch.supervisor.replicates import retrain
from moesearch.supervisor.settings import Settings

TARGETS = "promoted"  # the linked study's user attribute: the assignments it trains


@dataclass(frozen=True)
class Promotion:
    """A promotion to one size, checked before anything is opened or written."""

    size: str
    source: str  # the study of the size below
    small: pd.DataFrame  # its records
    at_size: Settings  # the settings at this size, its study the linked one
    planned: list[str] | None  # a new promotion's assignments (None: named ones, or kept by the linked study)


def linked_name(study: str, size: str) -> str:
    """The study of `study`'s trainings at `size` (the proxy's is the study itself)."""
    return study if size == PROXY else f"{study}-{size}"


def check_size(space: Space, size: str) -> None:
    """InputError unless `size` is a rung of the space's ladder above the proxy."""
    rungs = space.sizes()[1:]
    if not rungs:
        raise InputError(f"SPACE: {space.name!r} has no [[scale]] ladder to promote to; add one (docs/guide/ladder.md)")
    if size not in rungs:
        raise InputError(f"--size: {size!r} is not a larger size of {space.name!r}; allowed: {', '.join(rungs)}")


def below(space: Space, size: str) -> str:
    """The size under `size` on the ladder (`size` a rung above the proxy)."""
    check_size(space, size)
    sizes = space.sizes()
    return sizes[sizes.index(size) - 1]


def prepare(settings: Settings, size: str, named: list[Assignment]) -> Promotion:
    """Every check a promotion to `size` makes before it opens a study or writes a file: the size, the
    records of the size below, and (new, nothing named) what to promote. InputError on the first that fails."""
    lower = below(settings.space, size)
    source = linked_name(settings.study, lower)
    small = results.load_trials(settings.results, source)
    if not (small["state"] == State.COMPLETE).any():
        how = "moesearch search SPACE" if lower == PROXY else f"moesearch promote SPACE --size {lower}"
        raise InputError(
            f"--size {size}: the study below it, {source!r}, has no completed training in "
            f"{str(settings.results)!r}; run `{how}` first"
        )
    at_size = replace(settings, space=settings.space.at_size(size), study=linked_name(settings.study, size))
    planned = None
    if not named and ladder.link_of(settings.results, at_size.study) is None:  # new: its plan is made now
        proxy = settings.space.model.n_layers  # a deeper size below is read in the proxy's layers
        in_proxy_layers = ladder.in_layers(small, proxy) if ladder.depth_of(small) != proxy else small
        planned = ladder.targets(in_proxy_layers, settings.space.layer_choices())
        if planned is None:
            raise InputError(
                f"--size {size}: the study below it, {source!r}, has too few trainings for a noise model (3 "
                "complete trainings of at least 2 assignments), so no expected front to promote; train more "
                "there, or name assignments with --layers"
            )
    if planned is not None:
        planned = deepened(planned, at_size.space)
    return Promotion(size, source, small, at_size, planned)


def deepened(texts: list[str], space: Space) -> list[str]:
    """Assignments in the proxy's layers as trained at `space`'s depth (each layer over its block)."""
    return [deepen(Assignment.parse(t), space.model.n_layers).text for t in texts]


def promote(
    promotion: Promotion,
    storage: optuna.storages.BaseStorage,
    named: list[Assignment],
    seeds: int | None,
    max_seeds: int,
    say: Callable[[str], None],
) -> pd.DataFrame:
    """Train a prepared promotion until its plan is done (or preempted); returns the linked study's records.
    seeds: per assignment, fixed; None: as the noise model asks, at most max_seeds."""
    at_size, size = promotion.at_size, promotion.size
    study = studies.open_study(
        storage,
        at_size.study,
        at_size.space,
        at_size.seed,
        at_size.data,
        at_size.data_sha256,
        str(at_size.results),
        queue=False,
        shape=at_size.shape,
        tokenizer=at_size.tokenizer,
    )
    # trials a dead run left RUNNING: no search loop recovers them here, and the plan comes from the
    # records, so the next round retrains what has none
    for line in recovery.recover(study, at_size.results):
        say(line)
    link = at_size.results / at_size.study / ladder.LINK
    if not link.is_file():  # `pareto` and the report find the size below from it
        write_atomic(link, lambda tmp: tmp.write_text(json.dumps({"source": promotion.source, "size": size})))
    chosen = _targets(study, promotion, named)
    objective = ladder.objective_of(at_size.space.search.objectives)
    bound = seeds or max_seeds
    say(
        f"at most {len(chosen)} assignments x {bound} seed{'s' * (bound != 1)} = {len(chosen) * bound} trainings "
        + ("(--seeds)" if seeds else "(the seeds grow as the noise model asks, up to --max-seeds)")
    )
    if not ladder.transfer_ready(promotion.small, objective):
        say(
            f"warning: the size below resolved no effect on {objective}: this promotion measures whether its "
            "ranking holds (rank correlation), with no resolved effect to carry"
        )
    bar = tqdm(desc=f"promote to {size}", unit="trial", disable=None if at_size.progress else True, dynamic_ncols=True)
    with WorkerGroup(at_size.launch, at_size.results / at_size.study / "logs") as group, bar:
        while not preempt.requested():
            large = results.load_trials(at_size.results, at_size.study)
            if seeds is None:
                n_seeds, why = ladder.seeds_for(promotion.small, large, objective)
                n_seeds, why = min(n_seeds, max_seeds), f"{why}; at most {max_seeds}"
            else:
                n_seeds, why = seeds, "--seeds"
            todo = _missing(large, chosen, at_size.seed, n_seeds)
            seeds_text = f"{n_seeds} seed{'s' * (n_seeds != 1)}"
            say(f"plan: {len(chosen)} assignments x {seeds_text} ({why}): {len(todo)} left to train")
            if not todo:
                break
            bar.total = (bar.total or 0) + len(todo)
            if retrain(at_size, study, group, todo, bar, origin=Origin.PROMOTE) < len(todo):
                break  # preempted, or settled elsewhere: the next run plans again
    return results.load_trials(at_size.results, at_size.study)


def _targets(study: optuna.Study, promotion: Promotion, named: list[Assignment]) -> list[str]:
    """The linked study's assignments: kept from its first promotion, the named ones added."""
    kept = study.user_attrs.get(TARGETS)
    if kept is None:
        kept = promotion.planned or []
    kept = list(dict.fromkeys(kept + deepened([a.text for a in named], promotion.at_size.space)))
    study.set_user_attr(TARGETS, kept)
    return kept


def _missing(large: pd.DataFrame, chosen: list[str], first_seed: int, n_seeds: int) -> list[tuple[str, int]]:
    """(assignment, seed) of the plan without a record yet. A failed one is a result (a seed's training
    diverges again) and is not trained again; a preempted one is."""
    done = large[large["state"] != State.PREEMPTED]
    have = set(zip(done["assignment"], done["seed"], strict=True))
    return [(a, s) for s in range(first_seed, first_seed + n_seeds) for a in chosen if (a, s) not in have]
