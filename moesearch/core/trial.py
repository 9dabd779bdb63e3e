"""A trial's words, defined once: its states and origins, the study and trial attribute keys, and how many
fresh seeds `verify` gives each assignment it checks.

Light: stdlib only, so the ranks, the supervisor, the analysis and the CLI all import it. The enums
are `StrEnum`s: they compare equal to, and are stored as, their plain strings, so Optuna attributes
and Parquet columns hold "COMPLETE" or "search", readable without moesearch.
"""

from __future__ import annotations

from enum import StrEnum

# `verify`'s fresh seeds per front member and baseline: enough for a first spread (2 degrees of freedom each)
VERIFY_SEEDS = 3
# How a diverged trial's failure_reason begins: a property of the assignment at its seed (a seed's training is
# deterministic), so a search never trains it again with that seed; a crash or a timeout may be the machine's.
DIVERGED = "diverged"
REPEATS = "repeats"  # a failure the same assignment and seed would meet again (out of memory, a shape error)


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
    PROMOTE = "promote"  # a smaller size's answer trained at a larger size of the ladder: `promote`


class TrialAttr(StrEnum):
    """Optuna user attributes of a trial: what makes a study readable without its Parquet records."""

    ASSIGNMENT = "assignment"  # "gelu,swiglu,..." (`Assignment.text`)
    SEED = "seed"  # the training seed
    TRAINED = "trained"  # a worker group trained it (a repeat answered from the study was not)
    DUPLICATE_OF = "duplicate_of"  # the trial whose result answered this repeat
    BUDGET = "budget"  # False: outside --trials (verify, preempted, lost, interrupted, withdrawn)
    FAILURE_REASON = "failure_reason"
    ORIGIN = "origin"  # an `Origin`
    # the worker group running it: its supervisor, "host:pid:start:pidspace" (`liveness`); stored as "worker" (0.1)
    GROUP = "worker"
    HEARTBEAT = "heartbeat"  # the supervisor's last sign of life, seconds since the epoch
    RUNGS = "rungs"  # {step: {objective: value so far}} at every rung the trial reached (`[search.pruning]`)
    RUNG_PEERS = "rung_peers"  # {step: [trial numbers]}: the records its verdict there ranked it against
    COMPUTE = "compute"  # {"steps": optimizer steps trained, "device_s": seconds x devices}: what --budget counts


class StudyAttr(StrEnum):
    """Optuna user attributes of a study: what a joining worker group needs."""

    SPACE = "space"  # the space it was created for (a dict)
    RUN = "run"  # {"seed", "data", "data_sha256", "results", "tokenizer"} of the search that created it
    TRIALS = "trials"  # the target of trained trials, read by every group
    BUDGET = "budget"  # the compute budget, {"steps": n} or {"device_h": x}, read by every group (--budget)
    REFERENCE_POINT = "reference_point"  # the hypervolume reference, fixed at creation
    SHAPE = "shape"  # {"ranks", "ep_size", "tokens_per_step"} of the groups that train it (`Settings.shape`)
    EVALUATION = "evaluation"  # "exact": routed without gate noise (studies before schema 5 have none)
