"""Arms replayed: one search of an arm, and many arms compared. An arm (a proposer, a pruning rule, seed
replicates) runs the live search's decisions (`decide`) against a table: hypervolume relative to the
table's true front against the compute spent, in optimizer steps, pruned trials counted to their rung.

A table with an objective measured only after the last step (`decide.not_at_rung`) is refused for
pruning, as such a space file is. Light: optuna and pandas; no torch (unless the GP sampler is asked for).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd
from tqdm.auto import tqdm

from moesearch.analysis import pareto
from moesearch.core.assignment import Assignment, layer_name
from moesearch.core.errors import InputError
from moesearch.core.sections import PruningSpec
from moesearch.replay import truth
from moesearch.replay.table import Table, Training, draw
from moesearch.supervisor import decide
from moesearch.supervisor.samplers import make_sampler

if TYPE_CHECKING:
    from moesearch.replay.checkpoint import Checkpoint

HAND = "hand"  # the hand search a researcher would do (`HandSearch`)
DESIGN = "design"  # tpe after the baselines and an orthogonal main-effects design (search.design = "orthogonal")
PROPOSERS = ("tpe", "gp", "nsga2", "random", "brute", HAND, DESIGN)
REPLICATES = ("off", "auto")
SHARE = 0.25  # search.replicate_share's default
DRAW_STREAM = 20  # the draws' own random stream, apart from the proposers' seeds


@dataclass(frozen=True)
class Arm:
    """One way of searching: a proposer (an Optuna sampler, the design then tpe, or the hand search), a
    pruning rule, and seed replicates after the search (off, or auto as search.replicates = "auto")."""

    proposer: str
    pruning: PruningSpec = PruningSpec()
    replicates: str = "off"

    @property
    def name(self) -> str:
        return (
            self.proposer
            + ("" if self.pruning.method == "none" else f"+{self.pruning.method}")
            + ("" if self.replicates == "off" else "+replicates")
        )


@dataclass(frozen=True)
class Run:
    """One replayed search: after each decided trial, the compute spent so far and the relative hypervolume
    (of the trainings drawn: with seed replicates in the table it may pass 1, as a lucky draw does)."""

    spent: np.ndarray
    relative: np.ndarray
    pruned: int
    score: truth.Score | None = None
    drawn: tuple[int, ...] = ()  # rows of `Table.frame` that answered each decided trial (-1: pruned or by hand)
    stalled: bool = False  # ended because the proposer offered only decided assignments (decide.why_stop)

    def at(self, budgets: np.ndarray) -> np.ndarray:
        """Relative hypervolume with at most each budget spent (0 before the first trial ends)."""
        index = np.searchsorted(self.spent, budgets, side="right") - 1
        return np.where(index >= 0, self.relative[np.maximum(index, 0)], 0.0)

    def to_reach(self, target: float) -> float:
        """Steps spent when the relative hypervolume first reached `target` (inf: never)."""
        hit = np.flatnonzero(self.relative >= target - 1e-12)
        return float(self.spent[hit[0]]) if len(hit) else math.inf


class OptunaProposer:
    """An Optuna sampler's proposals, through a study that hears every verdict (PRUNED included); with
    `design`, the orthogonal main-effects design is queued after the baselines, as search.design does."""

    def __init__(self, table: Table, sampler: str, seed: int, design: bool = False):
        self.choices = table.choices
        self.study = optuna.create_study(
            directions=list(table.objectives.values()), sampler=make_sampler(sampler, seed)
        )
        for baseline in decide.baselines(table.choices):
            self.study.enqueue_trial(baseline.params())
        if design:
            from moesearch.core import design as design_mod

            for run in design_mod.runs(table.choices):
                self.study.enqueue_trial(Assignment(run).params(), skip_if_exists=True)

    def ask(self) -> str:
        self.trial = self.study.ask()
        return Assignment(self.trial.suggest_categorical(layer_name(i), c) for i, c in enumerate(self.choices)).text

    def tell(self, values: list[float] | None) -> None:
        if values is None:
            self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(self.trial, values)

    def queue(self, assignment: Assignment) -> None:
        """The next proposal, chosen outside the sampler."""
        self.study.enqueue_trial(assignment.params())


class HandSearch:
    """What a researcher would do by hand: train the baselines, take the one with the better first
    objective (val_loss), then flip one layer at a time to each of its other choices, keeping a flip
    that improves it. Passes over the layers (from a layer drawn by the seed) repeat while one improves;
    after a pass that improves nothing it proposes only its best again, and the loop stops on repeats."""

    def __init__(self, table: Table, seed: int):
        self.choices = table.choices
        self.todo = [b.text for b in decide.baselines(table.choices)]
        if not self.todo:
            raise InputError(
                "--samplers hand: the hand search starts from a uniform baseline, and no activation "
                "is allowed in every layer of this table"
            )
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
            flips = (Assignment(current[:i] + [a] + current[i + 1 :]).text for a in self.choices[i] if a != current[i])
            self.todo = [f for f in flips if f not in self.seen]
        self.asked = self.todo.pop(0)
        return self.asked

    def tell(self, values: list[float] | None) -> None:
        self.seen.add(self.asked)
        if values is not None and self.sign * values[0] < self.best_value:
            self.best, self.best_value, self.improved = self.asked, self.sign * values[0], True


def replay(
    table: Table,
    arm: Arm,
    seed: int,
    budget_steps: int | None = None,
    n_trials: int | None = None,
    score_points: int = 0,
    share: float = SHARE,
) -> Run:
    """One search of `arm` against the table until it spends `budget_steps` (or decides `n_trials`, or
    stops as the live search would: every assignment decided, or only repeats proposed). Each new
    assignment is answered by one of its trainings drawn at random (`draw`, seeded by `seed`).

    score_points: score the arm by the truth (`truth.scores`) at that many budgets evenly spaced up to the
    budget (or to training every assignment once); an arm with replicates "auto" searches with each
    budget / (1 + share) and replicates within the rest (`truth.replicate`).
    """
    check_arm(table, arm)
    if arm.proposer == HAND:
        proposer = HandSearch(table, seed)
    else:
        proposer = OptunaProposer(
            table, "tpe" if arm.proposer == DESIGN else arm.proposer, seed, design=arm.proposer == DESIGN
        )
    rng = np.random.default_rng((DRAW_STREAM, seed))
    baselines = {b.text for b in decide.baselines(table.choices)}
    full = table.full_steps or 1  # without curves, compute is counted in trials
    known: dict[str, tuple[int, list[float] | None]] = {}  # as the study's: number, values (None: pruned)
    at_rung: dict[int, list[list[float]]] = {}
    spent, curve_spent, curve_rel, complete, in_a_row, pruned = 0, [], [], [], 0, 0
    seen: list[int] = []  # rows of the trainings drawn for complete trials, in order
    while not decide.why_stop(
        decided=len(known),
        target=n_trials or len(table.values),
        evaluated=len(known),
        space_size=len(table.values),
        in_a_row=in_a_row,
        spent={"steps": spent, "device_s": 0},
        budget={"steps": budget_steps} if budget_steps else None,
    ):
        assignment = proposer.ask()
        if (earlier := decide.repeat_of(known, assignment)) is not None:
            proposer.tell(earlier[1])
            fresh = (
                None
                if earlier[1] is not None or isinstance(proposer, HandSearch)
                else decide.instead_of_pruned(known, table.choices, np.random.default_rng((seed, len(known), spent)))
            )
            if fresh is None:
                in_a_row += 1
            else:  # as the live search: the sampler cannot learn from a pruned trial, so a random one goes next
                proposer.queue(fresh)
            continue
        in_a_row = 0
        training = draw(table, assignment, rng)
        stopped_at = _rungs(table, arm.pruning, training, at_rung, may_stop=assignment not in baselines)
        if stopped_at is None:
            values = training.values
            spent += full
            complete.append(values)
            seen.append(training.row)
        else:
            values, pruned = None, pruned + 1
            spent += stopped_at
            seen.append(-1)  # pruned: no final values for the model
        known[assignment] = (len(known), values)
        proposer.tell(values)
        curve_spent.append(spent)
        curve_rel.append(_relative(table, complete))
    spent_at = np.array(curve_spent)
    found = None
    if score_points:
        total = budget_steps or (n_trials or len(table.values)) * full
        found = truth.scores(table, arm.replicates == "auto", seed, spent_at, seen, total, score_points, share)
    return Run(spent_at, np.array(curve_rel), pruned, found, tuple(seen), in_a_row >= decide.MAX_REPEATS_IN_A_ROW)


def check_arm(table: Table, arm: Arm) -> None:
    """InputError (one line) unless the table can replay the arm's pruning as the live search would run it."""
    if arm.replicates not in REPLICATES:
        raise InputError(f"--replicates: {arm.replicates!r} is not one of them; allowed: {', '.join(REPLICATES)}")
    if arm.pruning.method == "none":
        return
    if not table.at_step:
        raise InputError("--pruning: replaying pruning needs learning curves; give the table's steps (--steps)")
    if missing := [r for r in arm.pruning.rungs if r not in table.at_step]:
        raise InputError(
            f"--rungs: the table has no val_loss at step {missing[0]}; allowed: "
            f"{', '.join(map(str, sorted(table.at_step)))}"
        )
    if problem := decide.not_at_rung(table.objectives):  # the live search refuses such a space file alike
        raise InputError(f"--pruning {arm.pruning.method}: the table's {problem}")


def _rungs(
    table: Table, pruning: PruningSpec, training: Training, at_rung: dict[int, list[list[float]]], may_stop: bool
) -> int | None:
    """Walk the trial through the rungs as the live search does; the rung it is stopped at, or None."""
    if pruning.method == "none":
        return None
    directions = list(table.objectives.values())
    for step in pruning.rungs:
        mine = training.at_step[step]
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


def compare(
    table: Table,
    arms: list[Arm],
    seeds: range,
    budget_steps: int | None = None,
    n_trials: int | None = None,
    jobs: int = 1,
    score_points: int = 0,
    share: float = SHARE,
    progress: bool = False,
    checkpoint: Checkpoint | None = None,
) -> dict[str, list[Run]]:
    """arm name -> one Run per seed; `jobs` processes replay (arm, seed) pairs side by side. With
    `score_points`, every run is also scored by the table's truth at that many budgets (`replay`);
    `progress` shows a bar over the (arm, seed) runs (a hundred seeds of many arms take hours);
    `checkpoint` keeps each run as it ends and skips the runs it already holds."""
    for arm in arms:  # here, not in a pool's process, so a bad arm is one line before any work
        check_arm(table, arm)
    if score_points and table.truth is None:
        raise InputError(
            "--score-points: the table has too few trials for a noise model, so no truth to score by; "
            "allowed: --score-points 0 (and --replicates off)"
        )
    if not score_points and any(arm.replicates != "off" for arm in arms):
        raise InputError(
            "--replicates auto: replicates change what an arm recommends, not its search, so they are "
            "scored by the truth only; allowed: --score-points 1 or more"
        )
    if checkpoint is not None:
        checkpoint.check(table, budget_steps, n_trials, score_points, share)
    done = {(a.name, s): run for a in arms for s in seeds if checkpoint and (run := checkpoint.kept(a, s))}
    work = [(arm, seed) for arm in arms for seed in seeds if (arm.name, seed) not in done]
    how = {"budget_steps": budget_steps, "n_trials": n_trials, "score_points": score_points, "share": share}
    total = len(arms) * len(seeds)
    bar = tqdm(
        total=total,
        initial=total - len(work),
        desc="replay",
        unit="run",
        disable=None if progress else True,  # None: off unless a tty
        dynamic_ncols=True,
    )
    with bar:
        if jobs > 1 and len(work) > 1:
            # the table goes to each process once; runs are kept in the order they end, so a stop loses
            # only the runs under way
            pool = ProcessPoolExecutor(jobs, initializer=_hold, initargs=(table,))
            try:
                futures = {pool.submit(_replay_held, arm, seed, **how): (arm, seed) for arm, seed in work}
                for future in as_completed(futures):
                    arm, seed = futures[future]
                    done[arm.name, seed] = _keep(bar, checkpoint, arm, seed, future.result())
            finally:
                pool.shutdown(cancel_futures=True)  # after an error, not the hours of runs still queued
        else:
            for arm, seed in work:
                done[arm.name, seed] = _keep(bar, checkpoint, arm, seed, _replay_quietly(table, arm, seed, **how))
    return {arm.name: [done[arm.name, seed] for seed in seeds] for arm in arms}


def _keep(bar: tqdm, checkpoint: Checkpoint | None, arm: Arm, seed: int, run: Run) -> Run:
    if checkpoint is not None:
        checkpoint.add(arm, seed, run)
    bar.update()
    return run


_held: Table | None = None  # a pool process's copy of the table (`_hold`)


def _hold(table: Table) -> None:
    from threadpoolctl import threadpool_limits

    global _held
    _held = table
    # one thread each: the pool already has a process per core. With every process's threads fighting over
    # the cores, the noise model's small SVDs (BLAS) ran 5-10x slower, and so did a gp run (torch). The
    # limit reaches the libraries loaded now, torch's OpenMP too if it was imported before the fork; torch
    # imported later (gp's first run) reads OMP_NUM_THREADS
    threadpool_limits(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def _replay_held(arm: Arm, seed: int, **how) -> Run:
    assert _held is not None, "set by the pool's initializer"
    return _replay_quietly(_held, arm, seed, **how)


def _replay_quietly(
    table: Table,
    arm: Arm,
    seed: int,
    budget_steps: int | None,
    n_trials: int | None,
    score_points: int = 0,
    share: float = SHARE,
) -> Run:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # GP and NSGA-II warn about experimental features
    return replay(table, arm, seed, budget_steps, n_trials, score_points, share)


def summary(
    table: Table, runs: dict[str, list[Run]], targets: tuple[float, ...] = (0.9, 0.95), budget_steps: int | None = None
) -> pd.DataFrame:
    """Per arm: the median compute (steps) to reach each target (inf: the median run never did), the
    share of runs that reached it, trials pruned, the share of runs that stalled on repeats, and the
    median steps to the last target relative to random search and to the hand search without pruning,
    where those arms ran. Where that arm's median run never reached the target within `budget_steps`,
    the ratio is a bound: "<0.25" (text)."""
    rows = []
    for name, arm_runs in runs.items():
        row = {
            "arm": name,
            "seeds": len(arm_runs),
            "pruned/run": float(np.mean([r.pruned for r in arm_runs])),
            "stalled": float(np.mean([r.stalled for r in arm_runs])),
        }
        for target in targets:
            reach = np.array([r.to_reach(target) for r in arm_runs])
            row[f"compute to {target:.0%}"] = float(np.median(reach))
            row[f"reached {target:.0%}"] = float(np.isfinite(reach).mean())
        rows.append(row)
    out = pd.DataFrame(rows)
    last = f"compute to {targets[-1]:.0%}"
    for base in ("random", HAND):
        if base in set(out["arm"]):
            out[f"vs {base}"] = [
                _ratio(mine, float(out.loc[out["arm"] == base, last].iloc[0]), budget_steps) for mine in out[last]
            ]
    return out


def _ratio(mine: float, base: float, budget_steps: int | None) -> float | str:
    if math.isfinite(base):
        return mine / base
    if math.isfinite(mine) and budget_steps:  # the base needs more than the budget: the ratio is below this
        return f"<{math.ceil(100 * mine / budget_steps) / 100:g}"  # rounded up: a bound must not overstate
    return math.nan
