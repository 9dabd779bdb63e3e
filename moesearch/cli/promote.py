"""`moesearch promote`: does the proxy's answer hold at a larger size? Train it there and compare."""

from __future__ import annotations

import dataclasses

import click

from moesearch.cli import cli
from moesearch.cli.options import describe, dry_run, run_options


@cli.command()
@run_options
@click.option(
    "--size",
    help="The size of the space's [[scale]] ladder to train at; the study of the size below it is promoted "
    "[default: the ladder's first size].",
)
@click.option(
    "--layers",
    "named",
    multiple=True,
    help="An assignment to promote (comma-separated, one per layer; repeat for more) instead of the expected "
    "front and baselines; on a promotion that exists, added to what it trains.",
)
@click.option(
    "--seeds",
    "n_seeds",
    type=click.IntRange(1, 100),
    help="Seeds per assignment, fixed [default: as many as the noise model asks for, at most --max-seeds].",
)
@click.option(
    "--max-seeds",
    type=click.IntRange(1, 100),
    default=4,
    show_default=True,
    help="At most this many seeds per assignment, whatever the noise model asks for (larger sizes cost more).",
)
def promote(size: str | None, named: tuple[str, ...], n_seeds: int | None, max_seeds: int, **options) -> None:
    """Train a study's answer at a larger size of SPACE's scale ladder and say whether it holds.

    Promotes the expected front and the uniform baselines of the study at the size below (--study: the
    proxy's; the next sizes' studies are named STUDY-SIZE) into the study STUDY-SIZE in the same storage.
    Each gets the seeds its noise model says a difference of the smallest resolved effect needs (at most
    --max-seeds; one while no model is testable), the same seeds for all. Then prints the rank correlation
    of expected values between the two sizes and, for every effect resolved at the smaller size, its
    estimate at the larger one. Run it again to resume.
    """
    from moesearch.core import preempt
    from moesearch.core import space as space_mod
    from moesearch.core.assignment import Assignment
    from moesearch.supervisor.settings import resolve

    preempt.install()  # from the start: a signal during set-up must not kill the command
    spec = space_mod.load(options.pop("space"))
    size = size or (spec.sizes()[1:] or ["(none)"])[0]
    chosen = [Assignment.parse(a) for a in named]
    for layers in chosen:
        spec.check_assignment(layers)

    from moesearch.supervisor import promote as promote_mod

    promote_mod.check_size(spec, size)
    settings = resolve(spec.at_size(size), **options)  # the larger size's ranks, experts and evaluation checked
    spec = spec.with_vocab(settings.space.model.vocab)  # the data's vocabulary, at every size (and its steps)
    settings = dataclasses.replace(settings, space=spec)  # with its ladder: the sizes' studies are named from it
    source = promote_mod.linked_name(settings.study, promote_mod.below(spec, size))
    at_size = dataclasses.replace(
        settings, space=spec.at_size(size), study=promote_mod.linked_name(settings.study, size)
    )

    from moesearch.analysis import ladder
    from moesearch.supervisor import storage as storage_mod

    if options["dry_run"]:
        dry_run(at_size, f"promote {source!r} to {size}")
    promotion = promote_mod.prepare(settings, size, chosen)  # before any storage is opened or created
    storage = storage_mod.open_for(settings, explicit=options["storage"] is not None)
    click.echo(f"{describe(at_size)} | promote {source!r} to {size}")
    large = promote_mod.promote(promotion, storage, chosen, n_seeds, max_seeds, click.echo)
    if preempt.requested():
        click.echo("preempted: run the same command again to finish")
        return
    objective = ladder.objective_of(spec.search.objectives)
    for line in ladder.text(promotion.small, large, objective) + ladder.fronts(
        promotion.small, large, (promote_mod.below(spec, size), size)
    ):
        click.echo(line)
    click.echo(ladder.cheapest_faithful(settings.results, at_size.study, objective))
