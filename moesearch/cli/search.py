"""`moesearch search`: a multi-objective per-layer activation search; resumes when run again."""

from __future__ import annotations

import click

from moesearch.cli import cli
from moesearch.cli.options import BUDGET, describe, dry_run, run_options
from moesearch.core import preempt
from moesearch.core.trial import State, StudyAttr


@cli.command()
@run_options
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    help="Trained trials in the study, baselines and `moesearch train` trials included (not verify's replicates); "
    "it stays the study's target for every group and later run until given again [default: the study's target; "
    "for a new study the space's search.trials].",
)
@BUDGET
def search(trials: int | None, budget: dict | None, **options) -> None:
    """Search activations per layer over SPACE (a file, or a shipped space's name).

    Uniform baselines run first; an assignment already trained with the same --seed is answered from
    the study, not trained again. Run the same command again to resume or extend (--trials).
    """
    from moesearch.supervisor.settings import resolve

    preempt.install()  # from the start: a signal during set-up must not kill the command
    settings = resolve(**options)  # bad input stops here, before the supervisor's imports

    from moesearch.supervisor import storage as storage_mod
    from moesearch.supervisor import studies

    if options["dry_run"]:
        dry_run(
            settings,
            f"{trials} trials"
            if trials
            else f"{budget_text(budget)}, or every assignment of the space"
            if budget
            else f"{settings.space.search.trials} trials, or the target of the study if it exists",
        )
    storage = storage_mod.open_for(settings, explicit=options["storage"] is not None)
    study = studies.open_for(storage, settings)
    if trials or budget or StudyAttr.TRIALS not in study.user_attrs:  # the target of every group on the study
        study.set_user_attr(StudyAttr.TRIALS, target(trials, budget, settings.space))
    if budget:
        study.set_user_attr(StudyAttr.BUDGET, budget)
    click.echo(f"{describe(settings)} | {plan(study, settings.space.size())}")
    search_and_report(settings, study, replicate_baselines=True)


def target(trials: int | None, budget: dict | None, space) -> int:
    """The study's target of trials: --trials; with --budget alone, the whole space, so that the budget bounds
    the search (docs/guide/early-stopping.md: "by compute instead of trials"), not the space's search.trials;
    else search.trials."""
    return trials or (space.size() if budget else space.search.trials)


def budget_text(budget: dict) -> str:
    return f"{budget['steps']:,} steps" if "steps" in budget else f"{budget['device_h']:g} device-hours"


def plan(study, space_size: int) -> str:
    """'256 trials', '256 trials or 20,000 steps, whichever comes first', or (--budget alone, the target the
    whole space) '20,000 steps, or every one of the space's 65,536 assignments'."""
    n_trials, budget = study.user_attrs[StudyAttr.TRIALS], study.user_attrs.get(StudyAttr.BUDGET)
    if not budget:
        return f"{n_trials} trials"
    if n_trials >= space_size:
        return f"{budget_text(budget)}, or every one of the space's {space_size:,} assignments"
    return f"{n_trials} trials or {budget_text(budget)}, whichever comes first"


def search_and_report(settings, study, replicate_baselines: bool = False) -> None:
    """Run the search loop, then print what it did and the front (shared with `worker`, which leaves the
    baselines' seed replicates to the `search` that made the study: no two groups train them)."""
    from moesearch.analysis import answer, expected, pareto, verdict
    from moesearch.core import preempt, results
    from moesearch.supervisor.search import run_search

    report = run_search(settings, study, replicate_baselines)
    repeats = report.repeats_answered
    click.echo(
        f"\n{report.trained_now} trials trained now, {report.trained_total} in study {settings.study!r}"
        f" ({repeats} repeated proposal{'' if repeats == 1 else 's'} answered from the study)"
    )
    if report.replicates_now:
        auto = (
            " and of the assignments inside noise (search.replicates = 'auto')"
            if settings.space.search.replicates == "auto"
            else ""
        )
        click.echo(
            f"{report.replicates_now} seed replicates trained: of the baselines for the seed noise "
            f"(search.baseline_seeds = {settings.space.search.baseline_seeds}){auto}"
        )
    if report.pruned_now:
        click.echo(f"{report.pruned_now} of them pruned at a rung (search.pruning)")
    click.echo(
        f"compute: {report.spent['steps']:,.0f} steps, {report.spent['device_s'] / 3600:.3g} device-hours "
        f"trained by the study's trials"
    )
    if report.stopped_early:
        click.echo(f"stopped before {report.target} trials: {report.stopped_early}")
    if preempt.requested():
        return  # the grace period is short: the front can wait for the next run
    trials_df = results.load_trials(settings.results, settings.study)
    if (trials_df["state"] == State.COMPLETE).any():
        analysis = pareto.analyse(trials_df)
        fits = expected.fits_of(trials_df, analysis.objectives)
        click.echo("\n".join(answer.summary(trials_df, analysis, fits)))  # the verdict first, then the answer
        found = expected.primary(fits)
        if (need := verdict.trials_for(found)) is not None:  # the verdict said how many; say how to get them
            click.echo(
                f"next: run the same command with --trials {need} (it resumes this study) to resolve a "
                f"per-layer effect of {verdict.amount(found, verdict.size_for(found))} on {found.objective}"
            )
