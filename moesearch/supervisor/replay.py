"""Replay searches against an exhaustive table: every trial is answered by lookup instead of training.

A table is a study that trained every assignment of its space once (the `brute` sampler does that).
Replaying runs the search's own loop (uniform baselines first, a repeated proposal answered without
spending budget) with any sampler and seed in milliseconds per trial, so samplers can be compared
over hundreds of seeds: hypervolume after each trained trial, relative to the table's true front.
Light: optuna and pandas; no torch (unless the GP sampler is asked for, which needs it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd

from moesearch.analysis import pareto
from moesearch.assignment import Assignment, layer_name
from moesearch.errors import InputError
from moesearch.search_limits import MAX_REPEATS_IN_A_ROW
from moesearch.supervisor.study import make_sampler
from moesearch.vocab import State


@dataclass(frozen=True)
class Table:
    objectives: dict[str, str]
    reference: dict[str, float]
    choices: list[list[str]]  # per layer
    values: dict[str, list[float]]  # assignment -> objective values
    true_hypervolume: float


def load_table(trials: pd.DataFrame, source: str) -> Table:
    """The completed trials of an exhaustive study; InputError if an assignment is missing."""
    done = trials[trials["state"] == State.COMPLETE]
    if done.empty:
        raise InputError(f"TABLE: {source} has no completed trial")
    objectives, reference = pareto.objectives_of(done), pareto.reference_of(done)
    means = pareto.by_assignment(done, objectives).set_index("assignment")
    layers = sorted(c for c in means.columns if c.startswith("layer_"))
    choices = [sorted(means[c].unique()) for c in layers]
    missing = [Assignment(a).text for a in itertools.product(*choices) if Assignment(a).text not in means.index]
    if missing:
        raise InputError(f"TABLE: {source} is not exhaustive: {len(missing)} of {len(missing) + len(means)} "
                         f"assignments missing (e.g. {missing[0]}); make it with a space whose sampler is 'brute'")
    values = {a: [float(v) for v in row] for a, row in means[list(objectives)].iterrows()}
    return Table(objectives, reference, choices, values,
                 pareto.hypervolume(means.reset_index(), objectives, reference))


def replay(table: Table, sampler: str, seed: int, n_trials: int) -> np.ndarray:
    """Hypervolume / true hypervolume after each of `n_trials` trained trials (held flat if the sampler stalls)."""
    study = optuna.create_study(directions=list(table.objectives.values()), sampler=make_sampler(sampler, seed))
    for a in sorted({a for a in table.choices[0] if all(a in c for c in table.choices)}):  # baselines first
        study.enqueue_trial(Assignment([a] * len(table.choices)).params())
    known: dict[str, list[float]] = {}
    curve, in_a_row = [], 0
    while len(curve) < n_trials and len(known) < len(table.values) and in_a_row < MAX_REPEATS_IN_A_ROW:
        trial = study.ask()
        assignment = Assignment(trial.suggest_categorical(layer_name(i), c) for i, c in enumerate(table.choices)).text
        values = known.get(assignment)
        in_a_row = in_a_row + 1 if values is not None else 0
        if values is None:
            known[assignment] = values = table.values[assignment]
            points = pd.DataFrame(list(known.values()), columns=list(table.objectives))
            curve.append(pareto.hypervolume(points, table.objectives, table.reference) / table.true_hypervolume)
        study.tell(trial, values)
    return np.array(curve + [curve[-1]] * (n_trials - len(curve)))


def compare(table: Table, samplers: list[str], seeds: int, n_trials: int) -> dict[str, np.ndarray]:
    """sampler -> (seeds x n_trials) relative hypervolume curves, seeds 0..seeds-1."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # GP and NSGA-II warn about experimental features
    return {s: np.stack([replay(table, s, seed, n_trials) for seed in range(seeds)]) for s in samplers}


def summary(curves: dict[str, np.ndarray], budgets: list[int], target: float = 0.95) -> pd.DataFrame:
    """Median relative hypervolume at each budget, and the share of seeds that reached `target` by the last one."""
    rows = []
    for sampler, runs in curves.items():
        row = {"sampler": sampler, "seeds": len(runs)}
        row.update({f"median@{b}": float(np.median(runs[:, b - 1])) for b in budgets})
        row[f"reached {target:.0%} by {budgets[-1]}"] = float((runs[:, budgets[-1] - 1] >= target).mean())
        first = (runs >= target).argmax(axis=1) + 1
        row[f"median trials to {target:.0%}"] = float(np.median(np.where((runs >= target).any(axis=1), first, np.inf)))
        rows.append(row)
    table = pd.DataFrame(rows)
    if "random" in curves:  # the baseline every sampler must beat at equal budget
        table[f"vs random @{budgets[-1]}"] = table[f"median@{budgets[-1]}"] / float(np.median(curves["random"][:, budgets[-1] - 1]))
    return table
