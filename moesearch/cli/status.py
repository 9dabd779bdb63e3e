"""`moesearch status`: a study's progress, live worker groups, throughput and front size."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.cli.options import DEFAULT_RESULTS


@cli.command()
@click.option("--storage", help="The study's Optuna storage URL [default: the sqlite file in --results].")
@click.option(
    "--study",
    "study_name",
    help="Study name [default: the only study in the storage, else the one with the latest trial].",
)
@click.option(
    "--results",
    type=click.Path(path_type=Path),
    default=DEFAULT_RESULTS,
    show_default=True,
    help="Folder of the default sqlite storage.",
)
def status(storage: str | None, study_name: str | None, results: Path) -> None:
    """Show a study's progress: trials by state, worker groups alive, trials per hour, front size.

    Reads the storage only; safe to run at any time, from any machine that reaches it.
    """
    from moesearch.supervisor import storage as storage_mod

    url = storage or f"sqlite:///{results / 'moesearch.db'}"
    storage_mod.check_exists(url)  # first: a missing file answers before optuna and the analysis are imported

    import optuna

    from moesearch.cli.study_option import chosen
    from moesearch.core.errors import InputError
    from moesearch.supervisor import status as status_mod
    from moesearch.supervisor import studies

    opened = storage_mod.open_existing(url)
    names = optuna.get_all_study_names(opened)
    if study_name is None and not names:
        raise InputError(f"--study: no study in {storage_mod.redact(url)!r}")
    if study_name is None:
        study_name = chosen(
            sorted(names),
            lambda found: max(found, key=lambda name: status_mod.last_trial_at(opened, name)),
            storage_mod.redact(url),
        )
    study = studies.load_existing(opened, study_name, to_join=False)  # a study `train` made has no target
    click.echo(status_mod.text(study.study_name, storage_mod.redact(url), status_mod.of(study)))
    _verdict(results, study.study_name)


def _verdict(results: Path, study_name: str) -> None:
    """What the records resolve so far (the noise model's verdict), where this machine has them."""
    from moesearch.core import results as results_mod

    if results_mod.trials_dir(results, study_name).is_dir():
        from moesearch.analysis import effects, verdict

        click.echo(verdict.verdict(effects.fit(results_mod.load_trials(results, study_name))))
