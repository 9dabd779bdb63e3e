"""A trial's rungs against the whole study: store its objectives at each rung, rank them against the
records there of the search trials with its seed (`decide.rung_peer`), decide (`decide.rung_verdict`).

Every record of a rung lives in the study, as the trial's `rungs` attribute, so worker groups on
several nodes prune against one another's trials. A storage error at a rung is that trial's failure
(`RungStorageError`, recorded by `runner`), not the search's. Light: optuna only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import optuna
from optuna.trial import TrialState

from moesearch.core.protocol import Verdict
from moesearch.core.space import Space
from moesearch.core.trial import TrialAttr
from moesearch.supervisor import decide

SETTLED = (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError)  # another group finished the trial


class RungStorageError(Exception):
    """The study could not be read or written at a rung: that trial fails (recorded), the search goes on."""


@contextlib.contextmanager
def _storage(step: int) -> Iterator[None]:
    """Storage errors inside become RungStorageError; a trial settled elsewhere passes through as it is."""
    try:
        yield
    except SETTLED:
        raise
    except Exception as e:  # optuna raises several types (its own, SQLAlchemy's, OSError for a journal)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RungStorageError(f"storage error at rung {step}: {type(e).__name__}: {first}") from e


def judge(study: optuna.Study, trial: optuna.Trial, space: Space, may_stop: bool) -> Callable[[int, dict], Verdict]:
    """The `on_rung` of one RUNNING trial: record its metrics at the rung, then rank them.

    may_stop False (baselines, replicates): the trial's rungs are recorded for the others, and it goes on.
    """
    objectives = space.search.objectives
    seed = trial.user_attrs.get(TrialAttr.SEED)  # set before training: peers are of this seed
    reached: dict[str, dict[str, float]] = {}
    ranked_against: dict[str, list[int]] = {}

    def on_rung(step: int, metrics: dict) -> Verdict:
        mine = {o: float(metrics[o]) for o in objectives}
        reached[str(step)] = mine  # stored first: a group deciding at the same moment counts this record too
        try:
            with _storage(step):
                trial.set_user_attr(TrialAttr.RUNGS, dict(reached))
                if not may_stop:
                    return Verdict(True, "a baseline or replicate: its rungs are recorded, it is never stopped")
                peers = records_at(study, step, objectives, but=trial.number, seed=seed)
                ranked_against[str(step)] = sorted(peers)  # which records the verdict saw: groups decide concurrently
                trial.set_user_attr(TrialAttr.RUNG_PEERS, dict(ranked_against))
        except SETTLED:
            # another group settled the trial (its heartbeat looked dead), before either write: it goes on,
            # and its result is dropped (`runner.dropped`)
            return Verdict(True, "settled by another group while it ran")
        return decide.rung_verdict(
            step, list(mine.values()), list(peers.values()), list(objectives.values()), space.search.pruning
        )

    return on_rung


def records_at(
    study: optuna.Study, step: int, objectives: dict[str, str], but: int, seed: int | None
) -> dict[int, list[float]]:
    """Trial number -> the objectives at rung `step`, of every other trial that is a peer (`decide.rung_peer`: a search
    trial of `seed`): running, complete, pruned or failed. Not those that gave no result (preempted,
    lost, withdrawn: failed outside the budget): their retry is a trial of its own, and must not be
    ranked against its own earlier attempt."""
    rows = {}
    for t in study.get_trials(deepcopy=False):
        at = t.user_attrs.get(TrialAttr.RUNGS, {}).get(str(step))
        no_result = t.state == TrialState.FAIL and not t.user_attrs.get(TrialAttr.BUDGET, True)
        peer = decide.rung_peer(t.user_attrs.get(TrialAttr.ORIGIN), t.user_attrs.get(TrialAttr.SEED), seed)
        if t.number != but and at is not None and not no_result and peer and all(o in at for o in objectives):
            rows[t.number] = [at[o] for o in objectives]
    return rows
