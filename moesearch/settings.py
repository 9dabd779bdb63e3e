"""Settings: what every trial of one `search` or `train` invocation shares, resolved by the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moesearch.launch import Launch
from moesearch.space import Space


@dataclass(frozen=True)
class Settings:
    """What every trial of one invocation shares (resolved and validated by the CLI)."""

    space: Space
    study: str
    storage: str
    results: Path
    launch: Launch
    seed: int
    data: str | None
    data_sha256: str
    progress: bool = True

