"""`moesearch train`: train one assignment with the search's machinery and record it in the study."""

from __future__ import annotations

import json

import click

from moesearch.cli import cli
from moesearch.cli.options import describe, dry_run, run_options
from moesearch.core import preempt
from moesearch.core.metrics import METRICS, fmt
from moesearch.core.trial import Origin


@cli.command()
@run_options
@click.option("--layers", required=True, help="One activation per layer, comma-separated (e.g. gelu,swiglu,gelu,gelu).")
def train(layers: str, **options) -> None:
    """Train the assignment --layers of SPACE once and print its metrics.

    The trial joins the study (as a seed replicate when --seed differs), so `pareto` shows it.
    """
    from moesearch.core import space as space_mod
    from moesearch.core.assignment import Assignment
    from moesearch.supervisor.settings import resolve

    preempt.install()  # from the start: a signal during set-up must not kill the command
    space = space_mod.load(options.pop("space"))
    chosen = Assignment.parse(layers)
    space.check_assignment(chosen)  # first: a typo is reported at once, before the slow checks and imports
    settings = resolve(space, **options)

    from moesearch.core.results import trial_file
    from moesearch.supervisor import storage as storage_mod
    from moesearch.supervisor import studies
    from moesearch.supervisor.group import WorkerGroup
    from moesearch.supervisor.runner import run_named

    if options["dry_run"]:
        dry_run(settings, f"train {','.join(chosen)}")
    storage = storage_mod.open_for(settings, explicit=options["storage"] is not None)
    study = studies.open_for(storage, settings)
    click.echo(describe(settings))
    with WorkerGroup(settings.launch, settings.results / settings.study / "logs") as group:
        outcome = run_named(settings, study, group, chosen, origin=Origin.TRAIN)
    if outcome is None:
        raise SystemExit(1)
    path = trial_file(settings.results, settings.study, outcome.row["trial"])
    for key in ("state", "failure_reason", *METRICS):
        value = outcome.row[key]
        if value is not None:
            shown = value if isinstance(value, str) else fmt(value)  # metrics: 2,280,576 params
            click.echo(f"{key:>22}: {shown} {METRICS[key][0] if key in METRICS else ''}")
    balance = [f"{r['load_balance']:.3f}" for r in outcome.record.layers if r["moe"]]
    if balance:
        click.echo(f"{'load_balance':>22}: {', '.join(balance)} (max expert share x experts, per MoE layer)")
    from moesearch.core.activations import MIX  # after the command: its registry's validators import pydantic

    for r in (r for r in outcome.record.layers if r["moe"] and MIX in r["activation"]):
        shares = ", ".join(f"{a} {s:.3f}" for a, s in json.loads(r["activation_share"]).items())
        click.echo(f"{'routed layer ' + str(r['layer']):>22}: {shares} (share of its training tokens per activation)")
    for r in (r for r in outcome.record.layers if r.get("nearest_fixed")):
        learned = ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in json.loads(r["learned"]).items())
        click.echo(
            f"{'learned layer ' + str(r['layer']):>22}: nearest {r['nearest_fixed']}; {learned} (mean over experts)"
        )
    click.echo(f"{'record':>22}: {path}")
    if outcome.preempted:
        click.echo("preempted: the trial is recorded as such; run the same command again to train it")
    elif not outcome.ok:
        raise SystemExit(1)
