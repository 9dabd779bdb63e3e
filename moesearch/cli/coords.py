"""`moesearch coords`: the coordinate check of a space's ladder, as a table and a picture."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli


@cli.command()
@click.argument("space")
@click.option("--layers", help="The assignment to train, comma-separated [default: the first activation everywhere].")
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="Training steps per width.")
@click.option(
    "--parametrization",
    "parametrizations",
    default="standard,mup",
    show_default=True,
    help="Parametrizations to compare, comma-separated (standard, mup, completep).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seeds weights and batches, the same at every width."
)
@click.option(
    "--data",
    help="Training text or token files (.npy, .bin): a file, a folder or a glob [default: the Python standard "
    "library's source].",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for coords.csv and coords.png [default: results/coords/SPACE].",
)
def coords(
    space: str, layers: str | None, steps: int, parametrizations: str, seed: int, data: str | None, out: Path | None
) -> None:
    """Train one assignment a few steps at every width of SPACE's [[scale]] ladder, under each parametrization,
    and show each layer's activation size (mean |x|) per width. Under muP the sizes stay flat as width grows
    (growth near 1x): the learning rate and the activations' range carry from the proxy to every size. Under
    the standard parametrization they grow, and each width compares activations on a different input range."""
    from moesearch.core import space as space_mod
    from moesearch.core.assignment import Assignment
    from moesearch.core.errors import InputError
    from moesearch.supervisor import coords as run_mod

    spec = space_mod.load(space)
    chosen = Assignment.parse(layers) if layers else [spec.layer_choices()[i][0] for i in range(spec.model.n_layers)]
    spec.check_assignment(chosen)
    asked = [p.strip() for p in parametrizations.split(",") if p.strip()]
    if bad := [p for p in asked if p not in run_mod.PARAMETRIZATIONS] or not asked:
        raise InputError(
            f"--parametrization: {(bad or [parametrizations])[0]!r} is not one; allowed: "
            f"{', '.join(run_mod.PARAMETRIZATIONS)}, comma-separated"
        )
    job = run_mod.job(spec, list(chosen), asked, steps, seed, data)
    folder = out or Path("results") / "coords" / spec.name
    widths = ", ".join(str(w) for w in _widths(job))
    click.echo(f"coords: {','.join(chosen)} for {steps} steps at d_model {widths}, {' and '.join(asked)}")
    rows = run_mod.run(job, folder / "coords.log")

    from moesearch.analysis import coords as read
    from moesearch.core.files import write_atomic

    table = read.table(rows)
    click.echo(table.to_string(float_format=lambda v: f"{v:.4g}"))
    for parametrization, worst in read.growth(rows).items():
        click.echo(f"{parametrization}: the largest growth from the smallest width to the largest is {worst:.2f}x")
    write_atomic(folder / "coords.csv", lambda tmp: rows.to_csv(tmp, index=False))
    write_atomic(folder / "coords.png", lambda tmp: read.figure(rows).savefig(tmp, format="png", dpi=110))
    click.echo(f"wrote {folder / 'coords.csv'} and {folder / 'coords.png'}")


def _widths(job: dict) -> list[int]:
    import json

    return sorted({json.loads(run["config"])["model"]["d_model"] for run in job["runs"]})
