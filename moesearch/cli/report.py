"""`moesearch report`: one self-contained HTML file about a study (no torch)."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.cli.study_option import find_study, load_study, study_options


@cli.command()
@study_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="HTML file to write [default: RESULTS/STUDY/report.html].",
)
def report(results: Path, study_name: str | None, out: Path | None) -> None:
    """Write an HTML report of a study: settings and provenance, the front table, the plots and,
    once `verify` has run, the noise check. Images are embedded: the one file is the whole report."""
    study_name = find_study(results, study_name)  # first: a bad flag answers before the analysis is imported

    from moesearch.analysis import pareto
    from moesearch.analysis import report as report_mod
    from moesearch.core import results as results_mod
    from moesearch.core.files import write_atomic

    trials = load_study(results, study_name)
    page = report_mod.render(
        pareto.analyse(trials),
        trials,
        results_mod.load_steps(results, study_name),
        results_mod.load_layers(results, study_name),
        str(results),
    )
    out = write_atomic(out or results / study_name / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    click.echo(f"wrote {out}")
    from moesearch.analysis import interactive

    if not interactive.available():
        click.echo(f"note: written without its interactive front; {interactive.MISSING}")
