"""`moesearch compact`: merge a finished study's per-trial Parquet files into one part file per table."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.cli.study_option import find_study, one_study_options


@cli.command()
@one_study_options
def compact(results: Path, study_name: str | None) -> None:
    """Merge the study's one-file-per-trial records into part files, for fast loading of large studies.

    Nothing is lost if it is interrupted. Run it on finished studies: not while a search writes to it."""
    study_name = find_study(results, study_name, newest=False)  # never a guess: it rewrites the files
    from moesearch.core import results as results_mod

    merged = results_mod.compact(results, study_name)
    click.echo(f"merged {merged} trials of study {study_name!r} in {results}")
