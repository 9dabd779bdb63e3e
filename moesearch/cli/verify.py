"""`moesearch verify`: re-train the front and the baselines with fresh seeds; is the front real?"""

from __future__ import annotations

import click

from moesearch.cli import cli
from moesearch.cli.options import describe, open_storage, resolve, run_options
from moesearch.errors import InputError


@cli.command()
@run_options
@click.option("--seeds", "n_seeds", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Fresh seeds per front member and baseline, beyond the seeds they already have.")
def verify(n_seeds: int, **options) -> None:
    """Re-train the Pareto front and the uniform baselines of a study with fresh seeds.

    The new trials join the study as seed replicates (origin 'verify'; they do not count toward a
    search's --trials). Then prints mean ± sd per objective and which assignments stay non-dominated
    once the spread is counted. Run it again to finish an interrupted check: done seeds are kept.
    """
    import optuna

    from moesearch import noise, results

    settings = resolve(**options)
    storage = open_storage(settings, explicit=options["storage"] is not None)
    if settings.study not in optuna.get_all_study_names(storage):
        raise InputError(f"--study: no study {settings.study!r} in this storage; run `moesearch search` first")
    trials = results.load_trials(settings.results, settings.study)
    if not (trials["state"] == "COMPLETE").any():
        raise InputError(f"--study: {settings.study!r} has no completed trial in {str(settings.results)!r} to verify")
    todo = noise.plan(trials, n_seeds, first_seed=settings.seed + 1)
    click.echo(f"{describe(settings)} | {len(todo)} replicate trials to train")
    _train_replicates(settings, storage, todo)
    trials = results.load_trials(settings.results, settings.study)
    click.echo(noise.text(noise.replicate_table(trials), settings.space.search.objectives))


def _train_replicates(settings, storage, todo: list[tuple[str, int]]) -> None:
    from dataclasses import replace

    from tqdm.auto import tqdm

    from moesearch import results
    from moesearch import study as study_mod
    from moesearch.group import WorkerGroup
    from moesearch.runner import run_trial, summary

    study = study_mod.open_study(storage, settings.study, settings.space, settings.seed)
    objectives = settings.space.search.objectives
    bar = tqdm(todo, desc="verify", unit="trial", disable=None if settings.progress else True, dynamic_ncols=True)
    with WorkerGroup(settings.nproc, settings.results / settings.study / "logs") as group:
        for assignment, seed in bar:
            layers = assignment.split(",")
            outcome = run_trial(replace(settings, seed=seed), group, -1, layers, origin="verify",
                                replicate_of=study_mod.replicate_of(study, assignment, seed))
            values = outcome.values(objectives) if outcome.ok else None
            outcome.row["trial"] = study_mod.add_trained(study, settings.space, layers, seed, values,
                                                         outcome.row["failure_reason"], origin="verify")
            results.write_trial(settings.results, outcome.record)
            bar.write(f"{summary(outcome, objectives)} seed {seed}")
