"""`moesearch search`: a multi-objective per-layer activation search; resumes when run again."""

from __future__ import annotations

import click

from moesearch.cli import cli
from moesearch.cli.options import describe, open_storage, resolve, run_options


@cli.command()
@run_options
@click.option("--trials", type=click.IntRange(min=1), help="Trained trials in the study, baselines included [default: the space's search.trials].")
def search(trials: int | None, **options) -> None:
    """Search activations per layer over SPACE (a file, or a shipped space's name).

    Uniform baselines run first; an assignment already trained with the same --seed is answered from
    the study, not trained again. Run the same command again to resume or extend (--trials).
    """
    from moesearch import pareto, results
    from moesearch.search import run_search

    settings = resolve(**options)
    storage = open_storage(settings, explicit=options["storage"] is not None)
    n_trials = trials or settings.space.search.trials
    click.echo(f"{describe(settings)} | {n_trials} trials")
    report = run_search(settings, n_trials, storage)
    click.echo(f"\n{report.trained_now} trials trained now, {report.trained_total} in study {settings.study!r}"
               f" ({report.repeats_answered} repeated proposals answered from the study)")
    if report.stopped_early:
        click.echo(f"stopped before {n_trials} trials: {report.stopped_early}")
    trials_df = results.load_trials(settings.results, settings.study)
    if (trials_df["state"] == "COMPLETE").any():
        click.echo(pareto.front_text(pareto.analyse(trials_df)))
