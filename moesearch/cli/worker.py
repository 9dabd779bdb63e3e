"""`moesearch worker`: one more worker group on an existing study, with the study's own space and seed."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch import preempt
from moesearch.cli import cli
from moesearch.cli.options import DEFAULT_RESULTS, DRY_RUN, describe, group_options, open_existing_storage, open_storage, resolve
from moesearch.errors import InputError
from moesearch.vocab import StudyAttr


@cli.command()
@click.option("--storage", required=True, help="The study's Optuna storage URL (postgresql://, journal:PATH, sqlite:///).")
@click.option("--study", "study_name", required=True, help="The study to join (made by `moesearch search`).")
@click.option("--results", type=click.Path(path_type=Path),
              help="Folder for Parquet records and logs [default: the study's, where `search` wrote; every group "
                   "of the study must write to the same folder].")
@click.option("--trials", type=click.IntRange(min=1),
              help="Trained trials in the study: raises its target for every group [default: the target it has].")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@DRY_RUN
@group_options
def worker(storage: str, study_name: str, results: Path | None, trials: int | None, progress: bool, dry_run: bool,
           **group) -> None:
    """Join an existing study as one more worker group, until it has --trials trained trials.

    The space, seed and training text come from the study, so any number of groups on any number of
    machines can run the same command. Trials of groups that died are settled first (from their
    record, or failed and queued again); an assignment running in another group is not started.
    """
    from moesearch import space as space_mod
    from moesearch import study as study_mod
    from moesearch.cli.search import search_and_report

    preempt.install()  # from the start: a signal during set-up must not kill the command
    if dry_run:
        _dry_run(storage, study_name, results, **group)
    opened = open_existing_storage(storage)
    study = study_mod.load_existing(opened, study_name)
    space = space_mod.Space.model_validate(study.user_attrs[StudyAttr.SPACE])
    run = study.user_attrs[StudyAttr.RUN]
    studys = Path(run.get("results") or DEFAULT_RESULTS)
    settings = resolve(space, storage, study_name, results or studys, run["data"], run["seed"], progress, **group)
    if settings.results != studys.resolve():
        click.echo(f"note: records go to {settings.results}; the study's search wrote to {studys} (the same folder "
                   "on a shared filesystem under another path is fine; another folder splits the study's records)")
    if settings.data_sha256 != run["data_sha256"]:
        raise InputError(f"--study {study_name!r}: the training text here ({run['data'] or 'the standard library'}, "
                         f"sha256 {settings.data_sha256[:12]}) differs from the study's ({run['data_sha256'][:12]}); "
                         "allowed: the same text on every machine")
    open_storage(settings, explicit=True)  # the records under --results must belong to this storage
    study = study_mod.open_study(opened, study_name, space, study_mod.group_seed())
    if trials and trials > study.user_attrs[StudyAttr.TRIALS]:  # raise only: a stale, lower value would stop every group
        study.set_user_attr(StudyAttr.TRIALS, trials)
    elif trials and trials < study.user_attrs[StudyAttr.TRIALS]:
        click.echo(f"note: --trials {trials} is below the study's target {study.user_attrs[StudyAttr.TRIALS]}, which stays; "
                   "`moesearch search --trials N` sets a lower one")
    click.echo(f"{describe(settings)} | joins, {study.user_attrs[StudyAttr.TRIALS]} trials")
    search_and_report(settings, study)


def _dry_run(storage: str, study_name: str, results: Path, **group) -> None:
    """The study is not opened (that may create it): its space is checked when the worker starts."""
    from moesearch.cli.options import check_exists, check_storage_url, resolve_launch

    launch = resolve_launch(**group)
    where = check_storage_url(storage)
    check_exists(storage)
    records = results.resolve() if results else "the study's results folder"
    click.echo(f"plan: join study {study_name!r} in {where} | {launch.describe()} | records in {records}")
    raise SystemExit(0)
