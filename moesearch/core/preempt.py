"""Preemption: SIGTERM or SIGUSR1 (SLURM's early warning) asks the current trial to stop at a step boundary.

Light (stdlib only). The training commands and every rank install the same handlers: whichever
process the signal reaches, the ranks agree on stopping in their per-step all-reduce, the trial is
recorded as preempted (and retried later), and the supervisor exits 0 so the scheduler can requeue.
The launcher between them ignores both signals (`python -m moesearch.core.preempt CMD` starts it so):
torchrun's default is to kill the ranks at once, and SIGUSR1's is to die.
"""

from __future__ import annotations

import os
import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# torchrun forwards the signals it handles and kills the ranks 30 s later: leave SIGTERM to them
LAUNCHER_ENV = {"TORCHELASTIC_SIGNALS_TO_HANDLE": "SIGINT,SIGHUP,SIGQUIT"}
_caught: list[str] = []  # why this process is stopping, once it is


def install() -> None:
    """Catch SIGTERM and SIGUSR1 from now on in this process (main thread only, as Python requires)."""
    for sig in SIGNALS:
        signal.signal(sig, lambda signum, frame: note(signal.Signals(signum).name))


def note(reason: str) -> None:
    """Record a stop request: a signal's name, or a preempted reply from ranks the signal reached instead."""
    if not _caught:
        _caught.append(reason)


def requested() -> str | None:
    """Why this process was asked to stop ("SIGTERM"), or None."""
    return _caught[0] if _caught else None


def launch(command: list[str]) -> list[str]:
    """`command` run with SIGTERM and SIGUSR1 ignored (dispositions survive exec; ranks install their own)."""
    return [sys.executable, "-m", "moesearch.core.preempt", *command]


if __name__ == "__main__":
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    os.execvp(sys.argv[1], sys.argv[1:])
