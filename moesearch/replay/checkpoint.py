"""Replayed runs kept as each one ends, so a long replay that is stopped resumes where it was.

A hundred seeds of many arms take hours on two cores; before this file, a replay wrote its results only
at the end, and a stopped one lost them all. The checkpoint is one JSON line per finished (arm, seed)
run, after a first line with what made them (`settings`: the table's content, the budget, the scoring,
this file's format): a rerun with the same settings skips the runs there, and one with other settings
is refused (its runs would not be comparable). A last line cut short by a kill is dropped. Light: stdlib
and numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from moesearch.core.errors import InputError
from moesearch.replay import truth
from moesearch.replay.arms import Arm, Run
from moesearch.replay.table import Table

FORMAT = 1  # raise when what a run measures changes (arms.replay, truth.scores), so old runs are not reused


def settings(table: Table, budget_steps: int | None, n_trials: int | None, score_points: int, share: float) -> dict:
    """What a run's result depends on besides its arm and seed."""
    return {
        "format": FORMAT,
        "table": fingerprint(table),
        "budget_steps": budget_steps,
        "n_trials": n_trials,
        "score_points": score_points,
        "share": share,
    }


def fingerprint(table: Table) -> str:
    """A digest of everything a replay reads from the table: every training's values and curve, the
    objectives and the steps of a full training (compute is counted in them)."""
    content = {
        "objectives": table.objectives,
        "full_steps": table.full_steps,
        "trainings": {a: [(t.row, t.seed, t.values, t.at_step) for t in ts] for a, ts in table.trainings.items()},
        "values": table.values if not table.trainings else None,  # a table made by hand has no trainings
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


class Checkpoint:
    """The runs finished so far under `settings` (JSON-able), in the file at `path`, by arm and seed."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path, self.settings = path, json.loads(json.dumps(settings))  # as it reads back
        self.done: dict[tuple[str, int], Run] = {}  # by `key(arm)` and seed
        if path.exists():
            self._read()

    def check(self, table: Table, *how: Any) -> None:
        """ValueError unless the runs to be kept are made as the settings say (`settings`' arguments)."""
        if (made := json.loads(json.dumps(settings(table, *how)))) != self.settings:
            raise ValueError(f"a replay with settings {made} cannot keep its runs with {self.settings}")

    def kept(self, arm: Arm, seed: int) -> Run | None:
        return self.done.get((key(arm), seed))

    def add(self, arm: Arm, seed: int, run: Run) -> None:
        """Keep one finished run: appended and flushed to disk before the next one is started."""
        lines = [] if self.path.exists() else [json.dumps({"settings": self.settings})]
        lines.append(json.dumps({"arm": key(arm), "seed": seed, "run": asdict(run)}, default=_plain))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        self.done[key(arm), seed] = run

    def _read(self) -> None:
        good = 0  # bytes of whole lines
        with self.path.open("rb") as f:
            for n, raw in enumerate(f):
                if not raw.endswith(b"\n"):  # the last line, cut short by a kill
                    break
                line = self._line(n, raw)
                if n == 0:
                    self._check(line["settings"])
                else:
                    self.done[line["arm"], line["seed"]] = _from_json(line["run"])
                good += len(raw)
        if good == 0:
            raise InputError(f"--out: {str(self.path)!r} is not a replay checkpoint; allowed: delete it")
        os.truncate(self.path, good)  # so the next run starts a line of its own

    def _line(self, n: int, raw: bytes) -> dict[str, Any]:
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if n == 0 and not (isinstance(line, dict) and isinstance(line.get("settings"), dict)):
            raise InputError(f"--out: {str(self.path)!r} is not a replay checkpoint; allowed: delete it")
        if not (isinstance(line, dict) and {"arm", "seed", "run"} <= line.keys()) and n > 0:
            raise InputError(
                f"--out: {str(self.path)!r} line {n + 1} is damaged; allowed: delete that line (its run is "
                "replayed again) or the file"
            )
        return line

    def _check(self, theirs: dict[str, Any]) -> None:
        if theirs == self.settings:
            return
        differ = sorted(k for k in {*self.settings, *theirs} if theirs.get(k) != self.settings.get(k))
        raise InputError(
            f"--out: {str(self.path)!r} holds runs replayed with other settings ({', '.join(differ)} differ: "
            f"{theirs.get(differ[0])!r} there, {self.settings.get(differ[0])!r} now); allowed: the same "
            "TABLE and flags to resume, another --out, or delete the file to start over"
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
