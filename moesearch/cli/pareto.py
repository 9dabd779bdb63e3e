"""`moesearch pareto`: the front of a study, read from its Parquet records alone (no torch)."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.cli.study_option import find_study, load_study, study_options
from moesearch.core.errors import InputError

_FORMATS = (".parquet", ".csv")


@cli.command()
@study_options
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="List every assignment, not only the front and baselines: pruned ones too, last, with their "
    "values at the rung where they stopped (and in --out, with state and rung columns).",
)
@click.option(
    "--observed",
    is_flag=True,
    help="Lead with the front of single trainings (means over seeds) even where the noise model's expected "
    "front can be tested; it leads anyway until then.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Also write one row per assignment, with pareto_rank, pareto and knee columns (.parquet or .csv).",
)
def pareto(results: Path, study_name: str | None, everything: bool, observed: bool, out: Path | None) -> None:
    """Print what a study resolved and its Pareto front: the noise model's expected front beside the uniform
    baselines (each comparison with its 95% interval) where the model can be tested, else the front of single
    trainings; then the per-layer effects, the hypervolume, what mixed layers' routers chose and learnable
    layers learned, and the ladder.

    Assignments trained with several seeds count once, at their mean.
    """
    if out is not None and out.suffix not in _FORMATS:
        raise InputError(f"--out: {str(out)!r} has suffix {out.suffix!r}; allowed: {', '.join(_FORMATS)}")
    study_name = find_study(results, study_name)  # first: a bad flag answers before the analysis is imported

    from moesearch.analysis import answer, curves, ladder, within_layers
    from moesearch.analysis import pareto as pareto_mod
    from moesearch.core import results as results_mod

    trials = load_study(results, study_name)
    analysis = pareto_mod.analyse(trials)
    evals = results_mod.load_evals(results, study_name)
    # --all: every assignment, the pruned ones too (their values at the rung; state and rung columns)
    table = pareto_mod.with_pruned(analysis, trials, evals) if everything else analysis.table
    click.echo(f"study {study_name!r} in {results}")
    led = pareto_mod.front_text(analysis, everything, table) if observed or everything else None
    for line in answer.summary(trials, analysis, observed=led):  # the verdict first, then the answer
        click.echo(line)
    for line in curves.text(curves.rung_correlation(trials, evals), curves.any_pruned(trials)) + curves.compute_text(
        trials, evals
    ):
        click.echo(line)
    for line in within_layers.text(results_mod.load_layers(results, study_name), trials.set_index("trial")["seed"]):
        click.echo(line)
    for line in ladder.section(results, study_name, trials):
        click.echo(line)
    if out is not None:
        export(table, out)
        click.echo(f"wrote {out}")


def export(table, out: Path) -> None:
    """The assignment table, written whole or not at all."""
    import json

    from moesearch.core.files import write_atomic

    if out.suffix == ".csv":  # a list as a list: "[0, 4]", never a bare "0" that reads as a count
        table = table.assign(trials=table["trials"].map(lambda t: json.dumps([int(n) for n in t])))
        write_atomic(out, lambda tmp: table.to_csv(tmp, index=False))
    else:
        write_atomic(out, lambda tmp: table.to_parquet(tmp, index=False))
