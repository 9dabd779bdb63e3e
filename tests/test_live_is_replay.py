"""The live rung path (`supervisor/rungs.py`, through an Optuna study) and the replay (`supervisor/search.py`)
reach identical verdicts on the same sequence of records: the replay measures the algorithm that trains."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from test_replay import MO_ASHA, curved

from moesearch.core import space
from moesearch.core.sections import PruningSpec
from moesearch.core.trial import Origin, TrialAttr
from moesearch.replay import arms
from moesearch.replay import table as tables
from moesearch.supervisor import decide, rungs

OBJECTIVES = {"val_loss": "minimize", "train_flops_per_token": "minimize"}


def live_space(pruning: PruningSpec) -> space.Space:
    tiny = space.load("tiny")
    return tiny.model_copy(
        update={"search": tiny.search.model_copy(update={"objectives": OBJECTIVES, "pruning": pruning})}
    )


def live(
    study: optuna.Study,
    spec: space.Space,
    training: tables.Training,
    may_stop: bool,
    seed: int = 0,
    origin: str = Origin.SEARCH,
) -> int | None:
    """One trial through the live rung path: the rung it is stopped at, or None; told to the study."""
    trial = study.ask()
    trial.set_user_attr(TrialAttr.SEED, seed)
    trial.set_user_attr(TrialAttr.ORIGIN, origin)
    on_rung = rungs.judge(study, trial, spec, may_stop)
    for step in spec.search.pruning.rungs:
        verdict = on_rung(step, dict(zip(OBJECTIVES, training.at_step[step], strict=True)))
        if not verdict.keep:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return step
    study.tell(trial, training.values)
    return None


@pytest.mark.parametrize(
    "pruning",
    [MO_ASHA, PruningSpec(method="mo-asha", rungs=[10, 20], eta=2, min_records=1)],
    ids=["eta 3, 4 records", "eta 2, from the first record"],
)
@pytest.mark.parametrize("order_seed", [0, 1, 2])
def test_the_live_rungs_and_the_replay_stop_the_same_trials_at_the_same_rungs(tmp_path, pruning, order_seed):
    trials, steps = curved(tmp_path)
    table = tables.load_table(trials, "t", steps)
    spec = live_space(pruning)
    baselines = [b.text for b in decide.baselines(table.choices)]
    rest = [a for a in table.trainings if a not in baselines]
    order = baselines + list(np.random.default_rng(order_seed).permutation(rest))
    study = optuna.create_study(directions=list(OBJECTIVES.values()))
    at_rung: dict[int, list[list[float]]] = {}
    live_verdicts, replayed = [], []
    for assignment in order:
        training = table.trainings[assignment][0]
        may_stop = assignment not in baselines
        live_verdicts.append(live(study, spec, training, may_stop))
        replayed.append(arms._rungs(table, pruning, training, at_rung, may_stop))
    assert live_verdicts == replayed
    assert any(v is not None for v in replayed) and any(v is None for v in replayed[len(baselines) :])


def test_the_live_rungs_leave_out_what_the_replay_never_sees(tmp_path):
    """Verify replicates and another seed's search trials are not peers live, as the replay has none."""
    trials, steps = curved(tmp_path)
    table = tables.load_table(trials, "t", steps)
    eager = PruningSpec(method="mo-asha", rungs=[10, 20], eta=2, min_records=1)
    spec = live_space(eager)
    study = optuna.create_study(directions=list(OBJECTIVES.values()))
    best = min(table.trainings, key=lambda a: table.trainings[a][0].values[0])
    for origin, seed in ((Origin.VERIFY, 0), (Origin.SEARCH, 1)):  # strong records that must not count
        live(study, spec, table.trainings[best][0], may_stop=False, seed=seed, origin=origin)
    worst = max(table.trainings, key=lambda a: table.trainings[a][0].at_step[10][0])
    assert live(study, spec, table.trainings[worst][0], may_stop=True) is None, "alone at its rungs: kept"
    assert arms._rungs(table, eager, table.trainings[worst][0], {}, may_stop=True) is None
