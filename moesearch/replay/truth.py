"""An arm scored by the truth: what it would *recommend*, against the table's expected front.

At a handful of budgets (`budgets`), the expected front of the noise model fitted on the trainings the
arm has seen. At each cost level (each distinct expected value of the cost objective), its
recommendation is the candidate it predicts best on the quality objective among those truly costing at
most that level (analytic costs are known before training); the regret is that candidate's expected
quality against the best expected quality there, in the objective's units (nats for val_loss); a run's
score at a budget is the largest regret over levels. The members the arm calls "resolved on the front"
are checked against the truth: right when on the table's expected front, or when the truth's 95%
interval of its quality reaches the front's expected quality at its cost; strictly on, without that
tolerance. Both count the lone cheapest candidate, which is on every front whatever the noise.

Arms with replicates = "auto" search with budget / (1 + share), then train what the search's
`replicates.auto_next` asks for (answered by fresh draws, each a full training of compute) until it is
content, the share is spent or the budget is.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from moesearch.core.errors import InputError
from moesearch.core.trial import Origin, State
from moesearch.replay.table import Table, draw

if TYPE_CHECKING:
    from moesearch.replay.arms import Run

REPLICATE_STREAM = 21  # the replicates' own random stream, apart from the search's draws and the proposers' seeds


@dataclass(frozen=True)
class Score:
    """An arm's recommendations scored by the table's truth at each budget (compute)."""

    budgets: np.ndarray
    regret: np.ndarray  # the largest regret over cost levels of what the arm recommends there
    called: np.ndarray  # members it calls resolved on the front
    right: np.ndarray  # of them, truly on the table's expected front (within the truth's 95% interval)
    replicates: np.ndarray  # replicates trained by then
    cheapest: np.ndarray  # of the called, the lone cheapest candidate (on the front whatever the noise)
    on_front: np.ndarray  # of the called, on the table's expected front itself (no tolerance)


def budgets(total: float, points: int) -> np.ndarray:
    """The budgets an arm is scored at: `points` evenly spaced up to `total`."""
    return np.array([total * (k + 1) / points for k in range(points)])


def scores(
    table: Table, auto: bool, seed: int, spent: np.ndarray, seen: list[int], total: float, points: int, share: float
) -> Score:
    """Score a replayed search at each budget: the trainings it had drawn with at most that much spent
    (auto replicates: the search's share of it, then replicates within the rest)."""
    full = table.full_steps or 1
    at = budgets(total, points)
    regret, called, right, replicated, cheapest, on_front = [], [], [], [], [], []
    for k, budget in enumerate(at):
        search_budget = budget / (1 + share) if auto else budget
        n = int(np.searchsorted(spent, search_budget + 1e-9, side="right"))
        rows = [r for r in seen[:n] if r >= 0]
        extra: list[int] = []
        if auto:
            left, pruned = budget - (spent[n - 1] if n else 0), n - len(rows)
            rng = np.random.default_rng((REPLICATE_STREAM, seed, k))
            extra = replicate(table, rows, int(left // full), share, rng, pruned)
        r, c, ok, lone, strict = score(table, rows, extra)
        regret.append(r)
        called.append(c)
        right.append(ok)
        replicated.append(len(extra))
        cheapest.append(lone)
        on_front.append(strict)
    return Score(
        at,
        np.array(regret),
        np.array(called),
        np.array(right),
        np.array(replicated),
        np.array(cheapest),
        np.array(on_front),
    )


def replicate(
    table: Table, rows: list[int], most: int, share: float, rng: np.random.Generator, pruned: int = 0
) -> list[int]:
    """The replicates search.replicates = "auto" trains after the search saw `rows` and pruned `pruned`
    more (which count toward the share, as the live search counts them) (at most `most`),
    each answered by a training of its assignment not drawn before, of the seed `auto_next` asks for where
    the table has it (under common random numbers the seed is what makes a replicate a comparison; the
    table's seeds after its first count as fresh ones). When `auto_next` asks for an
    assignment whose every training the table has already given, the most open one it can answer is
    taken by the same rule (inside noise, p_front nearest 1/2, fewer trainings first)."""
    from moesearch.analysis import expected
    from moesearch.supervisor import replicates

    extra: list[int] = []
    while len(extra) < most:
        trials = trials_frame(table, rows, extra, pruned)
        drawn = set(rows) | set(extra)
        answerable = {a for a, ts in table.trainings.items() if any(t.row not in drawn for t in ts)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pick = replicates.auto_next(trials, share, first_seed=int(table.frame["seed"].min()) + 1)
            if pick is None:
                break
            assignment = pick[0]
            if assignment not in answerable:
                found = expected.expected_front(trials)
                front = found[0] if found is not None else pd.DataFrame(columns=["assignment"])
                open_ = (
                    front[
                        (front["trained"] > 0)
                        & front["verdict"].isin(expected.UNSETTLED)
                        & front["assignment"].isin(answerable)
                    ]
                    if len(front)
                    else front
                )
                if open_.empty:
                    break
                assignment = (
                    open_.assign(gap=(open_["p_front"] - 0.5).abs())
                    .sort_values(["gap", "trained"])
                    .iloc[0]["assignment"]
                )
        extra.append(draw(table, assignment, rng, drawn, seed=pick[1]).row)
    return extra


def trials_frame(table: Table, rows: list[int], replicates: list[int] = (), pruned: int = 0) -> pd.DataFrame:
    """The trials an arm has seen, as `results.load_trials` gives them: the search's (origin search)
    in order, its replicates (origin verify), then `pruned` stand-ins for its pruned trials (state PRUNED,
    no values: only counted), numbered from 0."""
    frame = table.frame.iloc[list(rows) + list(replicates) + [0] * pruned].copy()
    frame["trial"] = np.arange(len(frame))
    frame["origin"] = (
        [Origin.SEARCH.value] * len(rows) + [Origin.VERIFY.value] * len(replicates) + [Origin.SEARCH.value] * pruned
    )
    if pruned:
        frame.iloc[-pruned:, frame.columns.get_loc("state")] = State.PRUNED.value
        frame.iloc[-pruned:, [frame.columns.get_loc(o) for o in table.objectives]] = np.nan
    return frame.reset_index(drop=True)


def score(table: Table, rows: list[int], replicates: list[int] = ()) -> tuple[float, int, int, int, int]:
    """What an arm that saw these trainings recommends, scored by the table's truth: (the largest regret
    over cost levels, members it calls resolved on the front, of them truly on the expected front, of
    them the lone cheapest candidate, which is on every front whatever the noise, of them on the
    expected front itself, without the tolerance).

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
        return regret(table, predicted), 0, 0, 0, 0
    arm = found[0].set_index("assignment")
    called = arm.index[arm["verdict"] == "resolved on the front"]
    on = truly_on_front(table).reindex(called, fill_value=False)
    return (
        regret(table, arm[table.quality] * q_sign),
        len(called),
        int(on.sum()),
        int(called.isin(lone_cheapest(table)).sum()),
        int(table.truth["expected_front"].reindex(called, fill_value=False).astype(bool).sum()),
    )


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
    p = predicted.reindex(q.index).to_numpy(float)
    p = np.where(np.isnan(p), np.inf, p)
    order = np.lexsort((p, c.to_numpy()))  # by cost, then by the prediction: a tie never peeks at the truth
    q_s, c_s, p_s = q.to_numpy()[order], c.to_numpy()[order], p[order]
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


def truth_summary(runs: dict[str, list[Run]], target: float = 0.005, base: str = "tpe") -> pd.DataFrame:
    """Per arm, from the runs' truth scores: the median over seeds of the largest regret over cost levels at
    each budget (a column per budget), the least budget from which that median stays at most `target`
    (inf: none) with its 95% interval over seeds, that budget relative to the `base` arm's (where it ran) with
    its interval, and at the last budget the members called resolved on the front per run, the share of them
    truly on the expected front (pooled over seeds; NaN: none called), the share of them on it without the
    tolerance, the share of them that is the lone cheapest candidate (trivially on it), the share right
    among the others, and the replicates per run."""
    regrets = {
        name: np.stack([r.score.regret for r in arm_runs if r.score is not None])
        for name, arm_runs in runs.items()
        if any(r.score is not None for r in arm_runs)
    }
    rows = []
    for name, regret in regrets.items():
        scored = [r.score for r in runs[name] if r.score is not None]
        at = scored[0].budgets
        called = sum(int(s.called[-1]) for s in scored)
        row = {"arm": name, "seeds": len(scored)}
        row.update({f"{b:,.0f}": m for b, m in zip(at, np.median(regret, axis=0), strict=True)})
        row.update(to_target(regret, regrets.get(base), at, target, base))
        row["called/run"] = called / len(scored)
        row["right"] = sum(int(s.right[-1]) for s in scored) / called if called else math.nan
        on = sum(int(s.on_front[-1]) for s in scored)
        row["strictly on"] = on / called if called else math.nan
        lone = sum(int(s.cheapest[-1]) for s in scored)
        row["lone cheapest"] = lone / called if called else math.nan
        row["right beyond it"] = (
            (sum(int(s.right[-1]) for s in scored) - lone) / (called - lone) if called > lone else math.nan
        )
        row["replicates/run"] = float(np.mean([s.replicates[-1] for s in scored]))
        rows.append(row)
    return pd.DataFrame(rows)


def to_target(regret: np.ndarray, base: np.ndarray | None, at: np.ndarray, target: float, name: str) -> dict:
    """The budget from which the median regret stays at `target` or below (`reach`), relative to the base
    arm's where it ran, each with its 95% interval over seeds. The two arms are resampled on their own
    (their seeds share little but a number), so the ratio's interval is if anything wide; the base arm's
    own ratio is 1."""

    def to(r: np.ndarray) -> float:
        return reach(r, at, target)

    out = {f"to <={target:g}": to(regret), f"to <={target:g} 95%": _span(bootstrap(to, regret), "{:,.0f}")}
    if base is regret:
        out[f"vs {name}"], out[f"vs {name} 95%"] = 1.0, _span((1.0, 1.0), "{:.2f}")
    elif base is not None:
        out[f"vs {name}"] = _over(to(regret), to(base))
        out[f"vs {name} 95%"] = _span(bootstrap(lambda r, b: _over(to(r), to(b)), regret, base), "{:.2f}")
    return out


def reach(regret: np.ndarray, at: np.ndarray, target: float) -> float:
    """The least budget of `at` from which the median over runs (rows of `regret`) stays at most `target`
    at every larger budget (inf: not at the last). Staying, not first touching: with few trainings a
    noise model's recommendation can be right by luck and lose it as trainings come in (on hard8 the
    design's median regret dips to 0.002 at 4 trainings and is back at 0.007 by 12), and a user stops
    a search at some budget trusting that what it recommends there is good."""
    above = np.flatnonzero(np.median(regret, axis=0) > target + 1e-12)
    if len(above) == 0:
        return float(at[0])
    return float(at[above[-1] + 1]) if above[-1] + 1 < len(at) else math.inf


def bootstrap(statistic, *samples: np.ndarray, resamples: int = 999) -> tuple[float, float]:
    """95% percentile interval of `statistic` over the runs of each sample (rows) resampled on their own.
    By hand rather than scipy.stats.bootstrap: "never reached" is inf, which its interpolated percentiles
    turn into nan; the lower and higher order statistics keep it."""
    rng = np.random.default_rng(0)
    draws = [statistic(*(s[rng.integers(len(s), size=len(s))] for s in samples)) for _ in range(resamples)]
    return float(np.quantile(draws, 0.025, method="lower")), float(np.quantile(draws, 0.975, method="higher"))


def _over(mine: float, base: float) -> float:
    """mine / base, where never reaching is inf: inf / inf is inf (the arm is shown no better)."""
    return math.inf if math.isinf(mine) else mine / base


def _span(interval: tuple[float, float], fmt: str) -> str:
    return "-".join("inf" if math.isinf(v) else fmt.format(v) for v in interval)


def truth_rows(runs: dict[str, list[Run]], seeds: range) -> pd.DataFrame:
    """Every score: arm, seed, budget, regret, called, right, on_front, lone_cheapest, replicates (the
    --out file's -truth.csv)."""
    return pd.DataFrame(
        [
            {
                "arm": arm,
                "seed": seed,
                "budget": float(b),
                "regret": float(r),
                "called": int(c),
                "right": int(ok),
                "on_front": int(on),
                "lone_cheapest": int(lone),
                "replicates": int(n),
            }
            for arm, arm_runs in runs.items()
            for seed, run in zip(seeds, arm_runs, strict=True)
            if run.score is not None
            for b, r, c, ok, on, lone, n in zip(
                run.score.budgets,
                run.score.regret,
                run.score.called,
                run.score.right,
                run.score.on_front,
                run.score.cheapest,
                run.score.replicates,
                strict=True,
            )
        ]
    )
