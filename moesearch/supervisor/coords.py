"""The coordinate check's run: one assignment at every size of a space's ladder, under each parametrization,
trained a few steps in one rank started as its own process (`ranks/coords.py`); the rows it measured back."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from moesearch.core import corpus
from moesearch.core.config import RunConfig
from moesearch.core.errors import InputError
from moesearch.core.sections import BASE_SHAPE
from moesearch.core.space import Space

PARAMETRIZATIONS = ("standard", "mup", "completep")
RANKS_MODULE = "moesearch.ranks.coords"


def under(space: Space, parametrization: str) -> Space:
    """The space with another parametrization (muP's base shape is the space's own unless it sets one)."""
    raw = space.model_dump()
    raw["model"]["parametrization"] = parametrization
    if parametrization == "standard":
        raw["model"] |= dict.fromkeys(BASE_SHAPE)
    elif parametrization == "mup":
        raw["model"]["base_n_layers"] = None  # CompleteP's alone
    return Space.model_validate(raw)


def widths(space: Space) -> list[str]:
    """The ladder's sizes at the proxy's depth: the coordinate check compares widths (a deeper size's layers
    would be averaged into its width's)."""
    return [size for size in space.sizes() if space.at_size(size).model.n_layers == space.model.n_layers]


def job(space: Space, layers: list[str], parametrizations: list[str], steps: int, seed: int, data: str | None) -> dict:
    """What the rank trains: every size of the ladder under every parametrization."""
    if len(widths(space)) < 2:
        raise InputError(
            f"SPACE: {space.name!r} has no [[scale]] size wider at the proxy's depth, so there is one width to "
            "check; allowed: a space with at least one such size (e.g. the shipped 'ladder')"
        )
    runs, vocab = [], corpus.load(data).vocab_size
    for parametrization in parametrizations:
        at = under(space.with_vocab(vocab), parametrization)
        for size in widths(at):
            cfg = RunConfig.build(at.at_size(size), layers, seed, data, world_size=1)
            runs.append({"size": size, "config": cfg.model_dump_json()})
    return {"steps": steps, "runs": runs}


def run(job_: dict, log: Path) -> pd.DataFrame:
    """Train the job in one rank (torchrun, one process); its rows. RuntimeError with the log's tail if it fails."""
    with tempfile.TemporaryDirectory(prefix="moesearch-coords-") as tmp:
        spec, out = Path(tmp) / "job.json", Path(tmp) / "rows.json"
        spec.write_text(json.dumps(job_))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as sink:
            done = subprocess.run([*command, "-m", RANKS_MODULE, str(spec), str(out)], stdout=sink, stderr=sink)
        if done.returncode:
            tail = log.read_text().strip().splitlines()[-5:]
            raise RuntimeError(
                f"the coordinate check's rank failed (exit {done.returncode}; {log}):\n" + "\n".join(tail)
            )
        return pd.DataFrame(json.loads(out.read_text()))
