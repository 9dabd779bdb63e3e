"""Writing a file whole or not at all: readers never see half a file, and a file is on disk (fsync, its
folder too) before its name is, so a node lost mid-write leaves no truncated record (light: stdlib only).

Files get the mode the umask gives (0644 under the usual 0022), like any other tool's output, so
colleagues on a shared cluster can read a study; `tempfile.mkstemp` would make them 0600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

DEFAULT_RESULTS = Path("results")  # relative: a search writes beside where it was started, as most tools do


def write_atomic(
    path: Path, write: Callable[[Path], None], *, exclusive: bool = False, scratch: Path | None = None
) -> Path:
    """Call `write(tmp)` on a temporary file, then move it to `path` in one step.

    exclusive: hard-link instead of rename, so an existing `path` is never replaced (FileExistsError).
    scratch: the folder for the temporary file (same filesystem); by default `path`'s own folder, under
    a '.tmp-' name. A separate folder keeps globs like 'trials/*.parquet' from ever matching one.
    """
    folder = scratch or path.parent
    folder.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create(folder, path.suffix)
    try:
        write(Path(tmp))
        _fsync(tmp)  # the bytes on disk before the name: a node lost now leaves no truncated file under it
        if exclusive:
            os.link(tmp, path)  # atomic, and refuses to replace an existing file
        else:
            os.replace(tmp, path)
        _fsync(path.parent)  # and the name itself
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _fsync(path: str | Path) -> None:
    """Flush a file, or a folder's entries, to disk (a filesystem that cannot sync a folder is left as it is)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create(folder: Path, suffix: str) -> str:
    """A new empty file of a unique name in `folder`, created with mode 0666 less the umask (as open() does)."""
    while True:
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # 64 random bits: practically never
            continue
