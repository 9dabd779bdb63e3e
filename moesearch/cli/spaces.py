"""`moesearch spaces`: list, show and validate search-space files."""

from __future__ import annotations

import json

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
    """Print a space (shipped name or file) with every default filled in."""
    from moesearch.core import space as space_mod

    spec = space_mod.load(name)
    click.echo(json.dumps(spec.model_dump(mode="json"), indent=2))
    click.echo(f"# {spec.size():,} assignments; baselines: {', '.join(u[0] for u in spec.uniform_assignments())}")


@spaces.command()
@click.argument("file")
def validate(file: str) -> None:
    """Check a space file; exit 2 with the offending key if it is invalid."""
    from moesearch.core import space as space_mod

    spec = space_mod.load(file)
    click.echo(f"{file}: valid ({spec.size():,} assignments over {spec.model.n_layers} layers)")
