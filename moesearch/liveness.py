"""Is the worker group running a trial still alive? A heartbeat in the study, on every storage.

Light (optuna and psutil). Each supervisor names itself `host:pid:start` in the trials it runs
(user attribute `worker`) and, while one runs, writes the time to its `heartbeat` attribute every
HEARTBEAT_S seconds. Optuna's own heartbeat would need RDB storage and runs only inside
`study.optimize`; moesearch's ask-and-tell loop and the journal file backend need one of their own.

A RUNNING trial is dead when its supervisor is a process of this machine that is gone (found at
once, e.g. after kill -9 and the same command again), or, from another machine, when its heartbeat
is older than GRACE_S.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import optuna
import psutil
from optuna.trial import FrozenTrial

HEARTBEAT_S = 10.0
GRACE_S = 120.0  # twelve missed beats: survives a slow database, not a dead node


def me() -> str:
    """This process as a worker name: host, pid and start time (a reused pid is another process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.2f}"


def is_dead(trial: FrozenTrial, now: float | None = None) -> bool:
    """Whether a RUNNING trial's supervisor is gone, so nobody will ever finish it."""
    host, _, process = trial.user_attrs.get("worker", "::").partition(":")
    if host == socket.gethostname():
        pid, _, started = process.partition(":")
        return not _alive(int(pid), float(started))
    last = trial.user_attrs.get("heartbeat", trial.datetime_start.timestamp() if trial.datetime_start else 0.0)
    return (now or time.time()) - last > GRACE_S


def _alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 0.01
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def beating(study: optuna.Study, number: int) -> Iterator[None]:
    """Keep trial `number`'s heartbeat fresh for the duration of the block (a background thread)."""
    trial = optuna.Trial(study, study.get_trials(deepcopy=False)[number]._trial_id)
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage hiccup: the next beat tries again
                trial.set_user_attr("heartbeat", time.time())
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
