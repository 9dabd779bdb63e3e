"""The expected front: which assignments are non-dominated in expectation, and how sure that is.

A front of single trainings rewards lucky ones. As Ax reports its Pareto set from model predictions to
account for observation noise (and Optuna reports raw trials), moesearch fits each objective's noise
model (`analysis/effects.py`), predicts every candidate's expected value with a 95% interval, and takes
the non-dominated set of those expected values. Each candidate's probability of being non-dominated is
the share of posterior draws in which it is. Least-squares fits of the same trials and terms are drawn
jointly: their coefficients' shocks correlate as the objectives' residuals do on those trials (the
sample correlation, plugged in), so noise two objectives share (a throughput and a memory measured on
one busy machine, a loss and its 8-bit gap) is not counted as two independent chances; the others are
drawn independently.

An observed front member is *resolved on* the front when that probability is at least RESOLVED,
*resolved off* it at most 1 - RESOLVED, and *inside noise* between; while a noisy objective's model is
shrunk for want of trials (`Fit.testable`), its draws are too narrow to call anything: every member is
*not testable yet*, and its P is printed nowhere (kept in the table, to plan replicates by).
Each member is called on its own (a family of calls: one in ten at RESOLVED may be wrong).

Candidates: every assignment of the choices the trials have seen per layer when there are at most
ENUMERATE of them (an untrained one may lead), else the trained ones plus, per count of non-reference
layers, the model's best on the first objective. Light: no torch.
"""

from __future__ import annotations

import itertools
import json
import math

import moocore
import numpy as np
import pandas as pd

from moesearch.analysis import effects, fitted, verdict
from moesearch.analysis.pareto import Analysis, objectives_of, one_text
from moesearch.core.assignment import Assignment, deepen
from moesearch.core.metrics import ANALYTIC, fmt
from moesearch.core.trial import State

ENUMERATE = 100_000  # candidates drawn jointly: 256 draws of this many stay well under a second per objective
DRAWS = 256  # posterior draws: a probability to about ±0.06 (95%, near 1/2)
RESOLVED = 0.9  # on the front in at least 90% of draws, or in at most 10%: resolved
SEED = 0  # the draws are the same each time a study is read


def fits_of(trials: pd.DataFrame, objectives: dict[str, str]) -> dict[str, fitted.Fit | None]:
    """Each objective's noise model (None where it has too few trials)."""
    return {o: effects.fit(trials, o) for o in objectives}


def expected_front(
    trials: pd.DataFrame,
    objectives: dict[str, str] | None = None,
    draws: int = DRAWS,
    fits: dict[str, fitted.Fit | None] | None = None,
) -> tuple[pd.DataFrame, dict[str, fitted.Fit]] | None:
    """Every candidate: per objective its expected value and 95% interval (<o>, <o>_lo, <o>_hi), its
    probability of being non-dominated (p_front), `expected_front` (non-dominated in expectation),
    `trained` (trainings), and for trained assignments `observed_front` and `verdict`.

    None when some objective has too few trials for a model. fits: `fits_of` these trials, if already made.
    """
    objectives = objectives or objectives_of(trials)
    trials = one_text(trials)[0]
    fits = fits or fits_of(trials, objectives)
    if any(f is None for f in fits.values()):
        return None
    done = trials[trials["state"] == State.COMPLETE]
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in objectives.values()])
    models = {o: fits[o].predictive for o in objectives}  # with the neighbour pairs where one is resolved
    table = candidates(done, list(models.values()), signs[0])
    codes = effects.layer_codes(table)
    # draws x rows x objectives, every objective minimised
    sampled = joint_draws(models, done, codes, draws, np.random.default_rng(SEED)) * signs
    computed = set()
    for k, (o, found) in enumerate(models.items()):
        mean, se = found.predict(codes)
        table[o], table[f"{o}_lo"], table[f"{o}_hi"] = mean, mean - found.quantile() * se, mean + found.quantile() * se
        if (values := exact_costs(done, o, codes)) is not None:  # no model: each candidate's cost, computed
            table[o] = table[f"{o}_lo"] = table[f"{o}_hi"] = values
            sampled[..., k] = values * signs[k]
            computed.add(o)
    table["p_front"] = np.mean([nondominated(sampled[d]) for d in range(draws)], axis=0)
    table["expected_front"] = nondominated(table[list(objectives)].to_numpy(float) * signs)
    counts = done.groupby("assignment").size()
    table["trained"] = table["assignment"].map(counts).fillna(0).astype(int)
    tested = all(f.testable or f.exact or o in computed for o, f in models.items())
    table["testable"] = tested  # False: a shrunk model's P is a guide for planning, never a call
    table["verdict"] = [
        (_verdict(p) if tested else "not testable yet") if n else ""
        for p, n in zip(table["p_front"], table["trained"], strict=True)
    ]
    return table.sort_values(list(objectives)[0], ignore_index=True), fits


def exact_costs(done: pd.DataFrame, objective: str, codes: pd.DataFrame) -> np.ndarray | None:
    """An analytic cost of every row of `codes`, computed from the records' model (`core/costs.py`), so a
    shrunk fit's intervals and draws never blur it; None for a measured objective, records without their run
    config, or a computation that does not give every record's own value (records of another formula)."""
    from pydantic import ValidationError

    from moesearch.core.costs import costs
    from moesearch.core.sections import ModelSpec

    if objective not in ANALYTIC or done.empty or "config_json" not in done:
        return None
    config = json.loads(done["config_json"].iloc[0] or "{}")
    if "model" not in config or "train" not in config:  # records written by hand
        return None
    try:
        spec, micro_batch = ModelSpec.model_validate(config["model"]), config["train"]["micro_batch"]
    except (ValidationError, KeyError):  # a model of an older schema
        return None

    def cost(layers: tuple[str, ...]) -> float:  # a deeper size's records read in fewer layers: each its block
        return float(getattr(costs(spec, deepen(layers, spec.n_layers), micro_batch), objective))

    recorded = done.drop_duplicates("assignment")
    if any(cost(tuple(a.split(","))) != v for a, v in zip(recorded["assignment"], recorded[objective], strict=True)):
        return None
    return np.array([cost(tuple(row)) for row in codes.itertuples(index=False)])


def joint_draws(
    fits: dict[str, fitted.Fit], done: pd.DataFrame, codes: pd.DataFrame, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n posterior draws of every candidate's expected objectives, (n, candidates, objectives) in the order
    of `fits`: least-squares fits of the same trials and terms in one group whose shocks correlate as their
    residuals on those trials do, every other fit alone."""
    groups: list[list[str]] = []
    for o in fits:
        home = next((g for g in groups if _joint(done, fits, g[0], o)), None)
        if home is None:
            groups.append([o])
        else:
            home.append(o)
    drawn = {}
    for group in groups:
        first = fits[group[0]]
        if len(group) == 1:
            drawn[group[0]] = first.draws(codes, n, rng)
            continue
        corr = residual_correlation(done, {o: fits[o] for o in group})
        normal = rng.standard_normal((n, len(first.beta), len(group))) @ fitted.factor(corr).T
        u = rng.uniform(size=n)  # one chi-square quantile per draw: each fit's t scale at its own dof
        for k, o in enumerate(group):
            drawn[o] = fits[o].draws(codes, n, rng, fitted.Shocks(normal[..., k], fitted.Shocks.scales(u, fits[o].dof)))
    return np.stack([drawn[o] for o in fits], axis=-1)


def _joint(done: pd.DataFrame, fits: dict[str, fitted.Fit], a: str, b: str) -> bool:
    """Whether the fits of a and b can be drawn jointly: both noisy least squares, with the same terms,
    fitted on the same trials."""
    fa, fb = fits[a], fits[b]
    return (
        not (fa.exact or fb.exact)
        and fa.testable
        and fb.testable
        and fa.terms == fb.terms
        and (done[a].notna() == done[b].notna()).all()
    )


def residual_correlation(done: pd.DataFrame, fits: dict[str, fitted.Fit]) -> np.ndarray:
    """The correlation of the fits' residuals over the trials they were fitted on (complete, every one
    measured)."""
    rows = done.dropna(subset=list(fits))
    codes = effects.layer_codes(rows).assign(seed=rows["seed"].to_numpy())
    residuals = [rows[o].to_numpy(float) - found.predict(codes)[0] for o, found in fits.items()]
    return np.corrcoef(residuals)


def nondominated(points: np.ndarray) -> np.ndarray:
    """Rows no other row dominates (every column minimised); ties are all kept."""
    return moocore.is_nondominated(points, keep_weakly=True)


def candidates(done: pd.DataFrame, fits: list[fitted.Fit], sign: float = 1.0) -> pd.DataFrame:
    """The assignments to predict: all of the choices every fit has seen (a fit predicts an activation it
    never saw as its reference, silently), or the trained ones among them and the first objective's best
    per level (sign: 1 where it is minimised, -1 maximised)."""
    choices = [[a for a in layer if all(a in f.choices[i] for f in fits)] for i, layer in enumerate(fits[0].choices)]
    n_layers = len(choices)
    if math.prod(len(c) for c in choices) <= ENUMERATE:
        rows = list(itertools.product(*choices))
    else:
        trained = dict.fromkeys(tuple(a.split(",")) for a in done["assignment"])
        rows = [r for r in trained if all(a in c for a, c in zip(r, choices, strict=True))]
        rows += _best_per_level(fits[0], sign)
    table = pd.DataFrame(rows, columns=[f"layer_{i:02d}" for i in range(n_layers)])
    table.insert(0, "assignment", [Assignment(r).text for r in rows])
    return table.drop_duplicates("assignment", ignore_index=True)


def _best_per_level(found: fitted.Fit, sign: float = 1.0) -> list[tuple[str, ...]]:
    """For k = 0..layers: the reference everywhere but the k layers whose best main effect helps most
    (sign: 1 where the objective is minimised, -1 maximised)."""
    best = []  # per layer: (gain, activation), the most negative signed effect (the most helpful)
    for i, layer in enumerate(found.choices):
        by_term = {t.activations[0]: sign * b for t, b in zip(found.terms, found.beta, strict=True) if t.layers == (i,)}
        activation = min(layer[1:], key=lambda a: by_term.get(a, 0.0), default=layer[0])
        best.append((by_term.get(activation, 0.0), activation))
    order = sorted(range(len(best)), key=lambda i: best[i][0])
    return [
        tuple(best[i][1] if i in order[:k] else found.choices[i][0] for i in range(len(best)))
        for k in range(len(best) + 1)
    ]


UNSETTLED = ("inside noise", "not testable yet")  # verdicts more trainings could still settle


def testable(table: pd.DataFrame) -> bool:
    """Whether an expected-front table's probabilities may be called (every fit least squares, or exact)."""
    return bool(table["testable"].all()) if "testable" in table else True


def _verdict(p: float) -> str:
    if p >= RESOLVED:
        return "resolved on the front"
    if p <= 1 - RESOLVED:
        return "resolved off the front"
    return "inside noise"


def interval_text(mean: float, lo: float, hi: float) -> str:
    """'2.581 [2.565, 2.596]'; an exact value (an analytic cost) alone."""
    if hi - lo <= 1e-9 * max(1.0, abs(mean)):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def text(table: pd.DataFrame, objectives: dict[str, str], observed: list[str], members: bool = True) -> list[str]:
    """The expected front, each member with its intervals and probability (members=False: where the answer's
    table shows them already), and the observed front marked."""
    front = table[table["expected_front"]]
    tested = testable(table)
    lines = []
    if members:
        lines.append(
            f"expected front ({len(front)} of {len(table)} candidates; model predictions, 95% intervals; "
            + (
                f"P = share of {DRAWS} posterior draws in which it is non-dominated):"
                if tested
                else "a shrunk model: not testable yet, no member called, P not shown):"
            )
        )
        for r in front.itertuples(index=False):
            values = "  ".join(
                f"{o} {interval_text(getattr(r, o), getattr(r, f'{o}_lo'), getattr(r, f'{o}_hi'))}" for o in objectives
            )
            lines.append(
                f"  {r.assignment}  {values}  {f'P {r.p_front:.2f}  ' if tested else ''}"
                f"{'trained ' + str(r.trained) + 'x' if r.trained else 'never trained'}"
            )
    by_assignment = table.set_index("assignment")
    lines.append("observed front, against the model:")
    for a in observed:
        if a not in by_assignment.index:  # an activation some objective was never measured with
            lines.append(f"  {a}: not modelled (an objective has no complete trial with its activations)")
            continue
        row = by_assignment.loc[a]
        lines.append(f"  {a}: {row['verdict']} (P {row['p_front']:.2f})" if tested else f"  {a}: not testable yet")
    return lines


def primary(fits: dict[str, fitted.Fit | None]) -> fitted.Fit | None:
    """The fit the verdict line speaks of: val_loss where it is an objective, else the first."""
    return fits.get("val_loss") or next(iter(fits.values()))


def summary(
    trials: pd.DataFrame,
    analysis: Analysis,
    fits: dict[str, fitted.Fit | None] | None = None,
    found: tuple | None = None,
    members: bool = True,
) -> list[str]:
    """The verdict line, then each noisy objective's per-layer effects and the expected front (pareto, search).
    fits, found: `fits_of` and `expected_front` of these trials, if already made; members=False leaves out the
    expected front's list (where `analysis/answer.py` showed it first)."""
    fits = fits or fits_of(trials, analysis.objectives)
    lines = [verdict.verdict(primary(fits))]
    for o, found_fit in fits.items():
        if o not in ANALYTIC:  # an exact cost has no noise to model
            lines += verdict.text(found_fit)
    found = found if found is not None else expected_front(trials, analysis.objectives, fits=fits)
    if found is not None:
        observed = analysis.table.loc[analysis.table["pareto"], "assignment"].tolist()
        lines += text(found[0], analysis.objectives, observed, members)
    return lines
