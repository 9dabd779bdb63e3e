"""Pareto analysis of a study's records: ranks, the front, its knee, hypervolume, and the baselines.

The unit is the assignment: an assignment trained with several seeds (seed replicates) counts once,
at the mean of its objective values, the best estimate there is. Non-dominated sorting and
hypervolume come from moocore (maintained, C-backed, any number of objectives, mixed min/max).
A front compares one training text: records of another text (`data_sha256`) are left out, and said so.
The seed noise is part of every front: pooled over the assignments trained with several seeds, it
decides which differences from a baseline are wins and which are ties (`Spread`); without
replicates, the summary says every figure is one training. Light: no torch.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass

import moocore
import numpy as np
import pandas as pd

from moesearch.core.activations import NAMES
from moesearch.core.assignment import baseline_name
from moesearch.core.metrics import INTEGER_METRICS, METRICS, fmt, fmt_pm
from moesearch.core.trial import VERIFY_SEEDS, State

CONTEXT = ("params_active", "train_flops_per_token")  # cost columns shown beside the objectives
CONFIDENCE = 0.95  # a difference from a baseline is a win only outside its two-sided 95% interval of seed noise


def objectives_of(trials: pd.DataFrame) -> dict[str, str]:
    """The study's objectives, as recorded with its trials."""
    return json.loads(trials["objectives"].iloc[0])


def reference_of(trials: pd.DataFrame) -> dict[str, float]:
    """The hypervolume reference point fixed when the study was created, as recorded with its trials."""
    return json.loads(trials["reference_point"].iloc[0])


def one_text(trials: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The trials trained on the study's own text (its first trial's), and a note on any left out.

    val_loss on another text is another quantity, so such records never join the front; `search`
    and `train` refuse to add them, but a results folder may hold older ones.
    """
    if trials.empty:
        return trials, None
    texts = trials["data_sha256"]  # a categorical when loaded: compared by code, fast at a million rows
    other = (texts.notna() & (texts != texts.loc[trials["trial"].idxmin()])).to_numpy()
    if not other.any():
        return trials, None
    hashes = ", ".join(str(h)[:12] for h in sorted(set(texts[other]), key=str))
    n = int(other.sum())
    return trials[~other], (
        f"left out: {n} trial{'' if n == 1 else 's'} trained on another text (sha256 {hashes}) "
        "than the study's first trial; a front compares one text (give other text its own --study)"
    )


def by_assignment(trials: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Completed trials grouped by assignment: mean and standard deviation of each metric over seeds.

    Trials repeating a seed are averaged first, so every seed weighs the same and the spread is the
    spread over seeds. Columns: assignment, the metrics (means), <objective>_std, seeds, trial (the
    first), trials, layer_NN, baseline. Assignments trained once skip the grouping (large studies).
    """
    done = trials[trials["state"] == State.COMPLETE]
    metrics = list(dict.fromkeys([*objectives, *(m for m in METRICS if m in done.columns)]))  # every cost, exported
    layer_columns = sorted(c for c in done.columns if c.startswith("layer_"))
    repeated = done["assignment"].duplicated(keep=False)
    once = done.loc[~repeated, ["assignment", *metrics]].assign(
        **{f"{o}_std": np.nan for o in objectives},
        seeds=1,
        trial=done.loc[~repeated, "trial"],
        trials=[[t] for t in done.loc[~repeated, "trial"].tolist()],
        **done.loc[~repeated, layer_columns],
    )
    table = pd.concat([once, _grouped(done[repeated], metrics, objectives, layer_columns)])
    table = table.sort_values("trial", ignore_index=True)
    for name in metrics:  # exact counts stay integers through the mean over seeds (all seeds agree on them)
        if name in INTEGER_METRICS and table[name].notna().all():
            table[name] = table[name].round().astype("int64")
    table["baseline"] = _uniform(table[layer_columns])
    return table


def _uniform(layers: pd.DataFrame) -> np.ndarray:
    """Rows whose layers all take one activation, compared as codes of one category list (fast at scale;
    loaded layer columns are categoricals whose own category lists may differ between layers)."""
    names = list(NAMES) + sorted({v for c in layers.columns for v in layers[c].unique()} - set(NAMES))  # + mixes
    codes = np.column_stack(
        [layers[c].astype("category").cat.set_categories(names).cat.codes.to_numpy() for c in layers.columns]
    )
    return (codes == codes[:, :1]).all(axis=1)


def _grouped(
    done: pd.DataFrame, metrics: list[str], objectives: dict[str, str], layer_columns: list[str]
) -> pd.DataFrame:
    per_seed = done.groupby(["assignment", "seed"], sort=False)[metrics].mean()
    grouped = per_seed.groupby("assignment", sort=False)
    table = grouped.mean()
    for name in objectives:
        table[f"{name}_std"] = grouped[name].std(ddof=1)  # NaN for a single seed: spread unknown
    table["seeds"] = grouped.size()
    by_trial = done.groupby("assignment", sort=False)
    table["trial"], table["trials"] = by_trial["trial"].min(), by_trial["trial"].agg(list)
    return table.join(by_trial[layer_columns].first()).reset_index()


def front(
    trials: pd.DataFrame, objectives: dict[str, str] | None = None, reference: dict[str, float] | None = None
) -> tuple[pd.DataFrame, float]:
    """The front (assignment means) and its hypervolume alone: no ranks, knee or history, for large studies.

    The one definition of the front, for every command that shows one (`analyse` ranks the same
    means; `status` passes the study's trials as rows, with `objectives` and `reference` from the study).
    Works on row positions and the objective columns: assignments trained once are points as they
    are, only repeated ones are grouped, and full rows are built for the few front members.
    """
    objectives, reference = objectives or objectives_of(trials), reference or reference_of(trials)
    trials, _ = one_text(trials)
    complete = (trials["state"] == State.COMPLETE).to_numpy()
    repeated = trials["assignment"].duplicated(keep=False).to_numpy()  # a failed attempt counts: grouped, harmless
    once = np.flatnonzero(complete & ~repeated)
    points, maximise = _points(
        trials[list(objectives)].iloc[once], objectives
    )  # the objective columns, not every column
    several = trials.iloc[np.flatnonzero(complete & repeated)]
    means = (
        several.groupby(["assignment", "seed"], sort=False)[list(objectives)]
        .mean()
        .groupby("assignment", sort=False)
        .mean()
    )
    candidates = np.vstack([points, means.to_numpy(dtype=float)])
    keep = moocore.is_nondominated(candidates, maximise=maximise) if len(candidates) else np.zeros(0, bool)
    members = several[several["assignment"].isin(set(means.index[keep[len(once) :]]))]
    on = by_assignment(pd.concat([trials.iloc[once[keep[: len(once)]]], members]), objectives)
    return on, hypervolume(on, objectives, reference)


def _points(table: pd.DataFrame, objectives: dict[str, str]) -> tuple[np.ndarray, list[bool]]:
    return table[list(objectives)].to_numpy(dtype=float), [d == "maximize" for d in objectives.values()]


def rank(table: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Adds `pareto_rank` (1 = the front, 2 = the front once it is removed, ...), `pareto` and `knee`."""
    table = table.copy()
    points, maximise = _points(table, objectives)
    table["pareto_rank"] = moocore.pareto_rank(points, maximise=maximise) + 1 if len(table) else []
    table["pareto"] = table["pareto_rank"] == 1
    table["knee"] = False
    if len(table):
        table.loc[knee(table[table["pareto"]], objectives), "knee"] = True
    return table


def knee(front: pd.DataFrame, objectives: dict[str, str]):
    """Index of the front member closest to the ideal point, each objective scaled to [0, 1] over the front.

    The ideal point takes the best value of every objective; the knee is the balanced compromise.
    """
    points, maximise = _points(front, objectives)
    points = np.where(maximise, -points, points)  # all minimised
    span = points.max(axis=0) - points.min(axis=0)
    scaled = (points - points.min(axis=0)) / np.where(span > 0, span, 1)
    return front.index[int(np.argmin(np.linalg.norm(scaled, axis=1)))]


def hypervolume(table: pd.DataFrame, objectives: dict[str, str], reference: dict[str, float]) -> float:
    """Volume dominated by the points and bounded by the reference (points beyond it add nothing)."""
    points, maximise = _points(table, objectives)
    if not len(points):
        return 0.0
    return float(moocore.hypervolume(points, ref=[reference[o] for o in objectives], maximise=maximise))


def hypervolume_history(trials: pd.DataFrame, objectives: dict[str, str], reference: dict[str, float]) -> pd.DataFrame:
    """The hypervolume after each completed trial, from the assignment means known at that point.

    Measured as the headline hypervolume is (seeds averaged per assignment), so the last value equals
    it; a seed replicate that moves an assignment's mean can lower it: a correction, not a regression.
    """
    done = trials[trials["state"] == State.COMPLETE].sort_values("trial")
    points, maximise = _points(done, objectives)
    ref = [reference[o] for o in objectives]
    per_seed: dict[tuple[str, int], list[np.ndarray]] = defaultdict(list)
    seeds_of: dict[str, set[int]] = defaultdict(set)
    means: dict[str, np.ndarray] = {}
    volumes = []
    for point, assignment, seed in zip(points, done["assignment"], done["seed"], strict=True):
        per_seed[assignment, seed].append(point)
        seeds_of[assignment].add(seed)
        means[assignment] = np.mean([np.mean(per_seed[assignment, s], axis=0) for s in seeds_of[assignment]], axis=0)
        volumes.append(float(moocore.hypervolume(np.array(list(means.values())), ref=ref, maximise=maximise)))
    return pd.DataFrame({"trial": done["trial"].to_numpy(), "hypervolume": volumes})


@dataclass(frozen=True)
class Spread:
    """The seed noise of a study: per objective, the pooled standard deviation over seeds.

    Pooled over the assignments trained with two or more seeds (sample variances weighted by their
    degrees of freedom), so every replicate counts, whichever assignment it belongs to. Exact costs
    (FLOPs, parameters) have none: their sd is 0 and every difference is real.
    """

    sd: dict[str, float]  # NaN while no assignment has two seeds
    dof: int  # degrees of freedom: the sum of (seeds - 1) over the replicated assignments
    assignments: int  # assignments with two or more seeds

    @property
    def measured(self) -> bool:
        return self.dof > 0

    def margin(self, name: str, seeds_a: int, seeds_b: int) -> float:
        """Half-width of the 95% interval of a difference between means of `seeds_a` and `seeds_b` seeds
        (pooled two-sample t); NaN while the noise is unmeasured."""
        if not self.measured:
            return math.nan
        from scipy.stats import t  # only here: the light modules import fast

        return float(t.ppf(0.5 + CONFIDENCE / 2, self.dof)) * self.sd[name] * math.sqrt(1 / seeds_a + 1 / seeds_b)


def seed_spread(table: pd.DataFrame, objectives: dict[str, str]) -> Spread:
    """The study's seed noise, from its assignment table (`by_assignment`)."""
    replicated = table[table["seeds"] >= 2]
    weights = (replicated["seeds"] - 1).to_numpy(float)
    dof = int(weights.sum())
    sd = {
        o: float(np.sqrt((weights * replicated[f"{o}_std"].to_numpy(float) ** 2).sum() / dof)) if dof else math.nan
        for o in objectives
    }
    return Spread(sd, dof, len(replicated))


def delta_text(member: pd.Series, base: pd.Series, objectives: dict[str, str], spread: Spread) -> str:
    """'0.045 lower val_loss, 6.5% lower train_flops_per_token': losses in absolute terms, costs in percent.

    A difference inside its seed-noise margin is no win or loss: 'no clear difference in val_loss (...)'.
    """
    parts = []
    for name in objectives:
        diff = member[name] - base[name]
        word = "lower" if diff < 0 else "higher"
        absolute = METRICS[name][0] == "nats/token"  # a loss difference means the same at any loss level
        shown = _amount(abs(diff), absolute, base[name])
        margin = spread.margin(name, member["seeds"], base["seeds"])
        if not shown.strip("0.%"):
            parts.append(f"the same {name}")
        elif abs(diff) <= margin:
            noise = _amount(margin, absolute, base[name])
            parts.append(f"no clear difference in {name} ({shown} {word}; seed noise margin {noise})")
        else:
            parts.append(f"{shown} {word} {name}")
    return ", ".join(parts)


def _amount(d: float, absolute: bool, base: float) -> str:
    """A difference as shown: in the objective's units (losses), or in percent of the baseline's value."""
    return f"{d:.3f}" if absolute else f"{d / abs(base) * 100:.1f}%"


def baseline_deltas(table: pd.DataFrame, objectives: dict[str, str], spread: Spread) -> pd.DataFrame:
    """For every front member and every uniform baseline: the member's differences, their seed-noise
    margins (NaN: unmeasured) and the same in words."""
    rows = []
    for _, member in table[table["pareto"]].iterrows():
        for _, base in table[table["baseline"]].iterrows():
            if member["assignment"] == base["assignment"]:
                continue
            rows.append(
                {
                    "assignment": member["assignment"],
                    "baseline": baseline_name(base["assignment"]),
                    **{f"{o}_delta": member[o] - base[o] for o in objectives},
                    **{f"{o}_margin": spread.margin(o, member["seeds"], base["seeds"]) for o in objectives},
                    "summary": f"{delta_text(member, base, objectives, spread)} than "
                    f"{baseline_name(base['assignment'])}",
                }
            )
    columns = [
        "assignment",
        "baseline",
        *(f"{o}_delta" for o in objectives),
        *(f"{o}_margin" for o in objectives),
        "summary",
    ]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class Analysis:
    """Everything `pareto`, `plot` and `report` show about one study."""

    objectives: dict[str, str]
    reference: dict[str, float]
    table: pd.DataFrame  # one row per assignment, ranked
    history: pd.DataFrame  # hypervolume after each trial
    deltas: pd.DataFrame  # front members against the baselines
    hypervolume: float
    failed: int
    spread: Spread  # the seed noise
    pruned: int = 0  # trials stopped at a rung (search.pruning): outside the front, their values are partial
    left_out: str | None = None  # records of another training text, if any


def analyse(trials: pd.DataFrame) -> Analysis:
    objectives, reference = objectives_of(trials), reference_of(trials)
    trials, left_out = one_text(trials)
    table = rank(by_assignment(trials, objectives), objectives)
    spread = seed_spread(table, objectives)
    return Analysis(
        objectives,
        reference,
        table,
        hypervolume_history(trials, objectives, reference),
        baseline_deltas(table, objectives, spread),
        hypervolume(table[table["pareto"]], objectives, reference),
        failed=int((trials["state"] == State.FAIL).sum()),  # preempted trials are no failures
        spread=spread,
        left_out=left_out,
        pruned=int((trials["state"] == State.PRUNED).sum()),
    )


def header(name: str, direction: str | None = None) -> str:
    """A column title with its unit (and direction for objectives): 'val_loss [nats/token] (min)'."""
    title = f"{name} [{METRICS[name][0]}]"
    return f"{title} ({'max' if direction == 'maximize' else 'min'})" if direction else title


def with_pruned(analysis: Analysis, trials: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """The ranked table and, after it, every assignment stopped at a rung and never trained to the end: its
    first pruned trial's values at the rung (`rung`: the step, from its last evaluation in `evals`), no rank.
    Adds `state` (COMPLETE or PRUNED) to every row. What `pareto --all` prints and exports."""
    trials, _ = one_text(trials)
    stopped = trials[(trials["state"] == State.PRUNED) & ~trials["assignment"].isin(set(analysis.table["assignment"]))]
    stopped = stopped.astype({"assignment": str}).groupby("assignment", sort=False)
    first = stopped.head(1).set_index("assignment")
    rung = evals.groupby("trial")["step"].max()
    metrics = [m for m in METRICS if m in first.columns]
    pruned = (
        first[metrics + [c for c in first.columns if c.startswith("layer_")]]
        .assign(
            **{f"{o}_std": np.nan for o in analysis.objectives},
            seeds=stopped["seed"].nunique(),
            trial=first["trial"],
            trials=stopped["trial"].agg(list),
            baseline=False,
            pareto=False,
            knee=False,
            state=State.PRUNED,
            rung=first["trial"].map(rung),
        )
        .reset_index()
    )
    ranked = analysis.table.assign(state=State.COMPLETE, rung=np.nan)
    table = pd.concat([ranked, pruned], ignore_index=True) if len(pruned) else ranked
    return table.astype({"pareto_rank": "Int64", "rung": "Int64"})


def front_view(analysis: Analysis, everything: bool = False, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The front and the baselines (or every assignment), formatted for people, by rank then ascending first objective.

    table: `with_pruned`'s, to show the pruned assignments too (last, their state and rung in a column)."""
    t = analysis.table if table is None else table
    shown = t if everything else t[t["pareto"] | t["baseline"]]
    shown = shown.sort_values(["pareto_rank", next(iter(analysis.objectives))], na_position="last")
    marks = (
        shown["pareto"].map({True: "*", False: " "})
        + shown["knee"].map({True: "K", False: " "})
        + shown["baseline"].map({True: "B", False: " "})
    )
    view = pd.DataFrame(
        {
            "": marks,
            "rank": shown["pareto_rank"].astype(object).where(shown["pareto_rank"].notna(), "-"),
            "trial": shown["trial"],
            "seeds": shown["seeds"],
            "assignment": shown["assignment"],
        }
    )
    for name, direction in analysis.objectives.items():
        view[header(name, direction)] = [fmt_pm(m, s) for m, s in zip(shown[name], shown[f"{name}_std"], strict=True)]
    for name in CONTEXT:
        if name not in analysis.objectives:
            view[header(name)] = shown[name].map(fmt)
    if "state" in shown and (shown["state"] == State.PRUNED).any():
        view["state"] = [
            f"{State.PRUNED} at step {r}" if s == State.PRUNED else str(s)
            for s, r in zip(shown["state"], shown["rung"], strict=True)
        ]
    return view.reset_index(drop=True)


def summary_lines(analysis: Analysis) -> list[str]:
    """What the front table does not say: counts, the hypervolume, how sure the ranking is, and each
    front member against the baselines."""
    lines = [
        _counts(analysis) + "; * = Pareto front, K = knee, B = uniform baseline; values are means over seeds "
        "(± standard deviation)",
        *_hypervolume_lines(analysis),
        noise_line(analysis),
    ]
    if len(analysis.deltas):
        lines.append("front against the baselines" + ("" if analysis.spread.measured else " (one seed each)") + ":")
        lines += [f"  {row.assignment}: {row.summary}" for row in analysis.deltas.itertuples()]
    return lines


def observed_lines(analysis: Analysis) -> list[str]:
    """The observed front in brief, where the expected front leads (`analysis/answer.py`)."""
    return [_counts(analysis) + " of single trainings (`--observed` lists it)", *_hypervolume_lines(analysis)]


def _counts(analysis: Analysis) -> str:
    t = analysis.table
    return (
        f"{len(t)} assignments from {int(t['trials'].map(len).sum())} complete trials ({analysis.failed} failed"
        f"{f', {analysis.pruned} pruned' if analysis.pruned else ''}), {int(t['pareto'].sum())} on the front"
    )


def _hypervolume_lines(analysis: Analysis) -> list[str]:
    return [
        f"hypervolume {analysis.hypervolume:.6g} against the reference point " + _reference_text(analysis),
        *([warning] if (warning := reference_warning(analysis)) else []),
        *([analysis.left_out] if analysis.left_out else []),
    ]


def _reference_text(analysis: Analysis) -> str:
    return ", ".join(f"{o} = {fmt(v)}" for o, v in analysis.reference.items())


def reference_warning(analysis: Analysis) -> str | None:
    """Why the hypervolume is 0 when there is a front: no point beats the reference point in every
    objective, so the volume measures nothing (and no later trial can show progress by it)."""
    front = analysis.table[analysis.table["pareto"]]
    if analysis.hypervolume > 0 or front.empty:
        return None
    beyond = [
        o
        for o, d in analysis.objectives.items()
        if (front[o] >= analysis.reference[o] if d == "minimize" else front[o] <= analysis.reference[o]).all()
    ]
    why = f"; every front point's {' and '.join(beyond)} is beyond it" if beyond else ""
    return (
        f"warning: hypervolume 0: no assignment is better than the reference point ({_reference_text(analysis)}) "
        f"in every objective{why}; the reference is fixed when a study is created (search.reference)"
    )


def noise_line(analysis: Analysis) -> str:
    """How sure the ranking is: the measured seed noise, or a plain statement that it is unmeasured."""
    spread, t = analysis.spread, analysis.table
    if spread.measured:
        noisy = ", ".join(f"{o} sd {fmt(sd)} {METRICS[o][0]}" for o, sd in spread.sd.items())
        return (
            f"seed noise: {noisy} (pooled over {spread.assignments} assignments trained with 2+ seeds, "
            f"{spread.dof} degrees of freedom); a difference from a baseline inside its {CONFIDENCE:.0%} "
            "margin (pooled t) is no win"
        )
    targets = int((t["pareto"] | t["baseline"]).sum())
    return (
        "every figure in this table is one training (no assignment has two seeds), so a gap between two rows "
        "may be training noise; the noise model (per-layer effects, expected front) pools every trial to "
        f"estimate it, and `moesearch verify` would measure it directly with {targets * VERIFY_SEEDS} replicate "
        f"trials ({VERIFY_SEEDS} fresh seeds for each of the {targets} front members and baselines)"
    )


def front_text(analysis: Analysis, everything: bool = False, table: pd.DataFrame | None = None) -> str:
    """The `pareto` command's report: the table, then the summary lines (table: as `front_view` takes it)."""
    lines = [front_view(analysis, everything, table).to_string(index=False), *summary_lines(analysis)]
    if everything and table is not None and (table["state"] == State.PRUNED).any():
        lines.insert(
            2,
            "PRUNED rows: stopped at a rung, so their values are those measured at that step; they "
            "have no rank and are not on the front",
        )
    return "\n".join(lines)
