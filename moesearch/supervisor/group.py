"""The supervisor's handle on a worker group: start its launcher, hand it trials, survive its death.

Light (no torch): it only launches processes and talks to rank 0 over an authenticated local socket.
If the group exits or a trial outruns its timeout, `run` raises GroupFailure with the tail of the
group's output, and the next `run` starts a fresh group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, Listener
from pathlib import Path

import psutil

from moesearch.core import preempt
from moesearch.core.launch import (
    ADDRESS_ENV,
    AUTHKEY_ENV,
    COLLECTIVE_MARGIN_S,
    COLLECTIVE_TIMEOUT_ENV,
    TIMEOUTS_DISAGREE,
    Launch,
    rank_env,
)
from moesearch.core.protocol import Failed, Ready, Reply, Rung, Shutdown, Step, Stop, Task, Verdict

_START_TIMEOUT_S = 600  # imports plus rendezvous; generous for a cold, loaded machine
_POLL_S = 0.05
_TEARDOWN_WAIT_S = 60  # torchrun's own grace period for surviving ranks is 30 s


# The ranks wait for the next trial in a broadcast under the collective timeout (`core/launch.rank_env`): a group
# idle for this share of it is restarted before it is sent one, so the timeout never costs a trial.
IDLE_RESTART_SHARE = 0.75
START_RETRY_WAIT_S = 30  # between tries to start a group
START_RETRY_WINDOW_S = 60  # one node: a start that keeps failing this long is a broken environment
DEEPSPEED_GRACE_S = 30  # how long the DeepSpeed launcher may take to stop its remote ranks after SIGTERM


class GroupFailure(Exception):
    """The worker group died or hung; the message says why and quotes its output."""


class GroupStartFailure(GroupFailure):
    """The worker group never came up: the environment is broken, not the trial."""


class WorkerGroup:
    def __init__(self, launch: Launch, log_dir: Path):
        self.launch, self.log_dir = launch, log_dir
        self.proc: subprocess.Popen | None = None
        self.link: Connection | None = None
        self.hardware: dict = {}
        self.launches = 0
        self.idle_since = time.monotonic()  # when it last finished a trial (or started)
        self.idle_restart_s = float("inf")  # set at each start from the ranks' collective timeout

    def run(
        self,
        trial: int,
        config_json: str,
        timeout_s: float,
        on_step: Callable[[int, float, float | None], None],
        on_rung: Callable[[int, dict], Verdict] | None = None,
    ) -> Reply:
        """Train one trial; returns the group's reply, `Done`, `Failed` or `Pruned`.

        At each rung of the trial's config, `on_rung` decides whether it goes on (the ranks wait).

        On SIGTERM or SIGUSR1 (`preempt`), rank 0 is told to stop: the ranks stop together at the next
        step boundary and reply "failed" with `preempted` set.
        """
        if self.link is not None and time.monotonic() - self.idle_since > self.idle_restart_s:
            self.close()  # quietly, outside any trial: its ranks' broadcast would time out mid-trial
        if self.link is None:
            self._start_retrying(timeout_s)
        self._log_mark = self.log_path.stat().st_size
        deadline = time.monotonic() + timeout_s
        stop_sent = False
        try:
            self.link.send(Task(trial, config_json))
            while True:
                if self.link.poll(_POLL_S):
                    msg: Step | Rung | Reply = self.link.recv()
                    if isinstance(msg, Failed) and msg.preempted:  # the ranks are exiting: a signal reached them
                        preempt.note(f"a signal to the ranks ({msg.reason})")
                        self.kill()
                    if isinstance(msg, Step):
                        on_step(msg.step, msg.loss, msg.val_loss)
                    elif isinstance(msg, Rung):
                        self.link.send(self._verdict(on_rung, msg))
                    else:
                        self.idle_since = time.monotonic()  # its ranks wait for the next trial from now
                        return msg
                if preempt.requested() and not stop_sent:
                    self.link.send(Stop(preempt.requested()))
                    stop_sent = True
                if time.monotonic() > deadline:  # checked even while steps keep arriving
                    raise GroupFailure(f"timeout: trial still running after {timeout_s:g} s")
                if self.proc.poll() is not None:
                    if self.link.poll():  # its reply may have come in just before the launcher exited
                        continue
                    raise GroupFailure(f"worker group exited with code {self.proc.returncode}")
        except (GroupFailure, EOFError, OSError) as e:
            reason = str(e) if isinstance(e, GroupFailure) else self._why_link_broke()
            self.kill()
            raise GroupFailure(f"{reason} (log: {self.log_path}); output tail:\n{self.tail()}") from None

    def _verdict(self, on_rung: Callable[[int, dict], Verdict] | None, rung: Rung) -> Verdict:
        """The supervisor's answer to a rung; if deciding fails (the study unreachable), the ranks
        waiting for it cannot go on: the group is stopped before the error goes up."""
        try:
            return on_rung(rung.step, rung.metrics) if on_rung else Verdict(True, "no pruning")
        except BaseException:
            self.kill()
            raise

    def _why_link_broke(self) -> str:
        """Rank 0 hung up: usually torchrun is tearing the group down after a rank died."""
        try:
            return f"worker group exited with code {self.proc.wait(timeout=_TEARDOWN_WAIT_S)}"
        except subprocess.TimeoutExpired:
            return "lost the link to rank 0 while the group kept running"

    def _start_retrying(self, timeout_s: float) -> None:
        """Start the group, trying again while a failure may pass: across nodes, the other nodes' ranks of the
        last group may hold on until their collective times out (`launch.rank_env`), so for that long plus a
        join; on one node, START_RETRY_WINDOW_S. Only then is GroupStartFailure the search's end."""
        window = timeout_s + COLLECTIVE_MARGIN_S + self.launch.join_timeout_s if self.launch.nnodes > 1 else 0
        give_up = time.monotonic() + max(window, START_RETRY_WINDOW_S)
        while True:
            try:
                self._start(timeout_s)
                return
            except GroupStartFailure as e:
                if TIMEOUTS_DISAGREE in str(e):  # a node's --trial-timeout: no retry mends it
                    raise
                if preempt.requested() or time.monotonic() + START_RETRY_WAIT_S > give_up:
                    raise
                first = str(e).splitlines()[0]
                print(f"moesearch: {first}; trying again in {START_RETRY_WAIT_S} s", file=sys.stderr, flush=True)
                time.sleep(START_RETRY_WAIT_S)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"group-{os.getpid()}-{self.launches}.log"

    def _start(self, timeout_s: float) -> None:
        self.launches += 1
        self.idle_since = time.monotonic()
        ranks = {**rank_env(timeout_s), **os.environ}  # a user's own NCCL setting wins
        self.idle_restart_s = IDLE_RESTART_SHARE * float(ranks[COLLECTIVE_TIMEOUT_ENV])
        self.log_dir.mkdir(parents=True, exist_ok=True)
        authkey = secrets.token_bytes(16)
        with Listener(("127.0.0.1", 0), authkey=authkey) as listener:
            host, port = listener.address
            env = {**ranks, **self.launch.visible(), ADDRESS_ENV: f"{host}:{port}", AUTHKEY_ENV: authkey.hex()}
            if self.launch.launcher == "deepspeed":  # torchrun sets this; without it 2 CPU ranks ran 100x slower here
                env.setdefault("OMP_NUM_THREADS", "1")
            if self.launch.hostfile:  # the DeepSpeed launcher passes other variables to its hosts in a file
                env["DS_ENV_FILE"] = str(self._deepspeed_env_file(env))
            with open(self.log_path, "ab") as log:
                # Own session: the terminal's Ctrl-C reaches the supervisor only, which then stops the group.
                # SLURM signals every process of the job: the launcher ignores SIGTERM and SIGUSR1, and the
                # ranks stop at a step boundary.
                self.proc = subprocess.Popen(
                    preempt.launch(self.launch.command()),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**env, **preempt.LAUNCHER_ENV},
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            self._log_mark = 0
            try:
                self.link = self._accept(listener)
            finally:  # every host has read it once rank 0 is in (or the start failed): the key goes
                if "DS_ENV_FILE" in env:
                    Path(env["DS_ENV_FILE"]).unlink(missing_ok=True)
            try:
                ready: Ready = self.link.recv()
                self.hardware = ready.hardware
            except (EOFError, OSError):
                self._fail_start()

    def _deepspeed_env_file(self, env: dict[str, str]) -> Path:
        """The link's address and key for rank 0 on the hostfile's first host (this one), readable by us only."""
        path = self.log_dir / f".deepspeed_env-{os.getpid()}"
        path.touch(mode=0o600)
        # DS_ENV_FILE replaces the user's own .deepspeed_env (home, then here): carry its lines along
        users = [Path.home() / ".deepspeed_env", Path(".deepspeed_env")]
        carried = "".join(f.read_text().rstrip("\n") + "\n" for f in users if f.is_file())
        passed = (ADDRESS_ENV, AUTHKEY_ENV, COLLECTIVE_TIMEOUT_ENV, "TORCH_NCCL_ASYNC_ERROR_HANDLING")
        path.write_text(carried + "".join(f"{k}={env[k]}\n" for k in passed))
        return path

    def _accept(self, listener: Listener) -> Connection:
        """Wait for rank 0 to connect, giving up if the group dies or takes too long to start."""
        accepted: list[Connection] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while thread.is_alive():
            thread.join(_POLL_S)
            if self.proc.poll() is not None or time.monotonic() > deadline or preempt.requested():
                self._fail_start()
        if not accepted:  # accept() raised: rank 0 failed authentication
            self._fail_start()
        return accepted[0]

    def _fail_start(self) -> None:
        self.kill()
        if preempt.requested():
            raise GroupStartFailure(
                f"preempted by {preempt.requested()} while the worker group started; run the "
                "same command again to resume"
            )
        raise GroupStartFailure(
            f"worker group failed to start (exit code {self.proc.returncode}, "
            f"log: {self.log_path}); output tail:\n{self.tail()}"
        )

    def tail(self, lines: int = 15) -> str:
        """The last lines the group wrote during the current trial (or start-up)."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_mark)
            text = log.read().decode(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the launcher and every rank. torchrun starts each rank in a session of its own, so one
        killpg does not reach them: collect the whole process tree first. The DeepSpeed launcher first gets
        SIGTERM and DEEPSPEED_GRACE_S to act on it: only then does it tear down its ranks on other hosts
        (a SIGKILL leaves them holding their GPUs)."""
        if self.proc:
            try:
                tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                tree = []
            if self.launch.launcher == "deepspeed" and self.proc.poll() is None:
                self.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=DEEPSPEED_GRACE_S)
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            psutil.wait_procs(tree, timeout=30)
            self.proc.wait()
        if self.link:
            self.link.close()
        self.link = None

    def close(self) -> None:
        """Ask the group to finish, then make sure it has."""
        if self.link:
            try:
                self.link.send(Shutdown())
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def __enter__(self) -> WorkerGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _prctl():
    """libc's prctl, looked up here in the supervisor: the forked child only calls it (nothing to import or
    allocate between fork and exec, where another thread's lock could be held)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the supervisor's own teardown must do
        return None


_PRCTL = _prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the launcher, before it starts: SIGTERM when the supervisor dies, even by SIGKILL (Linux), so its
    ranks (which torchrun stops on SIGTERM) never keep GPUs whose lease died with the supervisor."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
