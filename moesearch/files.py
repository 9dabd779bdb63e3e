"""Writing a file whole or not at all: readers never see half a file (light: stdlib only)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], None], *, exclusive: bool = False, scratch: Path | None = None) -> Path:
    """Call `write(tmp)` on a temporary file, then move it to `path` in one step.

    exclusive: hard-link instead of rename, so an existing `path` is never replaced (FileExistsError).
    scratch: the folder for the temporary file (same filesystem); by default `path`'s own folder, under
    a '.tmp-' name. A separate folder keeps globs like 'trials/*.parquet' from ever matching one.
    """
    folder = scratch or path.parent
    folder.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        if exclusive:
            os.link(tmp, path)  # atomic, and refuses to replace an existing file
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
