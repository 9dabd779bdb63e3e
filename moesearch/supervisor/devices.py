"""Which GPUs of this node a worker group may use: each group leases its own, so several groups on one node
never share a device (a rank pins LOCAL_RANK among the devices CUDA_VISIBLE_DEVICES lets it see, and the
lease sets that variable for the group's launcher).

A lease is an exclusive flock on one file per GPU, named by the GPU's UUID (two SLURM jobs that each see
their own GPU as device 0 do not collide), in a folder every user of the node shares. The kernel drops the
lock when the process holding it exits, so a supervisor that was killed never leaves a GPU held; a group
that restarts keeps its lease, as it is the supervisor's, not the ranks'. A group that cannot get its GPUs
is refused in one line before anything is written. Light: stdlib only (the UUIDs come from
`settings._visible_gpus`, which asks torch).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from moesearch.core.errors import InputError

# node-local and the same for every user and job: not $TMPDIR, which a scheduler often sets per job
LOCK_DIR = Path(os.environ.get("MOESEARCH_LOCK_DIR", "/tmp/moesearch-gpus"))


@dataclass
class Lease:
    """GPUs held by this process for its worker group (empty: the ranks run on CPU)."""

    gpus: tuple[str, ...] = ()
    _files: list[IO] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for f in self._files:
            f.close()  # closing the last descriptor drops the flock
        self._files.clear()


_held: Lease | None = None  # this process's lease: one supervisor, one group


def reserve(gpus: Sequence[str], want: int) -> Lease:
    """This process's lease of `want` of `gpus`, taken once (again only for another count)."""
    global _held
    if not gpus:
        return Lease()
    if _held is not None and len(_held.gpus) == want:
        return _held
    release()
    _held = lease(gpus, want, LOCK_DIR)
    return _held


def release() -> None:
    """Give back this process's lease (its exit does too)."""
    global _held
    if _held is not None:
        _held.release()
        _held = None


def _lock_file(path: Path) -> IO:
    """The GPU's lock file, opened for reading and writing: made by the first user (O_EXCL, then readable and
    writable by all), opened without O_CREAT after, which a sticky folder allows on another user's file
    (fs.protected_regular refuses O_CREAT there). A file that cannot be opened refuses the group in one line."""
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            os.fchmod(fd, 0o666)  # past the umask: every user's groups lock the same file
        except FileExistsError:
            fd = os.open(path, os.O_RDWR)
    except OSError as e:
        raise InputError(
            f"--nproc: cannot open the GPU lock {str(path)!r} ({e.strerror}); allowed: a lock folder every user "
            "can write (MOESEARCH_LOCK_DIR)"
        ) from None
    return os.fdopen(fd, "r+")


def lease(gpus: Sequence[str], want: int, lock_dir: Path = LOCK_DIR) -> Lease:
    """`want` of `gpus` that no other group holds, in their order; InputError naming --nproc if fewer are free."""
    lock_dir.mkdir(exist_ok=True)
    with contextlib.suppress(PermissionError):  # another user made it: already shared
        os.chmod(lock_dir, 0o1777)
    taken, busy = Lease(), []
    for gpu in gpus:
        if len(taken.gpus) == want:
            break
        f = _lock_file(lock_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            busy.append(f.read().strip() or "?")  # the holder wrote its pid
            f.close()
            continue
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        taken.gpus += (gpu,)
        taken._files.append(f)
    if len(taken.gpus) < want:
        taken.release()
        if want > len(gpus):
            raise InputError(f"--nproc {want}: this node has {len(gpus)} GPUs; allowed: {len(gpus)} or fewer")
        free = len(gpus) - len(busy)
        holders = f"pid {', '.join(sorted(set(busy)))}"
        allowed = f"--nproc {free} or fewer, or wait for one to end" if free else "wait for one to end, or another node"
        raise InputError(
            f"--nproc {want}: {len(busy)} of this node's {len(gpus)} GPUs are held by other moesearch groups "
            f"({holders}), {free} free; allowed: {allowed}"
        )
    return taken
