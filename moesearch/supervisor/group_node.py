"""One more node of a multi-node worker group (`moesearch node`): its launcher, rejoined after failures.

Node 0 runs the supervisor (`search` or `worker`) and restarts the group after a failed trial; every
other node runs this loop, which starts torchrun with its node rank and rejoins each time. A signal
here is forwarded to this node's ranks, which stop the trial with the others at a step boundary.
Light: stdlib and psutil.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable

import psutil

from moesearch.core import preempt
from moesearch.core.launch import Launch, rank_env


def run(launch: Launch, node_rank: int, rejoins: int, say: Callable[[str], None], trial_timeout_s: float = 1800) -> int:
    """Run this node's launcher, again after each failure; 0 once the group ends normally or is preempted.
    trial_timeout_s: the study's, which bounds its ranks' collectives as node 0's (`launch.rank_env`)."""
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
        proc = subprocess.Popen(
            preempt.launch(launch.command(node_rank)),
            env={**rank_env(trial_timeout_s), **os.environ, **launch.visible(), **preempt.LAUNCHER_ENV},
        )
        formed = _ranks_started(proc)
        if proc.returncode == 0 or stopping:
            return 0
        unformed = 0 if formed else unformed + 1
        if unformed == 2:  # twice --join-timeout without a group: node 0 is gone or done
            say("no group formed twice in a row; is node 0's search or worker running?")
            return 1
        if attempt == rejoins:
            say(f"the group ended with code {proc.returncode}; no rejoin left (--rejoins {rejoins})")
            return 1
        say(f"the group ended with code {proc.returncode}; rejoining ({attempt + 1} of {rejoins})")
    return 1


def _ranks_started(proc: subprocess.Popen) -> bool:
    """Wait for the launcher; whether it ever started ranks (torchrun does only after its rendezvous)."""
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
