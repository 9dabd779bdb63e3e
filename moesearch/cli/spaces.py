"""`moesearch spaces`: list, show and validate search-space files."""

from __future__ import annotations

import click

from moesearch.cli import cli


@cli.group(invoke_without_command=True)
@click.pass_context
def spaces(ctx: click.Context) -> None:
    """List the shipped search spaces (subcommands: show, validate)."""
    from moesearch.core import space as space_mod  # here, not at import: every command's startup would pay for it

    if ctx.invoked_subcommand is None:
        for name in space_mod.shipped_names():
            spec = space_mod.load(name)
            click.echo(f"{name:<10} {spec.size():>12,} assignments  {spec.description}")


@spaces.command()
@click.argument("name")
def show(name: str) -> None:
    """Print a space (shipped name or file) as a space file: every default filled in, each key's meaning
    above it, the metric names an objective may take at the end (`spaces show default > mine.toml`)."""
    from moesearch.core import space as space_mod
    from moesearch.core import space_file

    click.echo(space_file.documented(space_mod.load(name)), nl=False)


@spaces.command()
@click.argument("file")
def validate(file: str) -> None:
    """Check a space file; exit 2 with the offending key if it is invalid."""
    from moesearch.core import space as space_mod

    spec = space_mod.load(file)
    click.echo(f"{file}: valid ({spec.size():,} assignments over {spec.model.n_layers} layers)")
