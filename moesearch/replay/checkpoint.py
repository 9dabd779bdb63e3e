"""Replayed runs kept as each one ends, so a long replay that is stopped resumes where it was.

A hundred seeds of many arms take hours on two cores; before this file, a replay wrote its results only
at the end, and a stopped one lost them all. The checkpoint is one JSON line per finished (arm, seed)
run, after a first line with the settings that made them: a rerun with the same settings skips what is
there, and one with other settings is refused (its runs would not be comparable). A line cut short by a
kill is dropped on reading and overwritten by the next run. Light: stdlib and numpy.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from moesearch.core.errors import InputError
from moesearch.replay import truth
from moesearch.replay.arms import Arm, Run


class Checkpoint:
    """The runs finished so far under `settings` (JSON-able), in the file at `path`, by arm and seed."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path, self.settings = path, json.loads(json.dumps(settings))  # as it reads back
        self.done: dict[tuple[str, int], Run] = {}  # by `key(arm)` and seed
        if path.exists():
            self._read()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"settings": self.settings}) + "\n")

    def kept(self, arm: Arm, seed: int) -> Run | None:
        return self.done.get((key(arm), seed))

    def add(self, arm: Arm, seed: int, run: Run) -> None:
        """Keep one finished run: appended and flushed to disk before the next one is started."""
        line = json.dumps({"arm": key(arm), "seed": seed, "run": asdict(run)}, default=_plain)
        with self.path.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[key(arm), seed] = run

    def _read(self) -> None:
        good = 0  # bytes of whole, readable lines
        with self.path.open("rb") as f:
            for n, raw in enumerate(f):
                try:
                    line = json.loads(raw)
                except ValueError:  # the line a kill cut short: the last one
                    break
                if n == 0:
                    self._check(line.get("settings"))
                else:
                    self.done[line["arm"], line["seed"]] = _from_json(line["run"])
                good += len(raw)
        if good == 0:
            raise InputError(f"--out: {str(self.path)!r} is not a replay checkpoint; allowed: delete it")
        os.truncate(self.path, good)

    def _check(self, theirs: dict[str, Any] | None) -> None:
        if theirs == self.settings:
            return
        differ = sorted(k for k in {*self.settings, *(theirs or {})} if (theirs or {}).get(k) != self.settings.get(k))
        raise InputError(
            f"--out: {str(self.path)!r} holds runs replayed with other settings ({', '.join(differ)} differ: "
            f"{(theirs or {}).get(differ[0])!r} there, {self.settings.get(differ[0])!r} now); allowed: the "
            "same flags to resume, another --out, or delete the file to start over"
        )


def key(arm: Arm) -> str:
    """The arm's name, and its rungs where it prunes: arms without pruning are the same whatever the rungs."""
    p = arm.pruning
    return arm.name if p.method == "none" else f"{arm.name} rungs {p.rungs} eta {p.eta} min_records {p.min_records}"


def _from_json(d: dict[str, Any]) -> Run:
    score = None if d["score"] is None else truth.Score(**{k: np.array(v) for k, v in d["score"].items()})
    return Run(
        spent=np.array(d["spent"]),
        relative=np.array(d["relative"], dtype=float),
        pruned=d["pruned"],
        score=score,
        drawn=tuple(d["drawn"]),
        stalled=d["stalled"],
    )


def _plain(value: Any) -> Any:
    """numpy arrays and scalars as the lists and numbers JSON knows (inf and nan as JSON's Infinity, NaN)."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")
