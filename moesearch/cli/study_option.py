"""The options of every command that reads a study's records: --results and --study."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli.options import DEFAULT_RESULTS
from moesearch.core.errors import InputError
from moesearch.core.trial import State


def study_options(command, newest: bool = True):
    default = "the only one in the results folder" + (", else the most recently written" if newest else "")
    command = click.option("--study", "study_name", help=f"Study to read [default: {default}].")(command)
    return click.option(
        "--results",
        type=click.Path(path_type=Path),
        default=DEFAULT_RESULTS,
        show_default=True,
        help="Folder the search wrote to.",
    )(command)


def one_study_options(command):
    """`study_options` of a command that changes a study: it must be named when there are several."""
    return study_options(command, newest=False)


def find_study(results: Path, study_name: str | None, newest: bool = True) -> str:
    """The study to read: the one named, the only one with records, or (newest) the one most recently
    written, said on stderr; InputError otherwise."""
    if not results.is_dir():  # before importing pandas and pyarrow (results): a typo answers at once
        raise InputError(
            f"--results: {str(results)!r} is not a folder; allowed: the results folder of a search, e.g. "
            "--results path/to/results (a search writes to ./results where it was started)"
        )
    from moesearch.core import results as results_mod

    found = results_mod.studies(results)
    if study_name is None:
        if len(found) == 1 or (found and newest):
            return chosen(found, lambda names: results_mod.most_recent(results, names), str(results))
        raise InputError(
            f"--study: {len(found)} studies have records in {str(results)!r}; "
            f"choose one of: {', '.join(found) or '(none)'}"
        )
    if study_name not in found:
        raise InputError(
            f"--study: no records of {study_name!r} in {str(results)!r}; studies there: {', '.join(found) or '(none)'}"
        )
    return study_name


def load_study(results: Path, study_name: str):
    """The study's trials, with at least one completed trial; InputError otherwise."""
    from moesearch.core import results as results_mod

    trials = results_mod.load_trials(results, study_name)
    if not (trials["state"] == State.COMPLETE).any():
        raise InputError(f"--study: {study_name!r} has no completed trial yet in {str(results)!r}")
    return trials


def chosen(names: list[str], newest, where: str) -> str:
    """The only study, or `newest(names)`, the most recently written, said on stderr: a second study must
    not stop a flagless command that only reads."""
    if len(names) == 1:
        return names[0]
    name = newest(names)
    others = ", ".join(n for n in names if n != name)
    click.echo(
        f"moesearch: reading study {name!r}, the most recently written of {len(names)} in {where!r} "
        f"(others: {others}; choose with --study)",
        err=True,
    )
    return name
