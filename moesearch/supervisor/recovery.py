"""Settle the trials of worker groups that died: from their Parquet record if it was written, else retry.

A supervisor writes a trial's record, then tells Optuna; killed in between, or killed mid-trial, it
leaves the trial RUNNING. Every search and worker runs `recover` when it starts and before each
trial, promote and verify when they start, so no trial stays RUNNING forever and no result is lost or
trained twice:
  record COMPLETE or FAIL  told exactly as recorded (the record is the result)
  record PREEMPTED         failed outside the budget; a search trial is queued again
  no record                "lost": failed outside the budget; a search trial is queued again
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import optuna
import pyarrow.parquet as pq
from optuna.trial import TrialState

from moesearch.core import results
from moesearch.core.trial import Origin, State, StudyAttr, TrialAttr
from moesearch.supervisor import accounting, liveness, optuna_compat, telling


def recover(study: optuna.Study, results_dir: Path) -> list[str]:
    """Settle every RUNNING trial whose supervisor is dead; returns one line per trial settled."""
    if not any(liveness.is_dead(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
        return []
    settled = []
    with one_at_a_time(results_dir, study.study_name):
        # read again inside the lock: a process that held it before may have settled them
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if liveness.is_dead(frozen) and (line := _settle(study, results_dir, frozen)):
                settled.append(line)
    return settled


def tell_if_recorded(study: optuna.Study, results_dir: Path, number: int) -> bool:
    """After an error past its record (the study unreachable, Ctrl-C while telling): True if the trial has
    a record, which is then the truth. It is told as recorded now if the study answers, else it stays
    RUNNING, its heartbeat stops, and the next `recover` tells it so. Never failed and trained again."""
    try:
        if _record(results_dir, study.study_name, number) is None:
            return False
    except UnreadableRecord:  # moved aside: the next `recover` settles the trial as lost
        return False
    # best effort, under the lock as every settling is: a later `recover` tells it if this cannot
    with contextlib.suppress(Exception), one_at_a_time(results_dir, study.study_name):
        _settle(study, results_dir, optuna_compat.trial(study, number))
    return True


@contextlib.contextmanager
def one_at_a_time(results_dir: Path, study: str) -> Iterator[None]:
    """One process settles a study's trials at a time, by recovery or by writing a record and telling it
    (`runner.record_and_tell`), so a recovery never reads "no record" just before the record lands.
    SQLite has no row locks: two processes that both read a trial RUNNING could both fail it and queue it
    twice (seen in a test with two real processes).
    The lock file lives in the study's results folder, which every worker group shares; on a filesystem
    without locks the storage's own guarantees remain (PostgreSQL's row locks, the journal's file lock)."""
    path = Path(results_dir) / study / ".recovery.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _settle(study: optuna.Study, results_dir: Path, frozen: optuna.trial.FrozenTrial) -> str | None:
    try:
        row, aside = _record(results_dir, study.study_name, frozen.number), ""
    except UnreadableRecord as e:  # settled as lost; the file is kept for a person to look at
        row, aside = None, f"{e}; "
    retry = (
        frozen.user_attrs.get(TrialAttr.ORIGIN, Origin.SEARCH) == Origin.SEARCH
    )  # train, verify and promote are re-run by their command, which plans from the records
    who = frozen.user_attrs.get(TrialAttr.GROUP, "a worker group").split(":")
    if row is None or row["state"] == State.PREEMPTED:
        reason = row["failure_reason"] if row else f"lost: its supervisor ({':'.join(who[:2])}) died mid-trial"
        if not telling.fail_outside_budget(study, frozen, reason, requeue=retry):
            return None  # another process settled it first
        return f"trial {frozen.number}: {aside}{reason}" + ("; queued again" if retry and frozen.params else "")
    objectives = study.user_attrs[StudyAttr.SPACE]["search"]["objectives"]
    values = [row[o] for o in objectives] if row["state"] == State.COMPLETE else None
    try:
        trial = optuna_compat.handle(study, frozen)
        accounting.set_compute(
            trial,
            _steps_of(results_dir, study.study_name, frozen.number),
            row["wall_time_s"] * (row["world_size"] or 1),
        )
        telling.tell_result(study, trial, values, row["failure_reason"], pruned=row["state"] == State.PRUNED)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
        return None  # another process settled it first
    return f"trial {frozen.number}: told from its record ({row['state']}); its supervisor died before telling"


def _steps_of(results_dir: Path, study: str, number: int) -> int:
    """The steps rows a recorded trial has: what it trained."""
    path = results.trial_file(results_dir, study, number, "steps")
    return pq.read_metadata(path).num_rows if path.exists() else 0


class UnreadableRecord(Exception):
    """A trial's record that cannot be read (truncated by a lost node): moved aside, named in the message."""


def _record(results_dir: Path, study: str, number: int) -> dict | None:
    """The trial's record, None if it has none; UnreadableRecord (the file moved aside) if it cannot be read."""
    path = results.trial_file(results_dir, study, number)
    if not path.exists():
        return None
    try:
        return pq.read_table(path).to_pylist()[0]
    except (OSError, ValueError, IndexError) as e:  # pyarrow's ArrowInvalid is a ValueError
        aside = path.with_name(path.name + ".unreadable")
        path.replace(aside)
        raise UnreadableRecord(
            f"its record {path} could not be read ({type(e).__name__}), kept aside as {aside.name}"
        ) from None
