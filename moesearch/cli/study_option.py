"""The options of every command that reads a study's records: --results and --study."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli.options import DEFAULT_RESULTS
from moesearch.errors import InputError
from moesearch.vocab import State


def study_options(command):
    command = click.option("--study", "study_name",
                           help="Study to read [default: the only one in the results folder].")(command)
    return click.option("--results", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True,
                        help="Folder the search wrote to.")(command)


def find_study(results: Path, study_name: str | None) -> str:
    """The study to read: the one named, or the only one with records; InputError otherwise."""
    from moesearch import results as results_mod

    if not results.is_dir():
        raise InputError(f"--results: {str(results)!r} is not a folder")
    found = results_mod.studies(results)
    if study_name is None:
        if len(found) != 1:
            raise InputError(f"--study: {len(found)} studies have records in {str(results)!r}; "
                             f"choose one of: {', '.join(found) or '(none)'}")
        return found[0]
    if study_name not in found:
        raise InputError(f"--study: no records of {study_name!r} in {str(results)!r}; "
                         f"studies there: {', '.join(found) or '(none)'}")
    return study_name


def load_study(results: Path, study_name: str):
    """The study's trials, with at least one completed trial; InputError otherwise."""
    from moesearch import results as results_mod

    trials = results_mod.load_trials(results, study_name)
    if not (trials["state"] == State.COMPLETE).any():
        raise InputError(f"--study: {study_name!r} has no completed trial yet in {str(results)!r}")
    return trials
