"""Replay searches against an exhaustive table: every trial is answered by lookup instead of training.

A table is a study that trained every assignment of its space once (the `brute` sampler does that),
with learning curves (its steps table) if pruning is to be replayed. A replay runs the search's own
decisions (`decide`: baselines first, repeats answered, stop conditions, rung verdicts) with any
proposer, so arms can be compared over hundreds of seeds: hypervolume relative to the table's true
front against the compute spent, in optimizer steps, pruned trials counted to their rung.

At a rung, val_loss is the table's value at that step and train_loss its mean over the last tenth of
the training's steps, as the live rung measures them; the other objectives are exact costs (FLOPs,
parameters) or, unlike the live rung, taken from the finished trial (measured costs such as
throughput hardly move during training, but a live rung measures them over the steps so far). A table
with an objective measured only after the last step (`decide.not_at_rung`) is refused for pruning, as
such a space file is. Light: optuna and pandas; no torch (unless the GP sampler is asked for).
"""

from __future__ import annotations

import functools
import itertools
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd

from moesearch.analysis import pareto
from moesearch.assignment import Assignment, layer_name
from moesearch.errors import InputError
from moesearch.space import PruningSpec
from moesearch.supervisor import decide
from moesearch.supervisor.study import make_sampler
from moesearch.vocab import State

HAND = "hand"  # the hand search a researcher would do (`HandSearch`)
PROPOSERS = ("tpe", "gp", "nsga2", "random", "brute", HAND)


@dataclass(frozen=True)
class Table:
    objectives: dict[str, str]
    reference: dict[str, float]
    choices: list[list[str]]  # per layer
    values: dict[str, list[float]]  # assignment -> final objective values
    true_hypervolume: float
    full_steps: int = 0  # train.steps of every trial
    at_step: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # rung -> assignment -> values there


def load_table(trials: pd.DataFrame, source: str, steps: pd.DataFrame | None = None) -> Table:
    """The completed trials of an exhaustive study (with `steps`: their learning curves too);
    InputError if an assignment is missing."""
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
    full, at_step = _curves(done, steps, objectives, values) if steps is not None else (0, {})
    return Table(objectives, reference, choices, values, pareto.hypervolume(means.reset_index(), objectives, reference),
                 full, at_step)


def _curves(done: pd.DataFrame, steps: pd.DataFrame, objectives: dict[str, str],
            values: dict[str, list[float]]) -> tuple[int, dict[int, dict[str, list[float]]]]:
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
            for o, final in zip(objectives, values[assignment], strict=True)]
    return full, at_step


@dataclass(frozen=True)
class Arm:
    """One way of searching: a proposer (an Optuna sampler, or the hand search) and a pruning rule."""

    proposer: str
    pruning: PruningSpec = PruningSpec()

    @property
    def name(self) -> str:
        return self.proposer + ("" if self.pruning.method == "none" else f"+{self.pruning.method}")


@dataclass(frozen=True)
class Run:
    """One replayed search: after each decided trial, the compute spent so far and the relative hypervolume."""

    spent: np.ndarray
    relative: np.ndarray
    pruned: int

    def at(self, budgets: np.ndarray) -> np.ndarray:
        """Relative hypervolume with at most each budget spent (0 before the first trial ends)."""
        index = np.searchsorted(self.spent, budgets, side="right") - 1
        return np.where(index >= 0, self.relative[np.maximum(index, 0)], 0.0)

    def to_reach(self, target: float) -> float:
        """Steps spent when the relative hypervolume first reached `target` (inf: never)."""
        hit = np.flatnonzero(self.relative >= target - 1e-12)
        return float(self.spent[hit[0]]) if len(hit) else math.inf


class OptunaProposer:
    """An Optuna sampler's proposals, through a study that hears every verdict (PRUNED included)."""

    def __init__(self, table: Table, sampler: str, seed: int):
        self.choices = table.choices
        self.study = optuna.create_study(directions=list(table.objectives.values()), sampler=make_sampler(sampler, seed))
        for baseline in decide.baselines(table.choices):
            self.study.enqueue_trial(baseline.params())

    def ask(self) -> str:
        self.trial = self.study.ask()
        return Assignment(self.trial.suggest_categorical(layer_name(i), c) for i, c in enumerate(self.choices)).text

    def tell(self, values: list[float] | None) -> None:
        if values is None:
            self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(self.trial, values)


class HandSearch:
    """What a researcher would do by hand: train the baselines, take the one with the better first
    objective (val_loss), then flip one layer at a time to each of its other choices, keeping a flip
    that improves it. Passes over the layers (from a layer drawn by the seed) repeat while one improves;
    after a pass that improves nothing it proposes only its best again, and the loop stops on repeats."""

    def __init__(self, table: Table, seed: int):
        self.choices = table.choices
        self.todo = [b.text for b in decide.baselines(table.choices)]
        if not self.todo:
            raise InputError("--samplers hand: the hand search starts from a uniform baseline, and no activation "
                             "is allowed in every layer of this table")
        self.sign = 1.0 if next(iter(table.objectives.values())) == "minimize" else -1.0  # the first objective
        self.seen: set[str] = set()
        self.best, self.best_value = "", math.inf
        self.layers_left: list[int] = []
        self.passes, self.improved = 0, False
        self.rng = np.random.default_rng(seed)

    def ask(self) -> str:
        self.asked = self.best  # unless there is something new to try
        while not self.todo:
            if not self.layers_left:
                if self.passes and not self.improved:
                    return self.asked  # a local optimum: its best again
                first = int(self.rng.integers(len(self.choices)))
                self.layers_left = [(first + i) % len(self.choices) for i in range(len(self.choices))]
                self.passes, self.improved = self.passes + 1, False
            i, current = self.layers_left.pop(0), list(Assignment.parse(self.best))
            flips = (Assignment(current[:i] + [a] + current[i + 1:]).text for a in self.choices[i] if a != current[i])
            self.todo = [f for f in flips if f not in self.seen]
        self.asked = self.todo.pop(0)
        return self.asked

    def tell(self, values: list[float] | None) -> None:
        self.seen.add(self.asked)
        if values is not None and self.sign * values[0] < self.best_value:
            self.best, self.best_value, self.improved = self.asked, self.sign * values[0], True


def replay(table: Table, arm: Arm, seed: int, budget_steps: int | None = None, n_trials: int | None = None) -> Run:
    """One search of `arm` against the table until it spends `budget_steps` (or decides `n_trials`, or
    stops as the live search would: every assignment decided, or only repeats proposed)."""
    check_arm(table, arm)
    proposer = HandSearch(table, seed) if arm.proposer == HAND else OptunaProposer(table, arm.proposer, seed)
    baselines = {b.text for b in decide.baselines(table.choices)}
    full = table.full_steps or 1  # without curves, compute is counted in trials
    known: dict[str, tuple[int, list[float] | None]] = {}  # as the study's: number, values (None: pruned)
    at_rung: dict[int, list[list[float]]] = {}
    spent, curve_spent, curve_rel, complete, in_a_row, pruned = 0, [], [], [], 0, 0
    while not decide.why_stop(decided=len(known), target=n_trials or len(table.values), evaluated=len(known),
                              space_size=len(table.values), in_a_row=in_a_row, spent={"steps": spent, "device_s": 0},
                              budget={"steps": budget_steps} if budget_steps else None):
        assignment = proposer.ask()
        if (earlier := decide.repeat_of(known, assignment)) is not None:
            in_a_row += 1
            proposer.tell(earlier[1])
            continue
        in_a_row = 0
        stopped_at = _rungs(table, arm.pruning, assignment, at_rung, may_stop=assignment not in baselines)
        if stopped_at is None:
            values = table.values[assignment]
            spent += full
            complete.append(values)
        else:
            values, pruned = None, pruned + 1
            spent += stopped_at
        known[assignment] = (len(known), values)
        proposer.tell(values)
        curve_spent.append(spent)
        curve_rel.append(_relative(table, complete))
    return Run(np.array(curve_spent), np.array(curve_rel), pruned)


def check_arm(table: Table, arm: Arm) -> None:
    """InputError (one line) unless the table can replay the arm's pruning as the live search would run it."""
    if arm.pruning.method == "none":
        return
    if not table.at_step:
        raise InputError("--pruning: replaying pruning needs learning curves; give the table's steps (--steps)")
    if missing := [r for r in arm.pruning.rungs if r not in table.at_step]:
        raise InputError(f"--rungs: the table has no val_loss at step {missing[0]}; allowed: "
                         f"{', '.join(map(str, sorted(table.at_step)))}")
    if problem := decide.not_at_rung(table.objectives):  # the live search refuses such a space file alike
        raise InputError(f"--pruning {arm.pruning.method}: the table's {problem}")


def _rungs(table: Table, pruning: PruningSpec, assignment: str, at_rung: dict[int, list[list[float]]],
           may_stop: bool) -> int | None:
    """Walk the trial through the rungs as the live search does; the rung it is stopped at, or None."""
    if pruning.method == "none":
        return None
    directions = list(table.objectives.values())
    for step in pruning.rungs:
        mine = table.at_step[step][assignment]
        verdict = decide.rung_verdict(step, mine, at_rung.setdefault(step, []), directions, pruning)
        at_rung[step].append(mine)
        if may_stop and not verdict.keep:
            return step
    return None


def _relative(table: Table, complete: list[list[float]]) -> float:
    if not complete:
        return 0.0
    points = pd.DataFrame(complete, columns=list(table.objectives))
    return pareto.hypervolume(points, table.objectives, table.reference) / table.true_hypervolume


def compare(table: Table, arms: list[Arm], seeds: range, budget_steps: int | None = None,
            n_trials: int | None = None, jobs: int = 1) -> dict[str, list[Run]]:
    """arm name -> one Run per seed; `jobs` processes replay (arm, seed) pairs side by side."""
    for arm in arms:  # here, not in a pool's process, so a bad arm is one line before any work
        check_arm(table, arm)
    work = [(arm, seed) for arm in arms for seed in seeds]
    one = functools.partial(_replay_quietly, table, budget_steps=budget_steps, n_trials=n_trials)
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            done = list(pool.map(one, *zip(*work, strict=True), chunksize=max(1, len(work) // (8 * jobs))))
    else:
        done = [one(arm, seed) for arm, seed in work]
    runs: dict[str, list[Run]] = {arm.name: [] for arm in arms}
    for (arm, _), run in zip(work, done, strict=True):
        runs[arm.name].append(run)
    return runs


def _replay_quietly(table: Table, arm: Arm, seed: int, budget_steps: int | None, n_trials: int | None) -> Run:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # GP and NSGA-II warn about experimental features
    return replay(table, arm, seed, budget_steps, n_trials)


def summary(table: Table, runs: dict[str, list[Run]], targets: tuple[float, ...] = (0.9, 0.95),
            budget_steps: int | None = None) -> pd.DataFrame:
    """Per arm: the median compute (steps) to reach each target (inf: the median run never did), the
    share of runs that reached it, trials pruned, and the median steps to the last target relative to
    random search and to the hand search without pruning, where those arms ran. Where that arm's median
    run never reached the target within `budget_steps`, the ratio is a bound: "<0.25" (text)."""
    rows = []
    for name, arm_runs in runs.items():
        row = {"arm": name, "seeds": len(arm_runs), "pruned/run": float(np.mean([r.pruned for r in arm_runs]))}
        for target in targets:
            reach = np.array([r.to_reach(target) for r in arm_runs])
            row[f"compute to {target:.0%}"] = float(np.median(reach))
            row[f"reached {target:.0%}"] = float(np.isfinite(reach).mean())
        rows.append(row)
    out = pd.DataFrame(rows)
    last = f"compute to {targets[-1]:.0%}"
    for base in ("random", HAND):
        if base in set(out["arm"]):
            out[f"vs {base}"] = [_ratio(mine, float(out.loc[out["arm"] == base, last].iloc[0]), budget_steps)
                                 for mine in out[last]]
    return out


def _ratio(mine: float, base: float, budget_steps: int | None) -> float | str:
    if math.isfinite(base):
        return mine / base
    if math.isfinite(mine) and budget_steps:  # the base needs more than the budget: the ratio is below this
        return f"<{math.ceil(100 * mine / budget_steps) / 100:g}"  # rounded up: a bound must not overstate
    return math.nan
