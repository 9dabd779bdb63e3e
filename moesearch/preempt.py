"""Preemption: SIGTERM or SIGUSR1 (SLURM's early warning) asks the current trial to stop at a step boundary.

Light (stdlib only). The supervisor and every rank install the same handlers: whichever process the
signal reaches, the ranks agree on stopping in their per-step all-reduce, the trial is recorded as
preempted (and retried later), and the supervisor exits 0 so the scheduler can requeue the job.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_caught: list[str] = []  # the first signal's name, once one arrived


def install() -> None:
    """Catch SIGTERM and SIGUSR1 from now on in this process (main thread only, as Python requires)."""
    for sig in SIGNALS:
        signal.signal(sig, _catch)


def _catch(signum: int, frame) -> None:
    if not _caught:
        _caught.append(signal.Signals(signum).name)


def requested() -> str | None:
    """The name of the signal that asked this process to stop ("SIGTERM"), or None."""
    return _caught[0] if _caught else None


def ignore() -> None:
    """Ignore SIGTERM and SIGUSR1: for a launcher's process (`preexec_fn`); its ranks call `install`."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
