"""The words every side shares, defined once: trial states and origins, study and trial attribute
keys, and the messages between the supervisor and rank 0 of its worker group.

Light: stdlib only, so the ranks, the supervisor, the analysis and the CLI all import it. The enums
are `StrEnum`s: they compare equal to, and are stored as, their plain strings, so Optuna attributes
and Parquet columns hold "COMPLETE" or "search", readable without moesearch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    """A trial's state in its Parquet record. In Optuna a pruned trial is PRUNED too; a preempted trial
    is FAIL there, outside the budget, and queued again."""

    COMPLETE = "COMPLETE"
    FAIL = "FAIL"  # diverged, crashed, timed out: a result (it counts toward --trials)
    PREEMPTED = "PREEMPTED"  # stopped by SIGTERM/SIGUSR1 at a step boundary: no result, trained again
    PRUNED = "PRUNED"  # stopped at a rung by [search.pruning]: a result (it counts), never trained again


class Origin(StrEnum):
    """What trained a trial."""

    SEARCH = "search"  # a proposal of the sampler
    TRAIN = "train"  # `moesearch train --layers ...`
    VERIFY = "verify"  # a seed replicate of a known assignment: `verify`, or `search` for search.baseline_seeds


class TrialAttr(StrEnum):
    """Optuna user attributes of a trial: what makes a study readable without its Parquet records."""

    ASSIGNMENT = "assignment"  # "gelu,swiglu,..." (`Assignment.text`)
    SEED = "seed"  # the training seed
    TRAINED = "trained"  # a worker group trained it (a repeat answered from the study was not)
    DUPLICATE_OF = "duplicate_of"  # the trial whose result answered this repeat
    BUDGET = "budget"  # False: outside --trials (verify, preempted, lost, interrupted, withdrawn)
    FAILURE_REASON = "failure_reason"
    ORIGIN = "origin"  # an `Origin`
    WORKER = "worker"  # the supervisor running it, "host:pid:start:pidspace" (`liveness`)
    HEARTBEAT = "heartbeat"  # the supervisor's last sign of life, seconds since the epoch
    TOKEN = "token"  # finds a trial added outside the sampler (`study.reserve`)
    RUNGS = "rungs"  # {step: {objective: value so far}} at every rung the trial reached (`[search.pruning]`)
    COMPUTE = "compute"  # {"steps": optimizer steps trained, "device_s": seconds x devices}: what --budget counts


class StudyAttr(StrEnum):
    """Optuna user attributes of a study: what a joining worker group needs."""

    SPACE = "space"  # the space it was created for (a dict)
    RUN = "run"  # {"seed", "data", "data_sha256", "results"} of the search that created it
    TRIALS = "trials"  # the target of trained trials, read by every group
    BUDGET = "budget"  # the compute budget, {"steps": n} or {"device_h": x}, read by every group (--budget)
    REFERENCE_POINT = "reference_point"  # the hypervolume reference, fixed at creation


# Messages over the authenticated link between the supervisor (`group.py`) and rank 0 (`worker.py`).
# Sent as pickled dataclasses: both ends run this same module.


@dataclass(frozen=True)
class Ready:
    """Rank 0 to the supervisor, once: the group is up."""

    hardware: dict


@dataclass(frozen=True)
class Task:
    """The supervisor to rank 0 (and rank 0 to every rank): train this trial."""

    trial: int
    config: str  # RunConfig as JSON


@dataclass(frozen=True)
class Shutdown:
    """The supervisor to rank 0 (and every rank): no more trials, exit."""


@dataclass(frozen=True)
class Stop:
    """The supervisor to rank 0, mid-trial: a signal arrived; stop at the next step boundary."""

    signal: str


@dataclass(frozen=True)
class Step:
    """Rank 0 to the supervisor after every optimizer step: progress for the bar (and, without a terminal, a
    line at each evaluation)."""

    step: int  # optimizer steps done, from 1
    loss: float
    val_loss: float | None = None  # measured at this step (train.eval_interval), else None


@dataclass(frozen=True)
class Rung:
    """Rank 0 to the supervisor, at a rung of `[search.pruning]`: the trial's objectives so far. The
    ranks wait for the supervisor's Verdict, decided against the study's records at this rung of the
    search trials with the same seed (`decide.rung_peer`)."""

    step: int
    metrics: dict  # val_loss at this step, measured costs so far (step time, throughput, memory)


@dataclass(frozen=True)
class Verdict:
    """The supervisor to rank 0, answering a Rung: go on training, or stop here (pruned) and why."""

    keep: bool
    reason: str


@dataclass(frozen=True)
class Done:
    """Rank 0 to the supervisor: the trial trained to its last step."""

    metrics: dict
    steps: list[dict]
    layers: list[dict]


@dataclass(frozen=True)
class Failed:
    """Rank 0 (or the supervisor, for a group that died) : the trial ended without a result."""

    reason: str
    steps: list[dict] = field(default_factory=list)  # the steps it did train, for the record
    preempted: bool = False  # stopped by a signal: recorded PREEMPTED, trained again


@dataclass(frozen=True)
class Pruned:
    """Rank 0 to the supervisor: the trial stopped at a rung, as the supervisor's Verdict said."""

    reason: str
    step: int
    metrics: dict  # as the Rung reported them
    steps: list[dict]


Reply = Done | Failed | Pruned
