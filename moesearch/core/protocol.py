"""The messages between the supervisor (`supervisor/group.py`) and rank 0 of its worker group
(`ranks/serve.py`), and from rank 0 to every rank: the protocol of one trial.

Sent as pickled frozen dataclasses over an authenticated local socket: both ends run this same module.
Light: stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
