"""`moesearch verify`: re-train the front and the baselines with fresh seeds; is the front real?"""

from __future__ import annotations

import click

from moesearch import preempt
from moesearch.cli import cli
from moesearch.cli.options import describe, dry_run, open_storage, resolve, run_options
from moesearch.cli.study_option import load_study
from moesearch.errors import InputError
from moesearch.search_limits import VERIFY_SEEDS


@cli.command()
@run_options
@click.option("--seeds", "n_seeds", type=click.IntRange(1, 100), default=VERIFY_SEEDS, show_default=True,
              help="Seed replicates per front member and baseline: each is trained until it has 1 + SEEDS seeds.")
def verify(n_seeds: int, **options) -> None:
    """Re-train the Pareto front and the uniform baselines of a study with fresh seeds.

    The new trials join the study as seed replicates (origin 'verify'; they do not count toward a
    search's --trials). Then prints mean ± sd per objective and which assignments stay non-dominated
    once the spread is counted. Fresh seeds count up from --seed + 1. Run it again to finish an
    interrupted check: seeds already done are kept.
    """
    import optuna
    from tqdm.auto import tqdm

    from moesearch import noise, replicates, results
    from moesearch import study as study_mod
    from moesearch.group import WorkerGroup

    preempt.install()  # from the start: a signal during set-up must not kill the command
    settings = resolve(**options)
    if options["dry_run"]:
        dry_run(settings, f"verify with {n_seeds} seeds")
    storage = open_storage(settings, explicit=options["storage"] is not None)
    if settings.study not in optuna.get_all_study_names(storage):
        raise InputError(f"--study: no study {settings.study!r} in this storage; run `moesearch search` first")
    study = study_mod.open_study(storage, settings.study, settings.space, settings.seed, settings.data,
                                 settings.data_sha256)
    trials = load_study(settings.results, settings.study)
    todo = noise.plan(trials, n_seeds, first_seed=settings.seed + 1)
    click.echo(f"{describe(settings)} | {len(todo)} replicate trials to train")
    bar = tqdm(total=len(todo), desc="verify", unit="trial", disable=None if settings.progress else True,
               dynamic_ncols=True)
    with WorkerGroup(settings.launch, settings.results / settings.study / "logs") as group, bar:
        replicates.train(settings, study, group, todo, bar)
    trials = results.load_trials(settings.results, settings.study)
    click.echo(noise.text(noise.replicate_table(trials), settings.space.search.objectives))
