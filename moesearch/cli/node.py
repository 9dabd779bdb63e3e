"""`moesearch node`: the ranks of one more node of a multi-node worker group (node 0 runs search/worker)."""

from __future__ import annotations

from dataclasses import replace

import click

from moesearch.cli import cli
from moesearch.cli.options import DRY_RUN, group_options
from moesearch.errors import InputError


@cli.command()
@click.option("--node-rank", type=click.IntRange(min=1), required=True, help="This node's rank in the group (1 .. --nnodes - 1).")
@click.option("--rejoins", type=click.IntRange(min=0), default=100, show_default=True,
              help="How often to rejoin after the group ended with an error (node 0 starts a fresh group after a "
                   "failure); two rendezvous in a row that form no group end it sooner.")
@click.option("--join-timeout", type=click.IntRange(min=1), default=600, show_default=True,
              help="Seconds to wait for node 0 at each (re)join.")
@DRY_RUN
@group_options
def node(node_rank: int, rejoins: int, join_timeout: int, dry_run: bool, **group) -> None:
    """Run this node's ranks of a worker group whose node 0 runs `moesearch search` or `worker`.

    Give the same --nnodes, --nproc, --master-addr and --master-port as node 0. The group is restarted
    by node 0 after a failed trial; this command rejoins each time, and exits 0 when the group ends
    normally. SIGTERM or SIGUSR1 here reaches this node's ranks: the trial stops at a step boundary.
    """
    from moesearch.cli.options import resolve_launch

    launch = replace(resolve_launch(**group), join_timeout_s=join_timeout)
    if launch.launcher != "torchrun":
        raise InputError("--launcher: `moesearch node` starts torchrun; the DeepSpeed launcher starts every host of "
                         "its --hostfile from node 0 itself")
    if launch.nnodes < 2:
        raise InputError(f"--nnodes {launch.nnodes}: give the group's node count, 2 or more, as node 0 does")
    if node_rank >= launch.nnodes:
        raise InputError(f"--node-rank {node_rank}: allowed 1 .. {launch.nnodes - 1} (--nnodes {launch.nnodes})")
    plan = f"node {node_rank} of a group of {launch.describe()}"
    if dry_run:
        click.echo(f"plan: {plan}")
        raise SystemExit(0)
    click.echo(plan)
    code = _serve(launch, node_rank, rejoins)
    click.echo(f"moesearch node: {'the group finished (or was preempted)' if code == 0 else 'gave up'}", err=True)
    raise SystemExit(code)


def _serve(launch, node_rank: int, rejoins: int) -> int:
    """Run this node's launcher, again after each failure; 0 once the group ends normally or is preempted."""
    import contextlib
    import os
    import signal
    import subprocess

    import psutil

    from moesearch import preempt

    stopping: list[int] = []
    proc: subprocess.Popen | None = None

    def forward(signum, frame) -> None:  # to the ranks, which stop together at a step boundary
        stopping.append(signum)
        with contextlib.suppress(psutil.NoSuchProcess, AttributeError):  # AttributeError: no launcher yet
            for rank in psutil.Process(proc.pid).children():
                rank.send_signal(signum)

    for sig in preempt.SIGNALS:
        signal.signal(sig, forward)
    unformed = 0
    for attempt in range(rejoins + 1):
        if stopping:
            return 0
        proc = subprocess.Popen(preempt.launch(launch.command(node_rank)), env={**os.environ, **preempt.LAUNCHER_ENV})
        formed = _ranks_started(proc)
        if proc.returncode == 0 or stopping:
            return 0
        unformed = 0 if formed else unformed + 1
        if unformed == 2:  # twice --join-timeout without a group: node 0 is gone or done
            click.echo("moesearch node: no group formed twice in a row; is node 0's search or worker running?",
                       err=True)
            return 1
        click.echo(f"moesearch node: the group ended with code {proc.returncode}; rejoining ({attempt + 1} of "
                   f"{rejoins})", err=True)
    return 1


def _ranks_started(proc) -> bool:
    """Wait for the launcher; whether it ever started ranks (torchrun does only after its rendezvous)."""
    import subprocess

    import psutil

    started = False
    while True:
        try:
            proc.wait(timeout=1)
            return started
        except subprocess.TimeoutExpired:
            try:
                started = started or bool(psutil.Process(proc.pid).children())
            except psutil.NoSuchProcess:
                pass
