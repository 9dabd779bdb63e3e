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

Tables with several trainings per assignment (seed replicates): every recorded training is kept, and a
replayed query is answered with one of them drawn at random (seeded per replay run), as NAS-Bench-201
draws a seed; a replicate of an assignment (a fresh seed) draws one not drawn before. Such a table's
truth is its expected front (`analysis/expected.py`: the noise model fitted on every training), and an
arm is scored by what it would *recommend* at a handful of budgets (`score_points`): the expected front
of the noise model fitted on the trainings it has seen. At each cost level (each distinct expected value
of the cost objective), its recommendation is the candidate it predicts best on the quality objective
among those truly costing at most that level (analytic costs are known before training); the regret is
that candidate's expected quality against the best expected quality there, in the objective's units
(nats for val_loss); a run's score at a budget is the largest regret over levels. The members the arm
calls "resolved on the front" are checked against the truth: right when on the table's expected front,
or when the truth's 95% interval of its quality reaches the front's expected quality at its cost.
Arms with replicates = "auto" search with budget / (1 + share), then train what the search's
`replicates.auto_next` asks for (answered by fresh draws, each a full training of compute) until it is
content, the share is spent or the budget is.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd

from moesearch.analysis import pareto
from moesearch.assignment import Assignment, layer_name
from moesearch.errors import InputError
from moesearch.search_limits import MAX_REPEATS_IN_A_ROW
from moesearch.metrics import ANALYTIC
from moesearch.space import PruningSpec
from moesearch.supervisor import decide
from moesearch.supervisor.study import make_sampler
from moesearch.vocab import Origin, State

HAND = "hand"  # the hand search a researcher would do (`HandSearch`)
DESIGN = "design"  # tpe after the baselines and an orthogonal main-effects design (search.design = "orthogonal")
PROPOSERS = ("tpe", "gp", "nsga2", "random", "brute", HAND, DESIGN)
REPLICATES = ("off", "auto")
SHARE = 0.25  # search.replicate_share's default
DRAW_STREAM, REPLICATE_STREAM = 20, 21  # the replay's own random streams, apart from the proposers' seeds


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
    choices = [sorted(means[c].unique()) for c in layers]
    missing = [Assignment(a).text for a in itertools.product(*choices) if Assignment(a).text not in means.index]
    if missing:
        raise InputError(f"TABLE: {source} is not exhaustive: {len(missing)} of {len(missing) + len(means)} "
                         f"assignments missing (e.g. {missing[0]}); make it with a space whose sampler is 'brute'")
    values = {a: [float(v) for v in row] for a, row in means[list(objectives)].iterrows()}
    frame = _frame(done)
    full, at_step = _curves(done, steps, objectives, values) if steps is not None else (0, {})
    per_trial = _trial_curves(frame, steps, objectives) if steps is not None else {}
    trainings: dict[str, list[Training]] = {}
    for row, r in enumerate(frame.itertuples(index=False)):
        trainings.setdefault(r.assignment, []).append(Training(
            row, int(r.seed), [float(getattr(r, o)) for o in objectives], per_trial.get(int(r.trial), {})))
    quality, cost = roles(objectives)
    return Table(objectives, reference, choices, values, pareto.hypervolume(means.reset_index(), objectives, reference),
                 full, at_step, {a: tuple(t) for a, t in trainings.items()}, frame, _truth(frame, objectives),
                 quality, cost)


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


def _trial_curves(frame: pd.DataFrame, steps: pd.DataFrame, objectives: dict[str, str]) -> dict[int, dict[int, list[float]]]:
    """Trial -> step -> its objective values there (val_loss and train_loss measured as in `_curves`, the
    rest the trial's final values)."""
    rows = steps[steps["trial"].isin(set(frame["trial"]))].sort_values(["trial", "step"])
    if rows.empty:
        return {}
    full = int(rows["step"].max())
    tail = max(1, full // 10)
    rows = rows.assign(train_loss=rows.groupby("trial")["train_loss"].transform(
        lambda x: x.rolling(tail, min_periods=1).mean()))
    evals = rows[rows["val_loss"].notna() & (rows["step"] < full)]
    final = frame.set_index("trial")[list(objectives)]
    out: dict[int, dict[int, list[float]]] = {}
    for r in evals.itertuples(index=False):
        out.setdefault(int(r.trial), {})[int(r.step)] = [
            float(getattr(r, o)) if o in ("val_loss", "train_loss") else float(final.at[r.trial, o]) for o in objectives]
    return out


@dataclass(frozen=True)
class Arm:
    """One way of searching: a proposer (an Optuna sampler, the design then tpe, or the hand search), a
    pruning rule, and seed replicates after the search (off, or auto as search.replicates = "auto")."""

    proposer: str
    pruning: PruningSpec = PruningSpec()
    replicates: str = "off"

    @property
    def name(self) -> str:
        return (self.proposer + ("" if self.pruning.method == "none" else f"+{self.pruning.method}")
                + ("" if self.replicates == "off" else "+replicates"))


@dataclass(frozen=True)
class Score:
    """An arm's recommendations scored by the table's truth at each budget (compute)."""

    budgets: np.ndarray
    regret: np.ndarray  # the largest regret over cost levels of what the arm recommends there
    called: np.ndarray  # members it calls resolved on the front
    right: np.ndarray  # of them, truly on the table's expected front (within the truth's 95% interval)
    replicates: np.ndarray  # replicates trained by then
    cheapest: np.ndarray | None = None  # of the called, the lone cheapest candidate (on the front whatever the noise)


@dataclass(frozen=True)
class Run:
    """One replayed search: after each decided trial, the compute spent so far and the relative hypervolume
    (of the trainings drawn: with seed replicates in the table it may pass 1, as a lucky draw does)."""

    spent: np.ndarray
    relative: np.ndarray
    pruned: int
    score: Score | None = None
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
        self.study = optuna.create_study(directions=list(table.objectives.values()), sampler=make_sampler(sampler, seed))
        for baseline in decide.baselines(table.choices):
            self.study.enqueue_trial(baseline.params())
        if design:
            from moesearch import design as design_mod

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


def draw(table: Table, assignment: str, rng: np.random.Generator, drawn: set[int] = frozenset()) -> Training | None:
    """One of the assignment's recorded trainings at random, none of `drawn` (rows already seen: a replicate
    has a fresh seed); None when the table holds no other. A table without trainings (made by hand)
    answers with its values."""
    options = [t for t in table.trainings.get(assignment, ()) if t.row not in drawn]
    if not table.trainings:
        return Training(-1, 0, table.values[assignment], {s: v[assignment] for s, v in table.at_step.items()})
    return options[int(rng.integers(len(options)))] if options else None


def replay(table: Table, arm: Arm, seed: int, budget_steps: int | None = None, n_trials: int | None = None,
           score_points: int = 0, share: float = SHARE) -> Run:
    """One search of `arm` against the table until it spends `budget_steps` (or decides `n_trials`, or
    stops as the live search would: every assignment decided, or only repeats proposed). Each new
    assignment is answered by one of its trainings drawn at random (`draw`, seeded by `seed`).

    score_points: score the arm by the truth (`score`) at that many budgets evenly spaced up to the
    budget (or to training every assignment once); an arm with replicates "auto" searches with each
    budget / (1 + share) and replicates within the rest (`_replicate`).
    """
    check_arm(table, arm)
    if arm.proposer == HAND:
        proposer = HandSearch(table, seed)
    else:
        proposer = OptunaProposer(table, "tpe" if arm.proposer == DESIGN else arm.proposer, seed,
                                  design=arm.proposer == DESIGN)
    rng = np.random.default_rng((DRAW_STREAM, seed))
    baselines = {b.text for b in decide.baselines(table.choices)}
    full = table.full_steps or 1  # without curves, compute is counted in trials
    known: dict[str, tuple[int, list[float] | None]] = {}  # as the study's: number, values (None: pruned)
    at_rung: dict[int, list[list[float]]] = {}
    spent, curve_spent, curve_rel, complete, in_a_row, pruned = 0, [], [], [], 0, 0
    seen: list[int] = []  # rows of the trainings drawn for complete trials, in order
    while not decide.why_stop(decided=len(known), target=n_trials or len(table.values), evaluated=len(known),
                              space_size=len(table.values), in_a_row=in_a_row, spent={"steps": spent, "device_s": 0},
                              budget={"steps": budget_steps} if budget_steps else None):
        assignment = proposer.ask()
        if (earlier := decide.repeat_of(known, assignment)) is not None:
            proposer.tell(earlier[1])
            fresh = None if earlier[1] is not None or isinstance(proposer, HandSearch) else \
                decide.instead_of_pruned(known, table.choices, np.random.default_rng((seed, len(known), spent)))
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
        found = _scores(table, arm, seed, spent_at, seen, total, score_points, share)
    return Run(spent_at, np.array(curve_rel), pruned, found, tuple(seen), in_a_row >= MAX_REPEATS_IN_A_ROW)


def check_arm(table: Table, arm: Arm) -> None:
    """InputError (one line) unless the table can replay the arm's pruning as the live search would run it."""
    if arm.replicates not in REPLICATES:
        raise InputError(f"--replicates: {arm.replicates!r} is not one of them; allowed: {', '.join(REPLICATES)}")
    if arm.pruning.method == "none":
        return
    if not table.at_step:
        raise InputError("--pruning: replaying pruning needs learning curves; give the table's steps (--steps)")
    if missing := [r for r in arm.pruning.rungs if r not in table.at_step]:
        raise InputError(f"--rungs: the table has no val_loss at step {missing[0]}; allowed: "
                         f"{', '.join(map(str, sorted(table.at_step)))}")
    if problem := decide.not_at_rung(table.objectives):  # the live search refuses such a space file alike
        raise InputError(f"--pruning {arm.pruning.method}: the table's {problem}")


def _rungs(table: Table, pruning: PruningSpec, training: Training, at_rung: dict[int, list[list[float]]],
           may_stop: bool) -> int | None:
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


def budgets(total: float, points: int) -> np.ndarray:
    """The budgets an arm is scored at: `points` evenly spaced up to `total`."""
    return np.array([total * (k + 1) / points for k in range(points)])


def _scores(table: Table, arm: Arm, seed: int, spent: np.ndarray, seen: list[int], total: float, points: int,
            share: float) -> Score:
    """Score the arm at each budget: the trainings its search had drawn with at most that much spent
    (auto replicates: the search's share of it, then replicates within the rest)."""
    full = table.full_steps or 1
    at = budgets(total, points)
    regret, called, right, replicated, cheapest = [], [], [], [], []
    for k, budget in enumerate(at):
        search_budget = budget / (1 + share) if arm.replicates == "auto" else budget
        n = int(np.searchsorted(spent, search_budget + 1e-9, side="right"))
        rows = [r for r in seen[:n] if r >= 0]
        extra: list[int] = []
        if arm.replicates == "auto":
            left = budget - (spent[n - 1] if n else 0)
            extra = _replicate(table, rows, int(left // full), share, seed, np.random.default_rng((REPLICATE_STREAM, seed, k)))
        r, c, ok, lone = score(table, rows, extra)
        regret.append(r)
        called.append(c)
        right.append(ok)
        replicated.append(len(extra))
        cheapest.append(lone)
    return Score(at, np.array(regret), np.array(called), np.array(right), np.array(replicated), np.array(cheapest))


def trials_frame(table: Table, rows: list[int], replicates: list[int] = ()) -> pd.DataFrame:
    """The trials an arm has seen, as `results.load_trials` gives them: the search's (origin search)
    in order, then its replicates (origin verify), numbered from 0."""
    frame = table.frame.iloc[list(rows) + list(replicates)].copy()
    frame["trial"] = np.arange(len(frame))
    frame["origin"] = [Origin.SEARCH.value] * len(rows) + [Origin.VERIFY.value] * len(replicates)
    return frame.reset_index(drop=True)


def _replicate(table: Table, rows: list[int], most: int, share: float, seed: int,
               rng: np.random.Generator) -> list[int]:
    """The replicates search.replicates = "auto" trains after the search saw `rows` (at most `most`),
    each answered by a training of its assignment not drawn before. When `auto_next` asks for an
    assignment whose every training the table has already given, the most open one it can answer is
    taken by the same rule (inside noise, p_front nearest 1/2, fewer trainings first)."""
    from moesearch.analysis import expected
    from moesearch.supervisor import replicates

    extra: list[int] = []
    while len(extra) < most:
        trials = trials_frame(table, rows, extra)
        drawn = set(rows) | set(extra)
        answerable = {a for a, ts in table.trainings.items() if any(t.row not in drawn for t in ts)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pick = replicates.auto_next(trials, share, seed + 1)
            if pick is None:
                break
            assignment = pick[0]
            if assignment not in answerable:
                found = expected.expected_front(trials)
                front = found[0] if found is not None else pd.DataFrame(columns=["assignment"])
                open_ = front[(front["trained"] > 0) & (front["verdict"] == "inside noise")
                              & front["assignment"].isin(answerable)] if len(front) else front
                if open_.empty:
                    break
                assignment = open_.assign(gap=(open_["p_front"] - 0.5).abs()).sort_values(
                    ["gap", "trained"]).iloc[0]["assignment"]
        extra.append(draw(table, assignment, rng, drawn).row)
    return extra


def score(table: Table, rows: list[int], replicates: list[int] = ()) -> tuple[float, int, int, int]:
    """What an arm that saw these trainings recommends, scored by the table's truth: (the largest regret
    over cost levels, members it calls resolved on the front, of them truly on the expected front, of
    them the lone cheapest candidate, which is on every front whatever the noise).

    Its recommendation at a level: the candidate it predicts best on the quality objective among those
    whose true cost is at most the level. Too few trainings for a model: the best it observed instead.
    """
    from moesearch.analysis import expected

    if table.truth is None:
        raise InputError("scoring by the truth needs a noise model of the table, and it has too few trials")
    trials = trials_frame(table, rows, replicates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = expected.expected_front(trials, table.objectives) if len(trials) else None
    q_sign = 1.0 if table.objectives[table.quality] == "minimize" else -1.0
    if found is None:  # no model yet: the best observed
        predicted = trials.groupby("assignment")[table.quality].mean() * q_sign
        return regret(table, predicted), 0, 0, 0
    arm = found[0].set_index("assignment")
    called = arm.index[arm["verdict"] == "resolved on the front"]
    on = truly_on_front(table).reindex(called, fill_value=False)
    return regret(table, arm[table.quality] * q_sign), len(called), int(on.sum()), int(called.isin(lone_cheapest(table)).sum())


def lone_cheapest(table: Table) -> list[str]:
    """The candidate alone at the lowest cost, if one is: on the front in every draw, so calling it
    resolved says nothing about the noise."""
    if table.cost is None:
        return []
    _, c = _levels(table)
    cheapest = c.index[c == c.min()]
    return list(cheapest) if len(cheapest) == 1 else []


def _levels(table: Table) -> tuple[pd.Series, pd.Series]:
    """The truth's quality and cost per candidate, both signed so that less is better (cost 0 without one)."""
    truth = table.truth
    q = truth[table.quality] * (1.0 if table.objectives[table.quality] == "minimize" else -1.0)
    if table.cost is None:
        return q, pd.Series(0.0, index=truth.index)
    return q, truth[table.cost] * (1.0 if table.objectives[table.cost] == "minimize" else -1.0)


def regret(table: Table, predicted: pd.Series) -> float:
    """The largest regret over cost levels of recommending, at each, the candidate with the best
    `predicted` quality (signed: less is better; by assignment, NaN or missing: not a candidate) among
    those truly costing at most the level. A level without a candidate counts its worst one."""
    q, c = _levels(table)
    order = np.lexsort((q.to_numpy(), c.to_numpy()))  # by cost, then by true quality
    q_s, c_s = q.to_numpy()[order], c.to_numpy()[order]
    p_s = predicted.reindex(q.index).to_numpy(float)[order]
    p_s = np.where(np.isnan(p_s), np.inf, p_s)
    best = np.minimum.accumulate(q_s)
    worst = np.maximum.accumulate(q_s)
    pick = np.zeros(len(q_s), dtype=int)  # the running argmin of the prediction
    for i in range(1, len(q_s)):
        pick[i] = i if p_s[i] < p_s[pick[i - 1]] else pick[i - 1]
    last = np.searchsorted(c_s, np.unique(c_s), side="right") - 1  # each level's last candidate
    chosen = np.where(np.isfinite(p_s[pick[last]]), q_s[pick[last]], worst[last])
    return float(np.max(chosen - best[last]))


def truly_on_front(table: Table) -> pd.Series:
    """Per candidate: on the table's expected front, or the truth's 95% interval of its quality reaches the
    best expected quality at its cost (the tolerance a resolved member is judged with)."""
    q, c = _levels(table)
    minimize = table.objectives[table.quality] == "minimize"
    reach = table.truth[f"{table.quality}_lo"] if minimize else -table.truth[f"{table.quality}_hi"]
    order = np.lexsort((q.to_numpy(), c.to_numpy()))
    best_sorted = np.minimum.accumulate(q.to_numpy()[order])
    c_sorted = c.to_numpy()[order]
    best_at = best_sorted[np.searchsorted(c_sorted, c.to_numpy(), side="right") - 1]
    return table.truth["expected_front"].astype(bool) | pd.Series(reach.to_numpy() <= best_at + 1e-12, index=q.index)


def compare(table: Table, arms: list[Arm], seeds: range, budget_steps: int | None = None,
            n_trials: int | None = None, jobs: int = 1, score_points: int = 0, share: float = SHARE) -> dict[str, list[Run]]:
    """arm name -> one Run per seed; `jobs` processes replay (arm, seed) pairs side by side. With
    `score_points`, every run is also scored by the table's truth at that many budgets (`replay`)."""
    for arm in arms:  # here, not in a pool's process, so a bad arm is one line before any work
        check_arm(table, arm)
    if score_points and table.truth is None:
        raise InputError("--score-points: the table has too few trials for a noise model, so no truth to score by; "
                         "allowed: --score-points 0 (and --replicates off)")
    if not score_points and any(arm.replicates != "off" for arm in arms):
        raise InputError("--replicates auto: replicates change what an arm recommends, not its search, so they are "
                         "scored by the truth only; allowed: --score-points 1 or more")
    work = [(arm, seed) for arm in arms for seed in seeds]
    one = functools.partial(_replay_quietly, table, budget_steps=budget_steps, n_trials=n_trials,
                            score_points=score_points, share=share)
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            done = list(pool.map(one, *zip(*work, strict=True), chunksize=max(1, len(work) // (8 * jobs))))
    else:
        done = [one(arm, seed) for arm, seed in work]
    runs: dict[str, list[Run]] = {arm.name: [] for arm in arms}
    for (arm, _), run in zip(work, done, strict=True):
        runs[arm.name].append(run)
    return runs


def _replay_quietly(table: Table, arm: Arm, seed: int, budget_steps: int | None, n_trials: int | None,
                    score_points: int = 0, share: float = SHARE) -> Run:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # GP and NSGA-II warn about experimental features
    return replay(table, arm, seed, budget_steps, n_trials, score_points, share)


def summary(table: Table, runs: dict[str, list[Run]], targets: tuple[float, ...] = (0.9, 0.95),
            budget_steps: int | None = None) -> pd.DataFrame:
    """Per arm: the median compute (steps) to reach each target (inf: the median run never did), the
    share of runs that reached it, trials pruned, the share of runs that stalled on repeats, and the median steps to the last target relative to
    random search and to the hand search without pruning, where those arms ran. Where that arm's median
    run never reached the target within `budget_steps`, the ratio is a bound: "<0.25" (text)."""
    rows = []
    for name, arm_runs in runs.items():
        row = {"arm": name, "seeds": len(arm_runs), "pruned/run": float(np.mean([r.pruned for r in arm_runs])),
               "stalled": float(np.mean([r.stalled for r in arm_runs]))}
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


def truth_summary(runs: dict[str, list[Run]], target: float = 0.005) -> pd.DataFrame:
    """Per arm, from the runs' truth scores: the median over seeds of the largest regret over cost levels at
    each budget (a column per budget), the least budget at which that median is at most `target` (inf:
    none), and at the last budget the members called resolved on the front per run, the share of them
    truly on the expected front (pooled over seeds; NaN: none called), the share of them that is the lone
    cheapest candidate (trivially on it), the share right among the others, and the replicates per run."""
    rows = []
    for name, arm_runs in runs.items():
        scored = [r.score for r in arm_runs if r.score is not None]
        if not scored:
            continue
        at = scored[0].budgets
        median = np.median(np.stack([s.regret for s in scored]), axis=0)
        reach = np.flatnonzero(median <= target + 1e-12)
        called = sum(int(s.called[-1]) for s in scored)
        row = {"arm": name, "seeds": len(scored)}
        row.update({f"{b:,.0f}": m for b, m in zip(at, median, strict=True)})
        row[f"to <={target:g}"] = float(at[reach[0]]) if len(reach) else math.inf
        row["called/run"] = called / len(scored)
        row["right"] = sum(int(s.right[-1]) for s in scored) / called if called else math.nan
        lone = sum(int(s.cheapest[-1]) for s in scored if s.cheapest is not None)
        row["lone cheapest"] = lone / called if called else math.nan
        row["right beyond it"] = ((sum(int(s.right[-1]) for s in scored) - lone) / (called - lone)
                                  if called > lone else math.nan)
        row["replicates/run"] = float(np.mean([s.replicates[-1] for s in scored]))
        rows.append(row)
    return pd.DataFrame(rows)


def truth_rows(runs: dict[str, list[Run]], seeds: range) -> pd.DataFrame:
    """Every score: arm, seed, budget, regret, called, right, lone_cheapest, replicates (the --out file's
    -truth.csv)."""
    return pd.DataFrame([{"arm": arm, "seed": seed, "budget": float(b), "regret": float(r), "called": int(c),
                          "right": int(ok), "lone_cheapest": int(lone), "replicates": int(n)}
                         for arm, arm_runs in runs.items() for seed, run in zip(seeds, arm_runs, strict=True)
                         if run.score is not None
                         for b, r, c, ok, lone, n in zip(run.score.budgets, run.score.regret, run.score.called,
                                                         run.score.right, run.score.cheapest, run.score.replicates,
                                                         strict=True)])
