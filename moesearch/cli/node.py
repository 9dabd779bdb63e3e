"""`moesearch node`: the ranks of one more node of a multi-node worker group (node 0 runs search/worker)."""

from __future__ import annotations

from dataclasses import replace

import click

from moesearch.cli import cli
from moesearch.cli.options import DRY_RUN, group_options
from moesearch.core.errors import InputError


@cli.command()
@click.option(
    "--node-rank", type=click.IntRange(min=1), required=True, help="This node's rank in the group (1 .. --nnodes - 1)."
)
@click.option(
    "--rejoins",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="How often to rejoin after the group ended with an error (node 0 starts a fresh group after a "
    "failure); two rendezvous in a row that form no group end it sooner.",
)
@click.option(
    "--join-timeout",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    help="Seconds to wait for node 0 at each (re)join.",
)
@click.option(
    "--trial-timeout",
    type=click.FloatRange(min=1),
    default=1800,
    show_default=True,
    help="The study's search.timeout_s: this node's ranks give up a collective that outlasts it by 5 minutes "
    "(a peer died), free their GPUs and rejoin, as node 0's do.",
)
@DRY_RUN
@group_options
def node(node_rank: int, rejoins: int, join_timeout: int, trial_timeout: float, dry_run: bool, **group) -> None:
    """Run this node's ranks of a worker group whose node 0 runs `moesearch search` or `worker`.

    Give the same --nnodes, --nproc, --master-addr and --master-port as node 0. The group is restarted
    by node 0 after a failed trial; this command rejoins each time, and exits 0 when the group ends
    normally. SIGTERM or SIGUSR1 here reaches this node's ranks: the trial stops at a step boundary.
    """
    from moesearch.supervisor import group_node as node_mod
    from moesearch.supervisor.settings import resolve_launch

    launch = replace(resolve_launch(**group), join_timeout_s=join_timeout)
    if launch.launcher != "torchrun":
        raise InputError(
            "--launcher: `moesearch node` starts torchrun; the DeepSpeed launcher starts every host of "
            "its --hostfile from node 0 itself"
        )
    if launch.nnodes < 2:
        raise InputError(f"--nnodes {launch.nnodes}: give the group's node count, 2 or more, as node 0 does")
    if node_rank >= launch.nnodes:
        raise InputError(f"--node-rank {node_rank}: allowed 1 .. {launch.nnodes - 1} (--nnodes {launch.nnodes})")
    plan = f"node {node_rank} of a group of {launch.describe()}"
    if dry_run:
        click.echo(f"plan: {plan}")
        raise SystemExit(0)
    click.echo(plan)
    say = lambda line: click.echo(f"moesearch node: {line}", err=True)  # noqa: E731
    code = node_mod.run(launch, node_rank, rejoins, say, trial_timeout)
    click.echo(f"moesearch node: {'the group finished (or was preempted)' if code == 0 else 'gave up'}", err=True)
    raise SystemExit(code)
