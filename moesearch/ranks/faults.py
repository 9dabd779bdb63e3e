"""Deliberate faults, for testing how the search survives them (and for users checking their cluster).

MOESEARCH_FAULT="KIND:ASSIGNMENT[;KIND:ASSIGNMENT...]" makes the trials of those assignments
(e.g. "nan:gelu,relu2;crash:swiglu,swiglu") fail at step 1:
  nan    the loss becomes NaN on every rank (a divergence, caught collectively; the group lives on)
  crash  the last rank exits abruptly (the group dies; the supervisor starts a fresh one)
  hang   the last rank stops responding (the trial timeout fires; the group is killed)
  stall  from step 1 on, the loss carries no gradient: the model does not learn, a deliberately poor
         trial that trains normally otherwise (what pruning must stop)
Unset in normal use.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

KINDS = ("nan", "crash", "hang", "stall")
_STEP = 1


@dataclass(frozen=True)
class Fault:
    kind: str

    def apply(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """The training loss of this step, poisoned or not; crash and hang never return."""
        if self.kind == "stall" and step >= _STEP:
            return loss.detach() + 0 * loss  # the same value, a zero gradient
        if step != _STEP:
            return loss
        victim = dist.get_rank() == dist.get_world_size() - 1
        if self.kind == "crash" and victim:
            os._exit(17)
        if self.kind == "hang" and victim:
            while True:
                time.sleep(60)
        if self.kind == "nan":
            return loss * float("nan")
        return loss


def planned(assignment: str) -> Fault | None:
    """The fault planned for this assignment, if any."""
    for entry in os.environ.get("MOESEARCH_FAULT", "").split(";"):
        kind, _, target = entry.strip().partition(":")
        if kind in KINDS and target == assignment:
            return Fault(kind)
    return None
