"""`moesearch verify`: re-train the front and the baselines with fresh seeds; is the front real?"""

from __future__ import annotations

import click

from moesearch.cli import cli
from moesearch.cli.options import describe, dry_run, run_options
from moesearch.core import preempt
from moesearch.core.trial import VERIFY_SEEDS


@cli.command()
@run_options
@click.option(
    "--seeds",
    "n_seeds",
    type=click.IntRange(1, 100),
    default=VERIFY_SEEDS,
    show_default=True,
    help="Seed replicates per front member and baseline: each is trained until it has 1 + SEEDS seeds.",
)
def verify(n_seeds: int, **options) -> None:
    """Re-train the Pareto front and the uniform baselines of a study with fresh seeds.

    The new trials join the study as seed replicates (origin 'verify'; they do not count toward a
    search's --trials). Then prints mean ± sd per objective and which assignments stay non-dominated
    once the spread is counted. Fresh seeds count up from --seed + 1. Run it again to finish an
    interrupted check: seeds already done are kept.
    """
    from moesearch.supervisor.settings import resolve

    preempt.install()  # from the start: a signal during set-up must not kill the command
    settings = resolve(**options)  # bad input stops here, before the analysis and supervisor imports

    from moesearch.analysis import noise
    from moesearch.supervisor import replicates
    from moesearch.supervisor import storage as storage_mod

    if options["dry_run"]:
        dry_run(settings, f"verify with {n_seeds} seeds")
    storage = storage_mod.open_for(settings, explicit=options["storage"] is not None)
    trials = replicates.verify(
        settings, storage, n_seeds, lambda todo: click.echo(f"{describe(settings)} | {todo} replicate trials to train")
    )
    click.echo(noise.text(noise.replicate_table(trials), settings.space.search.objectives))
