"""The study's answer, as `pareto`, `search`, the report and the front picture lead with it: the expected
front (the noise model's predictions, `analysis/expected.py`) beside the uniform baselines, its knee, and
each member against each baseline with an interval (95% jointly over the comparisons).

A front of single trainings rewards lucky ones: on this machine's default study its knee was a member the
model called inside noise (P 0.48), and "0.005 lower val_loss than all-swiglu" sat beside a noise sd of
0.009. So where every objective's model is testable, the answer is told from the expected front; before
that (a shrunk model calls nothing), the observed front leads, marked as single trainings. The comparisons'
intervals hold jointly (Bonferroni), as the verdict's tests do over their family. Light: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from moesearch.analysis import expected, fitted
from moesearch.analysis.pareto import Analysis, front_text, header, knee, observed_lines
from moesearch.core.assignment import baseline_name
from moesearch.core.metrics import METRICS


@dataclass(frozen=True)
class Answer:
    """The expected front and the baselines (`table`), and each member against each baseline (`deltas`)."""

    objectives: dict[str, str]
    table: pd.DataFrame  # expected.expected_front's rows of the front and the baselines, with front, baseline, knee
    deltas: pd.DataFrame  # assignment, baseline, per objective <o>_delta/_lo/_hi, and the comparison in words
    candidates: int  # assignments the model predicted


def answer(analysis: Analysis, found: tuple[pd.DataFrame, dict[str, fitted.Fit]] | None) -> Answer | None:
    """The answer from `expected.expected_front`'s result; None where there is none or it cannot be tested yet."""
    if found is None or not expected.testable(found[0]):
        return None
    candidates, fits = found
    trained = analysis.table
    baselines = set(trained.loc[trained["baseline"], "assignment"])
    table = candidates[candidates["expected_front"] | candidates["assignment"].isin(baselines)].copy()
    table["front"] = table["expected_front"]
    table["baseline"] = table["assignment"].isin(baselines)
    table["knee"] = False
    table.loc[knee(table[table["front"]], analysis.objectives), "knee"] = True
    table = table.sort_values(["front", next(iter(analysis.objectives))], ascending=[False, True])
    # the main-effects fits: a wider model chosen because a pair resolved on these data would be tested on
    # them again (in simulated null studies it called a difference in every study where it was chosen)
    models = {o: fits[o] for o in analysis.objectives}
    return Answer(analysis.objectives, table, _deltas(table, models), len(candidates))


def _deltas(table: pd.DataFrame, models: dict[str, fitted.Fit]) -> pd.DataFrame:
    """Every expected-front member against every baseline: the model's difference per objective with its
    interval (the contrast's own standard error, tighter than two predictions' intervals), from the main-effects
    fit, the intervals 95% jointly over the comparisons and the noisy objectives (Bonferroni), so the list
    resolves no more by chance than the verdict does."""
    members, bases = table[table["front"] & ~table["baseline"]], table[table["baseline"]]
    pairs = [(m, b) for m in members["assignment"] for b in bases["assignment"]]
    rows = pd.DataFrame(pairs, columns=["assignment", "baseline"])
    if not pairs:
        return rows.assign(summary=pd.Series(dtype=str))
    codes = table.set_index("assignment").filter(like="layer_")
    a = codes.loc[rows["assignment"]].reset_index(drop=True)
    b = codes.loc[rows["baseline"]].reset_index(drop=True)
    exact = {o for o in models if (table[f"{o}_lo"] == table[f"{o}_hi"]).all()}  # computed, or fitted exactly
    noisy = sum(o not in exact for o in models)
    by_assignment = table.set_index("assignment")
    for o, fit in models.items():
        diff, se = fit.difference(a, b)
        half = fit.quantile(family=len(rows) * max(noisy, 1)) * se  # jointly, as the verdict: no lucky pair
        if o in exact:  # the table's exact values (`expected.exact_costs`), not a fit's reading of them
            diff = (
                by_assignment.loc[rows["assignment"], o].to_numpy() - by_assignment.loc[rows["baseline"], o].to_numpy()
            )
            half = 0.0
        rows[f"{o}_delta"], rows[f"{o}_lo"], rows[f"{o}_hi"] = diff, diff - half, diff + half
        rows[f"{o}_base"] = by_assignment.loc[rows["baseline"], o].to_numpy()
    rows["summary"] = [_words(row, list(models)) for _, row in rows.iterrows()]
    return rows


def _words(row: pd.Series, objectives: list[str]) -> str:
    """'0.024 lower val_loss (95% 0.013 to 0.035), 17.8% lower train_flops_per_token than all-swiglu'; an
    interval that holds 0 says so: 'no resolved difference in val_loss (-0.003, 95% -0.012 to +0.006)'."""
    parts = []
    for o in objectives:
        d, lo, hi, base = row[f"{o}_delta"], row[f"{o}_lo"], row[f"{o}_hi"], row[f"{o}_base"]
        absolute = METRICS.get(o, ("",))[0] == "nats/token"  # a loss difference means the same at any level

        def show(v: float, absolute: bool = absolute, base: float = base) -> str:
            return f"{v:+.3f}" if absolute else f"{v / abs(base) * 100:+.1f}%"

        if hi - lo <= 1e-9 * max(1.0, abs(base)):  # exact: a computed cost
            parts.append(f"the same {o}" if abs(d) <= 1e-9 * abs(base) else f"{show(d)[1:]} {_way(d)} {o}")
        elif lo > 0 or hi < 0:  # the interval in the same words: "0.018 lower (95% 0.006 to 0.029)"
            near, far = sorted((abs(lo), abs(hi)))
            parts.append(f"{show(d)[1:]} {_way(d)} {o} (95% {show(near)[1:]} to {show(far)[1:]})")
        else:
            parts.append(f"no resolved difference in {o} ({show(d)}, 95% {show(lo)} to {show(hi)})")
    return ", ".join(parts) + f" than {baseline_name(row['baseline'])}"


def _way(d: float) -> str:
    return "lower" if d < 0 else "higher"


def view(found: Answer) -> pd.DataFrame:
    """The answer's table for people: marks, each objective with its 95% interval (an exact cost alone), P,
    trainings."""
    t = found.table
    marks = t["front"].map({True: "*", False: " "}) + t["knee"].map({True: "K", False: " "})
    shown = pd.DataFrame({"": marks + t["baseline"].map({True: "B", False: " "}), "assignment": t["assignment"]})
    for o, direction in found.objectives.items():
        shown[header(o, direction)] = [
            expected.interval_text(m, lo, hi) for m, lo, hi in zip(t[o], t[f"{o}_lo"], t[f"{o}_hi"], strict=True)
        ]
    shown["P front"] = t["p_front"].map(lambda p: f"{p:.2f}")
    shown["trained"] = t["trained"].map(lambda n: f"{n}x" if n else "never")
    return shown.reset_index(drop=True)


def lines(found: Answer) -> list[str]:
    """The answer as `pareto` prints it: the table, what its marks mean, the members against the baselines."""
    out = [
        view(found).to_string(index=False),
        f"the expected front: {int(found.table['front'].sum())} of {found.candidates} candidates non-dominated in the "
        "noise model's predictions (95% intervals; P front = share of posterior draws in which it is non-dominated); "
        "* = expected front, K = its knee, B = uniform baseline; (min)/(max): minimised/maximised; `--observed` "
        "shows the front of single trainings",
    ]
    if len(found.deltas):
        out.append(
            f"expected front against the baselines (the main-effects model's difference; 95% intervals held "
            f"jointly over the {len(found.deltas)} comparisons and the noisy objectives):"
        )
        out += [f"  {row.assignment}: {row.summary}" for row in found.deltas.itertuples()]
    return out


def summary(
    trials: pd.DataFrame, analysis: Analysis, fits: dict | None = None, observed: str | None = None
) -> list[str]:
    """What `pareto` and the end of `search` print: the verdict; the answer, or the observed front where it
    cannot be tested yet; the per-layer effects and the observed front against the model. observed: the
    observed front's text to lead with instead (`pareto --observed`, `--all`)."""
    fits = fits or expected.fits_of(trials, analysis.objectives)
    found = expected.expected_front(trials, analysis.objectives, fits=fits)
    told = None if observed is not None else answer(analysis, found)
    model = expected.summary(trials, analysis, fits, found, members=told is None)
    front = lines(told) + observed_lines(analysis) if told else [observed or front_text(analysis)]
    return [model[0], *front, *model[1:]]
