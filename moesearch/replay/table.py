"""A replay table: the completed trials of an exhaustive study (every assignment of its space trained,
as the `brute` sampler does), with learning curves (its steps table) if pruning is to be replayed.

At a rung, val_loss is the table's value at that step and train_loss its mean over the last tenth of
the training's steps, as the live rung measures them; the other objectives are exact costs (FLOPs,
parameters) or, unlike the live rung, taken from the finished trial (measured costs such as
throughput hardly move during training, but a live rung measures them over the steps so far).

Tables with several trainings per assignment (seed replicates): every recorded training is kept, and a
query is answered with one of them drawn at random (`draw`), as NAS-Bench-201 draws a seed; a replicate
of an assignment (a fresh seed) draws one not drawn before. Such a table's truth is its expected front
(`analysis/expected.py`: the noise model fitted on every training). Light: pandas; no torch.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from moesearch.analysis import pareto
from moesearch.core.assignment import Assignment
from moesearch.core.errors import InputError
from moesearch.core.metrics import ANALYTIC
from moesearch.core.trial import State


@dataclass(frozen=True)
class Training:
    """One recorded training of an assignment: its row in `Table.frame`, seed, final objective values
    and (with curves) its values at every evaluated step before the last."""

    row: int
    seed: int
    values: list[float]
    at_step: dict[int, list[float]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Table:
    objectives: dict[str, str]
    reference: dict[str, float]
    choices: list[list[str]]  # per layer
    values: dict[str, list[float]]  # assignment -> final objective values (mean over its seeds)
    true_hypervolume: float
    full_steps: int = 0  # train.steps of every trial
    at_step: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # rung -> assignment -> values there
    trainings: dict[str, tuple[Training, ...]] = field(default_factory=dict)  # assignment -> every training (by seed)
    frame: pd.DataFrame | None = None  # the completed trials, as `results.load_trials` gives them
    truth: pd.DataFrame | None = None  # the expected front of every training (`expected.expected_front`), by assignment
    quality: str = ""  # the objective regret is measured in (val_loss)
    cost: str | None = None  # the objective whose levels regret is taken at (an analytic cost where there is one)

    @property
    def seeds(self) -> int:
        """The most trainings any assignment has."""
        return max((len(t) for t in self.trainings.values()), default=1)


def load_table(trials: pd.DataFrame, source: str, steps: pd.DataFrame | None = None) -> Table:
    """The completed trials of an exhaustive study (with `steps`: their learning curves too), every
    training kept (one per seed of each assignment); InputError if an assignment is missing."""
    done = trials[trials["state"] == State.COMPLETE]
    if done.empty:
        raise InputError(f"TABLE: {source} has no completed trial")
    objectives, reference = pareto.objectives_of(done), pareto.reference_of(done)
    means = pareto.by_assignment(done, objectives).set_index("assignment")
    layers = sorted(c for c in means.columns if c.startswith("layer_"))
    # the space's order as far as the records keep it: baselines train first, in the space's order, so
    # first appearance by trial number puts them as the live search had them (a design's runs depend on it)
    in_order = done.sort_values("trial")
    choices = [list(pd.unique(in_order[c].astype(str))) for c in layers]
    missing = [Assignment(a).text for a in itertools.product(*choices) if Assignment(a).text not in means.index]
    if missing:
        raise InputError(
            f"TABLE: {source} is not exhaustive: {len(missing)} of {len(missing) + len(means)} "
            f"assignments missing (e.g. {missing[0]}); make it with a space whose sampler is 'brute'"
        )
    values = {a: [float(v) for v in row] for a, row in means[list(objectives)].iterrows()}
    frame = _frame(done)
    full, at_step = _curves(done, steps, objectives, values) if steps is not None else (0, {})
    per_trial = _trial_curves(frame, steps, objectives) if steps is not None else {}
    trainings: dict[str, list[Training]] = {}
    for row, r in enumerate(frame.itertuples(index=False)):
        trainings.setdefault(r.assignment, []).append(
            Training(row, int(r.seed), [float(getattr(r, o)) for o in objectives], per_trial.get(int(r.trial), {}))
        )
    quality, cost = roles(objectives)
    return Table(
        objectives,
        reference,
        choices,
        values,
        pareto.hypervolume(means.reset_index(), objectives, reference),
        full,
        at_step,
        {a: tuple(t) for a, t in trainings.items()},
        frame,
        _truth(frame, objectives),
        quality,
        cost,
    )


def _frame(done: pd.DataFrame) -> pd.DataFrame:
    """One row per (assignment, seed), the first trial of each, ordered by assignment, seed and trial; records
    from before common random numbers read as "global" (as `results.load_trials` reads them)."""
    frame = done.copy()
    if "random_streams" not in frame.columns:
        frame["random_streams"] = None
    frame["random_streams"] = frame["random_streams"].fillna("global")
    frame = frame.sort_values(["assignment", "seed", "trial"]).drop_duplicates(["assignment", "seed"])
    return frame.reset_index(drop=True)


def roles(objectives: dict[str, str]) -> tuple[str, str | None]:
    """(quality, cost): the first objective that is not an analytic cost (val_loss), and the first analytic
    cost among the others, else the next objective; None with one objective."""
    names = list(objectives)
    quality = next((o for o in names if o not in ANALYTIC), names[0])
    others = [o for o in names if o != quality]
    return quality, next((o for o in others if o in ANALYTIC), others[0] if others else None)


def _truth(frame: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame | None:
    """The table's expected front over every training, by assignment (None: too few trials for a model)."""
    from moesearch.analysis import expected

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = expected.expected_front(frame, objectives)
    return None if found is None else found[0].set_index("assignment")


def _curves(
    done: pd.DataFrame, steps: pd.DataFrame, objectives: dict[str, str], values: dict[str, list[float]]
) -> tuple[int, dict[int, dict[str, list[float]]]]:
    """The last step, and every assignment's objective values at every evaluated step before it (seed means)."""
    rows = steps[steps["trial"].isin(set(done["trial"]))].merge(done[["trial", "assignment"]], on="trial")
    rows = rows.sort_values(["trial", "step"])
    full = int(rows["step"].max())
    # train_loss as the live rung measures it: the mean over the last tenth of the training's steps
    tail = max(1, full // 10)
    rows["train_loss"] = rows.groupby("trial")["train_loss"].transform(lambda x: x.rolling(tail, min_periods=1).mean())
    evals = rows[rows["val_loss"].notna() & (rows["step"] < full)]
    curve = evals.groupby(["step", "assignment"])[["val_loss", "train_loss"]].mean()
    at_step: dict[int, dict[str, list[float]]] = {}
    for (step, assignment), measured in curve.iterrows():
        at_step.setdefault(int(step), {})[assignment] = [
            float(measured[o]) if o in measured.index else final
            for o, final in zip(objectives, values[assignment], strict=True)
        ]
    return full, at_step


def _trial_curves(
    frame: pd.DataFrame, steps: pd.DataFrame, objectives: dict[str, str]
) -> dict[int, dict[int, list[float]]]:
    """Trial -> step -> its objective values there (val_loss and train_loss measured as in `_curves`, the
    rest the trial's final values)."""
    rows = steps[steps["trial"].isin(set(frame["trial"]))].sort_values(["trial", "step"])
    if rows.empty:
        return {}
    full = int(rows["step"].max())
    tail = max(1, full // 10)
    rows = rows.assign(
        train_loss=rows.groupby("trial")["train_loss"].transform(lambda x: x.rolling(tail, min_periods=1).mean())
    )
    evals = rows[rows["val_loss"].notna() & (rows["step"] < full)]
    final = frame.set_index("trial")[list(objectives)]
    out: dict[int, dict[int, list[float]]] = {}
    for r in evals.itertuples(index=False):
        out.setdefault(int(r.trial), {})[int(r.step)] = [
            float(getattr(r, o)) if o in ("val_loss", "train_loss") else float(final.at[r.trial, o]) for o in objectives
        ]
    return out


def draw(
    table: Table, assignment: str, rng: np.random.Generator, drawn: set[int] = frozenset(), seed: int | None = None
) -> Training | None:
    """One of the assignment's recorded trainings at random, none of `drawn` (rows already seen: a replicate
    has a fresh seed), of `seed` where the table has one; None when the table holds no other. A table
    without trainings (made by hand) answers with its values."""
    options = [t for t in table.trainings.get(assignment, ()) if t.row not in drawn]
    options = [t for t in options if t.seed == seed] or options
    if not table.trainings:
        return Training(-1, 0, table.values[assignment], {s: v[assignment] for s, v in table.at_step.items()})
    return options[int(rng.integers(len(options)))] if options else None
