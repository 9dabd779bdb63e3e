"""Is the worker group running a trial still alive? A heartbeat in the study, on every storage.

Light (optuna and psutil). Each supervisor names itself `host:pid:start` in the trials it runs
(user attribute `worker`) and, while one runs, writes the time to its `heartbeat` attribute every
HEARTBEAT_S seconds. Optuna's own heartbeat would need RDB storage and runs only inside
`study.optimize`; moesearch's ask-and-tell loop and the journal file backend need one of their own.

A RUNNING trial is dead when its supervisor is a process of this machine (same host, boot and pid
namespace) that is gone, found at once (e.g. after kill -9 and the same command again); otherwise
when its heartbeat is older than GRACE_S. A group that only stalled that long finds its trial
settled when it finishes, and drops its result (`search`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psutil
from optuna.trial import FrozenTrial

from moesearch.core.trial import TrialAttr
from moesearch.supervisor import optuna_compat

HEARTBEAT_S = 10.0
GRACE_S = 120.0  # twelve missed beats: survives a slow database, not a dead node


def me() -> str:
    """This process's id as the supervisor of a worker group (`TrialAttr.GROUP`)."""
    return name(psutil.Process())


def name(process: psutil.Process) -> str:
    """A process of this machine as a group id: host, pid, start time (a reused pid is another
    process) and pid space."""
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.2f}:{_pid_space()}"


def _pid_space() -> str:
    """Which machine boot and pid namespace pids belong to: containers sharing a hostname differ here."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        return f"{boot}-{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # no /proc (macOS): the hostname has to do
        return "-"


def is_dead(trial: FrozenTrial, now: float | None = None) -> bool:
    """Whether a RUNNING trial's supervisor is gone, so nobody will ever finish it."""
    host, pid, started, space = (trial.user_attrs.get(TrialAttr.GROUP, "").split(":") + ["", "", "", ""])[:4]
    if (host, space) == (socket.gethostname(), _pid_space()):  # its pid means something here
        return not _alive(int(pid), float(started))
    last = trial.user_attrs.get(TrialAttr.HEARTBEAT, trial.datetime_start.timestamp() if trial.datetime_start else 0.0)
    return (now or time.time()) - last > GRACE_S


def _alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 0.01
    except psutil.AccessDenied:  # another user's process, with our pid and start time: assume it is ours
        return True
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def beating(study: optuna.Study, number: int) -> Iterator[None]:
    """Keep trial `number`'s heartbeat fresh for the duration of the block (a background thread)."""
    trial = optuna_compat.handle(study, optuna_compat.trial(study, number))
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage hiccup: the next beat tries again
                trial.set_user_attr(TrialAttr.HEARTBEAT, time.time())
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
