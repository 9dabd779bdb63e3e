"""One trial trained by the real CLI (`moesearch train`), its record read back: what the benches time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from moesearch.core import results


def train(
    space_file: Path, layers: Sequence[str], nproc: int, folder: Path, study: str, flags: Sequence[str] = ()
) -> pd.Series:
    """Train `layers` once with `moesearch train`; its trial record (the last of `study` in `folder`)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "moesearch",
            "train",
            str(space_file),
            "--layers",
            ",".join(layers),
            "--nproc",
            str(nproc),
            "--results",
            str(folder),
            "--study",
            study,
            "--no-progress",
            *flags,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return results.load_trials(folder, study).iloc[-1]
