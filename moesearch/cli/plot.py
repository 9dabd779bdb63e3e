"""`moesearch plot`: the study's pictures as PNG files (matplotlib, no torch)."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.cli.study_option import find_study, load_study, study_options


@cli.command()
@study_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the PNG files [default: RESULTS/STUDY/plots].",
)
def plot(results: Path, study_name: str | None, out: Path | None) -> None:
    """Draw the front (every pair of objectives), the hypervolume history, the activation of each layer
    along the front, the learning curves, the hidden-activation sparsity and outliers, the
    quantization gap by layer activation, where layers had learnable activations the curve each learned,
    and where layers mixed activations over their experts the router's share of each at each evaluation,
    of a study, one PNG each."""
    study_name = find_study(results, study_name)  # first: a bad flag answers before the analysis is imported

    from moesearch.analysis import expected, pareto, plots
    from moesearch.core import results as results_mod

    trials = load_study(results, study_name)
    analysis = pareto.analyse(trials)
    figures = plots.draw_all(
        analysis,
        results_mod.load_steps(results, study_name),
        results_mod.load_layers(results, study_name),
        trials,
        expected.expected_front(trials, analysis.objectives),
    )
    for path in plots.save(figures, out or results / study_name / "plots"):
        click.echo(f"wrote {path}")
