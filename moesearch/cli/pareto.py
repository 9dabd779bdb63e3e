"""`moesearch pareto`: the front of a study, read from its Parquet records alone (no torch)."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.cli.options import DEFAULT_RESULTS
from moesearch.errors import InputError


@cli.command()
@click.option("--results", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True,
              help="Folder the search wrote to.")
@click.option("--study", "study_name", help="Study to show [default: the only one in the results folder].")
def pareto(results: Path, study_name: str | None) -> None:
    """Print the Pareto front of a study, with the uniform baselines marked even when dominated."""
    from moesearch import pareto as pareto_mod
    from moesearch import results as results_mod

    if not results.is_dir():
        raise InputError(f"--results: {str(results)!r} is not a folder")
    found = results_mod.studies(results)
    if study_name is None:
        if len(found) != 1:
            raise InputError(f"--study: {len(found)} studies have records in {str(results)!r}; "
                             f"choose one of: {', '.join(found) or '(none)'}")
        study_name = found[0]
    elif study_name not in found:
        raise InputError(f"--study: no records of {study_name!r} in {str(results)!r}; "
                         f"studies there: {', '.join(found) or '(none)'}")
    click.echo(f"study {study_name!r} in {results}")
    click.echo(pareto_mod.front_table(results_mod.load_trials(results, study_name)))
