"""`moesearch worker`: one more worker group on an existing study, with the study's own space and seed."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.cli.options import BUDGET, DRY_RUN, MONITOR, describe, group_options
from moesearch.core import preempt
from moesearch.core.trial import StudyAttr


@cli.command()
@click.option(
    "--storage", required=True, help="The study's Optuna storage URL (postgresql://, journal:PATH, sqlite:///)."
)
@click.option("--study", "study_name", required=True, help="The study to join (made by `moesearch search`).")
@click.option(
    "--results",
    type=click.Path(path_type=Path),
    help="Folder for Parquet records and logs [default: the study's, where `search` wrote; every group "
    "of the study must write to the same folder].",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    help="Trained trials in the study: raises its target for every group [default: the target it has].",
)
@BUDGET
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@MONITOR
@DRY_RUN
@group_options
def worker(
    storage: str,
    study_name: str,
    results: Path | None,
    trials: int | None,
    budget: dict | None,
    progress: bool,
    monitor: tuple[str, ...],
    dry_run: bool,
    **group,
) -> None:
    """Join an existing study as one more worker group, until it has --trials trained trials (with --budget
    alone: until the budget is spent or the space is exhausted).

    The space, seed and training text come from the study, so any number of groups on any number of
    machines can run the same command. Trials of groups that died are settled first (from their
    record, or failed and queued again); an assignment running in another group is not started.
    """
    from moesearch.supervisor.storage import check_exists, check_url

    preempt.install()  # from the start: a signal during set-up must not kill the command
    if dry_run:
        _dry_run(storage, study_name, results, **group)
    check_url(storage)
    check_exists(storage)  # a missing storage answers before the supervisor is imported

    from moesearch.cli.search import plan, search_and_report
    from moesearch.supervisor.join import join

    joined = join(storage, study_name, results, trials, progress, monitor=monitor, **group)
    size = joined.settings.space.size()
    if budget:
        joined.study.set_user_attr(StudyAttr.BUDGET, budget)
    if budget and not trials:  # as with `search`: --budget alone bounds the search, the whole space its target
        joined.study.set_user_attr(StudyAttr.TRIALS, max(size, joined.study.user_attrs[StudyAttr.TRIALS]))
    for note in joined.notes:
        click.echo(note)
    click.echo(f"{describe(joined.settings)} | joins, {plan(joined.study, size)}")
    search_and_report(joined.settings, joined.study)


def _dry_run(storage: str, study_name: str, results: Path, **group) -> None:
    """The study is not opened (that may create it): its space is checked when the worker starts."""
    from moesearch.supervisor.settings import resolve_launch
    from moesearch.supervisor.storage import check_exists, check_url

    launch = resolve_launch(**group)
    where = check_url(storage)
    check_exists(storage)
    records = results.resolve() if results else "the study's results folder"
    click.echo(f"plan: join study {study_name!r} in {where} | {launch.describe()} | records in {records}")
    raise SystemExit(0)
