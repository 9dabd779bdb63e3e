"""What a search does next, decided in one place: `search`, `worker` and `replay` all call these, so a
replay measures exactly the algorithm that trains.

- the uniform baselines go first (`baselines`);
- a proposal already decided with this seed is answered from the study, not trained (`repeat_of`); a
  pruned or failed one proposed again is followed by a random undecided one (`instead_of_pruned`), not
  counted as a stall (a seed's training is deterministic: a failed one would fail again);
- a crash whose output says it would repeat (out of memory, a shape error) is marked so (`repeating`)
  and remembered per seed as a divergence is;
- the search stops at its trial target, its compute budget, an exhausted space or a stalled sampler (`why_stop`);
- at a rung of `[search.pruning]`, a trial goes on only if it ranks in the best 1/eta (`rung_verdict`)
  of the search trials of its own seed there (`rung_peer`);
  only objectives measured at a rung may be pruned on (`not_at_rung`, from the core's `metrics`, where the
  space file's validation reads it too).

Light: numpy and moocore; no Optuna, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

import moocore
import numpy as np

from moesearch.core.assignment import Assignment, uniform
from moesearch.core.metrics import not_at_rung as not_at_rung  # re-exported: the rung policy is read here
from moesearch.core.protocol import Verdict
from moesearch.core.sections import PruningSpec
from moesearch.core.trial import DIVERGED, REPEATS, Origin

MAX_REPEATS_IN_A_ROW = 100  # a sampler proposing only evaluated assignments this often has converged: stop asking
V = TypeVar("V")  # a decision's values: the study's or the replay table's


# What a crashed group's output says when the same assignment and seed would crash again: (kind, markers)
_REPEATING = (
    ("out of memory", ("OutOfMemoryError", "CUDA out of memory", "can't allocate memory")),
    ("a shape error", ("shapes cannot be multiplied", "size mismatch", "must match the size of tensor")),
)


def repeating(reason: str) -> str:
    """A failure's reason, marked `REPEATS` where its output names a failure that would repeat with this
    assignment and seed: the search then never pays a group restart to meet it again. A crash that names
    none (a node lost, a signal) may be the machine's, and is tried again when proposed."""
    for kind, markers in _REPEATING:
        if any(m in reason for m in markers):
            return f"{REPEATS}: {kind}; {reason}"
    return reason


def remembered(reason: str) -> bool:
    """A failure the same assignment and seed would meet again: a divergence, or a marked crash."""
    return reason.startswith((DIVERGED, REPEATS))


def baselines(choices: list[list[str]]) -> list[Assignment]:
    """The assignments every study trains first: the uniform ones, the reference every front is read against."""
    return uniform(choices)


def repeat_of(known: Mapping[str, tuple[int, V]], assignment: str) -> tuple[int, V] | None:
    """The earlier decision of `assignment` with this seed, if any: (trial number, values; None when it
    was pruned). A repeat is answered from it; a pruned assignment is never trained again with this seed.

    known: every decided (complete or pruned) assignment of this seed -> (trial number, values).
    """
    return known.get(assignment)


def instead_of_pruned(
    known: Mapping[str, object], choices: list[list[str]], rng: np.random.Generator, tries: int = 1000
) -> Assignment | None:
    """An undecided assignment drawn at random, to queue after the sampler proposed a pruned one again.

    GP and NSGA-II learn from complete trials only, so a pruned assignment leaves their model as it
    was and they propose it again and again: without a fresh proposal the search would stall on
    repeats that say nothing about convergence. None when `tries` draws find only decided ones.
    """
    for _ in range(tries):
        drawn = Assignment(c[int(rng.integers(len(c)))] for c in choices)
        if drawn.text not in known:
            return drawn
    return None


def budget_spent(spent: Mapping[str, float], budget: Mapping[str, float] | None) -> bool:
    """Whether the compute trained so far has reached the budget ({"steps": n} or {"device_h": x})."""
    if not budget:
        return False
    return spent["steps"] >= budget["steps"] if "steps" in budget else spent["device_s"] >= 3600 * budget["device_h"]


def why_stop(
    *,
    decided: int,
    target: int,
    evaluated: int,
    space_size: int,
    in_a_row: int,
    spent: Mapping[str, float],
    budget: Mapping[str, float] | None,
) -> str | None:
    """Why the search stops now, or None to ask for another trial.

    decided: trials with a result (complete, failed, pruned) toward the target; evaluated: distinct
    assignments decided (failed ones too); spent: {"steps", "device_s"} trained by every trial so far, pruned and failed
    included; budget: {"steps": n} or {"device_h": x} (None: no budget).
    """
    if decided >= target:
        return f"the study has its {target} trials"
    if budget_spent(spent, budget):
        if "steps" in budget:
            return f"the compute budget is spent: {spent['steps']:,.0f} of {budget['steps']:,} steps trained"
        return (
            f"the compute budget is spent: {spent['device_s'] / 3600:.3g} of {budget['device_h']:g} "
            "device-hours trained"
        )
    if evaluated >= space_size:
        return f"all {space_size} assignments of the space are evaluated"
    if in_a_row >= MAX_REPEATS_IN_A_ROW:
        return f"the sampler proposed only evaluated assignments {in_a_row} times in a row"
    return None


def rung_peer(origin: str | None, seed: int | None, my_seed: int | None) -> bool:
    """Whether a record at a rung (of a trial of `origin` and `seed`) is a peer of a trial of `my_seed`.

    Only the search's own trials with the same seed: another seed draws other weights and batches, so
    its records differ from these by the seed noise as well as the assignment; verify and train
    replicates are not the search's proposals. The replay ranks one seed's search alone: live pruning
    keeps the rule the replay measured.
    """
    return origin == Origin.SEARCH and seed is not None and seed == my_seed


def rung_verdict(
    step: int,
    candidate: Sequence[float],
    peers: Sequence[Sequence[float]],
    directions: Sequence[str],
    pruning: PruningSpec,
) -> Verdict:
    """Go on, or stop at this rung: MO-ASHA's rule (Schmucker et al. 2021) as a stopping rule.

    candidate: the trial's objective values at `step` (costs known before training exact, measured
    ones measured so far); peers: the other records at `step` that count (`rung_peer`), alike. The
    candidate goes on if it is among the ceil(n / eta) best of the n records by non-dominated rank,
    ties within a rank broken by crowding distance, so the kept set stays spread along the front
    (NSGA-II's selection); exact ties after that go to the earlier records.
    """
    n = len(peers) + 1
    if pruning.method == "none":
        return Verdict(True, "pruning is off")
    if n < pruning.min_records:
        return Verdict(True, f"rung {step}: {n} records, fewer than search.pruning.min_records {pruning.min_records}")
    points = _minimised(np.array([*peers, candidate], dtype=float), directions)  # last: exact ties go to the peers
    keep = math.ceil(n / pruning.eta)
    place = int(np.flatnonzero(selection_order(points) == n - 1)[0])  # the candidate's place in the order
    if place < keep:
        return Verdict(True, f"rung {step}: place {place + 1} of {n}, within the best {keep}")
    return Verdict(
        False,
        f"pruned at rung {step}: place {place + 1} of {n} records there, outside the best "
        f"{keep} (1/eta, eta {pruning.eta})",
    )


def selection_order(points: np.ndarray) -> np.ndarray:
    """Row indices of `points` (minimised), best first: by non-dominated rank, then by crowding distance
    (largest first), then by index, so the order is deterministic."""
    rank = moocore.pareto_rank(points)
    crowd = np.zeros(len(points))
    for r in np.unique(rank):
        members = np.flatnonzero(rank == r)
        crowd[members] = crowding_distance(points[members])
    return np.lexsort((np.arange(len(points)), -crowd, rank))


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point within its front: the sum over objectives of the gap
    between its nearest lower and higher neighbours, normalised by the objective's span; a point at an
    objective's minimum or maximum gets infinity. Tied values share their neighbours, so the distance
    does not depend on the order of the points (a trial's verdict must not depend on who asks)."""
    distance = np.zeros(len(points))
    for values in points.T:
        levels = np.unique(values)
        if len(levels) < 2:
            continue  # every point alike in this objective: it separates none
        at = np.searchsorted(levels, values)
        extreme = (at == 0) | (at == len(levels) - 1)
        inner = ~extreme
        distance[inner] += (levels[at[inner] + 1] - levels[at[inner] - 1]) / (levels[-1] - levels[0])
        distance[extreme] = np.inf
    return distance


def _minimised(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return points * sign
