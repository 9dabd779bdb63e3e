"""Does the proxy's answer hold at a larger size? Rank correlation and effect transfer between two sizes.

A study searches a proxy; the space's scale ladder names larger sizes of the same model, at which its
expected front and baselines are trained again. Each size has its own noise model (`analysis/effects.py`),
and each question gets an interval:
- Ordering: Spearman's and Kendall's rank correlation between the sizes' expected values of the
  assignments trained at both. The point is the correlation of the two models' predictions; the 95%
  interval over joint posterior draws (each draw takes both sizes' expected values from their own models,
  which share no trainings, and ranks them): their percentiles, widened to the basic bootstrap's interval
  (reflected about the point) where noise pulls the draws' correlation toward zero (`_interval`).
  A wide interval says "train more seeds", not "the order breaks".
- Effects: every effect resolved at the smaller size, beside its estimate at the larger one. Its sign
  *holds* when the larger size resolves it the same way, *reverses* when it resolves it the other way, and
  is *inside noise* otherwise, or *not testable* while the larger size's model is shrunk. Its size is
  *different* when the two estimates differ by more than their difference's 95% interval (normal: the two
  fits are independent), *close* when they do not and the larger size resolves the effect, else
  undetermined.
Depth: a size may have more layers (`[[scale]] n_layers`); each layer of the size below stands for its
block of the depth (`assignment.deepen`), and every promoted assignment is deepened so. Both sizes are then
read in the smaller one's layers (`same_depth`): the larger size's "layer i" effect is that of its whole
block, which is what the smaller size's layer i claims.
What to promote and how often: the uniform baselines and the smaller size's expected front, and where those
alone would not let least squares test every layer's effect, the main-effects design's runs too
(`core/design.py`). All are trained with the same seeds (common random numbers pair them), as many as the
difference of two of them needs to resolve the smallest effect the smaller size resolved (else the
effect that matters on the objective, `verdict.size_for`) 80% of the time at the level the family-wise
test gives a layer's effect:
2 (m sigma / delta)^2, m that test's multiplier (`fitted.Fit.multiplier`) and sigma the noise within a
seed, from the larger size's model once it is testable, before that the smaller's, and one seed each while
neither is. Light: no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from moesearch.analysis import effects, expected, fitted, verdict
from moesearch.analysis.pareto import objectives_of, one_text
from moesearch.core import design
from moesearch.core import results as results_mod
from moesearch.core.assignment import Assignment, block_of, layer_name, shallow, uniform
from moesearch.core.errors import InputError
from moesearch.core.scale import PROXY
from moesearch.core.trial import State

LINK = "ladder.json"  # in a promoted study's results folder: {"source": study below, "size": this size}
DRAWS = 1000  # posterior draws per interval: its 2.5% and 97.5% points to about ±0.01 of a correlation
SEED = 0  # the same intervals each time a ladder is read
MIN_SHARED = 3  # assignments trained at both sizes that a rank correlation needs (its interval says how little 3 say)
Z95 = float(stats.norm.ppf(0.975))


def targets(trials: pd.DataFrame, choices: list[list[str]]) -> list[str] | None:
    """The assignments to promote: the uniform baselines, the expected front's members, and the design's
    runs where those alone leave a layer's effect untestable; None where the study has too few trainings
    for a noise model."""
    found = expected.expected_front(trials, objectives_of(trials))
    if found is None:
        return None
    front = found[0].loc[found[0]["expected_front"], "assignment"]
    chosen = list(dict.fromkeys([a.text for a in uniform(choices)] + list(front)))
    if not testable(chosen, choices):
        try:
            chosen = list(dict.fromkeys(chosen + [",".join(run) for run in design.runs(choices)]))
        except InputError:  # no orthogonal array hosts this space: the front alone, its effects untested
            pass
    return chosen


def testable(assignments: list[str], choices: list[list[str]]) -> bool:
    """Whether one training of each lets least squares test every layer's main effect: full rank, and the
    residual degrees of freedom the noise model asks for."""
    rows = [a.split(",") for a in assignments]
    columns = [np.ones(len(rows))] + [
        np.array([r[i] == c for r in rows], float) for i, layer in enumerate(choices) for c in layer[1:]
    ]
    x = np.column_stack(columns)
    return np.linalg.matrix_rank(x) == x.shape[1] and len(rows) - x.shape[1] >= fitted.MIN_DOF


def seeds_needed(sigma: float, delta: float, multiplier: float) -> int:
    """Seeds per assignment for the difference of two of them, paired by seed, to resolve `delta` at the
    power and level of `multiplier` (a standard error times it is what the test finds)."""
    return max(1, math.ceil(2 * (multiplier * sigma / delta) ** 2))


def effect_size(found: fitted.Fit | None) -> float:
    """The effect a promotion is sized to see: the smallest one `found` resolves, else the one that matters
    on its objective (`verdict.size_for`)."""
    if found is None:
        return verdict.SIZE
    rows = found.effects()
    resolved = rows.loc[rows["resolved"], "effect"].abs()
    return float(resolved.min()) if len(resolved) else verdict.size_for(found)


def depth_of(trials: pd.DataFrame) -> int | None:
    """The layer count of a size's records (None without records)."""
    return int(trials["n_layers"].max()) if len(trials) else None


def in_layers(trials: pd.DataFrame, n_layers: int) -> pd.DataFrame:
    """A deeper size's records as the `n_layers`-layer assignments they deepen (`assignment.shallow`): each
    block's activation in its layer's column. Records whose blocks mix activations say nothing of a shallower
    layer and are left out (a promotion trains none)."""
    found = [shallow(Assignment.parse(text), n_layers) for text in trials["assignment"].astype(str)]
    kept = [a for a in found if a is not None]
    out = trials[[a is not None for a in found]].drop(columns=[c for c in trials.columns if c.startswith("layer_")])
    out = out.assign(assignment=[a.text for a in kept], n_layers=n_layers)
    return out.assign(**{layer_name(i): [a[i] for a in kept] for i in range(n_layers)})


def same_depth(small: pd.DataFrame, large: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both sizes' records in the smaller size's layers (the larger's through `in_layers` where it is deeper)."""
    depth = depth_of(small), depth_of(large)
    if None in depth or depth[1] == depth[0]:
        return small, large
    return small, in_layers(large, depth[0])


def depth_text(small: pd.DataFrame, large: pd.DataFrame, sizes: tuple[str, str]) -> list[str]:
    """Which of the larger size's layers each of the smaller size's stands for, where the depths differ."""
    depth = depth_of(small), depth_of(large)
    if None in depth or depth[1] == depth[0]:
        return []
    blocks = [[j for j in range(depth[1]) if block_of(j, depth[1], depth[0]) == i] for i in range(depth[0])]
    spans = ", ".join(f"{i} -> {b[0]}-{b[-1]}" for i, b in enumerate(blocks))
    return [
        f"depth: {sizes[1]} has {depth[1]} layers, {sizes[0]} {depth[0]}; each layer at {sizes[0]} stands for its "
        f"block at {sizes[1]} ({spans}), and its effect there is the whole block's"
    ]


def seeds_for(small: pd.DataFrame, large: pd.DataFrame, objective: str) -> tuple[int, str]:
    """The seeds each promoted assignment needs, and why in words. A shrunk fit's noise can collapse (it
    nearly interpolates), so only a testable model sizes a promotion; without one, one seed each."""
    small, large = same_depth(small, large)
    here = effects.fit(small, objective)
    there = effects.fit(large, objective) if len(large) else None
    delta = effect_size(here)
    noise = next((f for f in (there, here) if f is not None and f.testable), None)
    if noise is None:
        return 1, f"one seed each: neither size has a testable noise model of {objective} yet"
    n = seeds_needed(noise.sigma, delta, noise.multiplier(noise.dof))
    where = "the larger size's" if noise is there else "the smaller size's"
    return n, (
        f"{n} seed{'s' * (n > 1)} each: {objective}'s noise within a seed {noise.sigma:.4f} ({where} model) "
        f"against an effect of {delta:.4f}"
    )


@dataclass(frozen=True)
class Correlation:
    """The rank correlation of expected values between two sizes, over `shared` assignments."""

    shared: int
    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]

    def text(self, objective: str) -> str:
        lo_s, hi_s = self.spearman_ci
        lo_k, hi_k = self.kendall_ci
        return (
            f"rank correlation of expected {objective} over {self.shared} assignments trained at both sizes: "
            f"Spearman {self.spearman:+.2f} (95% {lo_s:+.2f} to {hi_s:+.2f}), "
            f"Kendall {self.kendall:+.2f} (95% {lo_k:+.2f} to {hi_k:+.2f})"
        )


def correlation(small: fitted.Fit, large: fitted.Fit, assignments: pd.DataFrame) -> Correlation | None:
    """Rank correlation of the two fits' expected values of `assignments` (rows of layer columns, as
    `effects.layer_codes` gives); None with fewer than MIN_SHARED rows or no variation at a size (`why_none`)."""
    if why_none(small, large, assignments):
        return None
    point = [f.predict(assignments)[0] for f in (small, large)]
    spearman, kendall = (
        draws(small, large, assignments, stats.spearmanr),
        draws(small, large, assignments, stats.kendalltau),
    )
    s_point, k_point = stats.spearmanr(*point).statistic, stats.kendalltau(*point).statistic
    return Correlation(
        shared=len(assignments),
        spearman=float(s_point),
        spearman_ci=_interval(s_point, spearman),
        kendall=float(k_point),
        kendall_ci=_interval(k_point, kendall),
    )


def draws(small: fitted.Fit, large: fitted.Fit, assignments: pd.DataFrame, rank=stats.spearmanr) -> np.ndarray:
    """The rank correlation of each of DRAWS joint posterior draws of the two sizes' expected values."""
    rng = np.random.default_rng(SEED)
    drawn = [f.draws(assignments, DRAWS, rng) for f in (small, large)]
    return np.array([rank(a, b).statistic for a, b in zip(*drawn, strict=True)])


def why_none(small: fitted.Fit, large: fitted.Fit, assignments: pd.DataFrame) -> str | None:
    """Why there is no rank correlation of these assignments, or None when there is one."""
    if len(assignments) < MIN_SHARED:
        return f"fewer than {MIN_SHARED} assignments trained at both sizes"
    flat = [name for name, f in (("smaller", small), ("larger", large)) if np.ptp(f.predict(assignments)[0]) == 0]
    return f"the {flat[0]} size's model gives them all one expected value" if flat else None


def _interval(point: float, drawn: np.ndarray) -> tuple[float, float]:
    """The 95% interval: the draws' 2.5% and 97.5% points, widened to the basic (reverse percentile) bootstrap
    interval, 2 x point - those, where that reaches further, within [-1, 1]. A draw adds the models' noise to
    expected values that already carry it, so near +-1 the draws' correlation sits below the point as the
    point sits below the truth, and the percentiles alone never reached 1 for an order fully kept; near 0
    there is no such pull and the percentiles are right. Covering both is conservative where they differ
    (bench/ladder_coverage.py)."""
    lo, hi = np.nanpercentile(drawn, [2.5, 97.5])
    return float(max(-1.0, min(lo, 2 * point - hi))), float(min(1.0, max(hi, 2 * point - lo)))


def transfer_ready(small: pd.DataFrame, objective: str) -> bool:
    """Whether the smaller size's trials resolve an effect on `objective` that a promotion could carry (none
    where it has no records, as a promotion of named assignments may)."""
    if small.empty:
        return False
    found = effects.fit(small, objective)
    return found is not None and bool(found.effects()["resolved"].any())


def transfer(small: fitted.Fit, large: fitted.Fit) -> pd.DataFrame:
    """Each effect resolved at the smaller size: `effect` and its 95% half-width `ci95` there, `effect_large`,
    `ci95_large` and `resolved_large` at the larger, then `sign` ("holds", "reverses", "inside noise", "not
    testable" while the larger fit is shrunk, or "not estimated" where it has no such term) and `size`
    ("different", "close", or "undetermined")."""
    here = small.effects()
    there = large.effects().set_index("term")
    rows = []
    for row in here[here["resolved"]].itertuples():
        if row.term not in there.index:
            rows.append({"term": row.term, "effect": row.effect, "ci95": row.ci95, "sign": "not estimated"})
            continue
        far = there.loc[row.term]
        same = math.copysign(1, far["effect"]) == math.copysign(1, row.effect)
        sign = ("holds" if same else "reverses") if far["resolved"] else "inside noise"
        if not large.testable:
            sign = "not testable"
        close = abs(far["effect"] - row.effect) <= Z95 * math.hypot(row.se, far["se"])
        size = "different" if not close else "close" if far["resolved"] and large.testable else "undetermined"
        rows.append(
            {
                "term": row.term,
                "effect": row.effect,
                "ci95": row.ci95,
                "effect_large": far["effect"],
                "ci95_large": far["ci95"],
                "resolved_large": bool(far["resolved"]),
                "sign": sign,
                "size": size,
            }
        )
    columns = ["term", "effect", "ci95", "effect_large", "ci95_large", "resolved_large", "sign", "size"]
    return pd.DataFrame(rows, columns=columns)


def shared_assignments(small: pd.DataFrame, large: pd.DataFrame) -> pd.DataFrame:
    """The assignments with a complete training at both sizes, as layer columns (sorted by assignment)."""
    done = [one_text(t)[0] for t in (small, large)]
    done = [t[t["state"] == State.COMPLETE] for t in done]
    both = sorted(set(done[0]["assignment"]) & set(done[1]["assignment"]))
    rows = done[1].drop_duplicates("assignment").set_index("assignment").loc[both].reset_index()
    return effects.layer_codes(rows)


def objective_of(objectives: dict[str, str]) -> str:
    """The objective a ladder is read on: val_loss where it is one, else the first."""
    return "val_loss" if "val_loss" in objectives else next(iter(objectives))


def text(small: pd.DataFrame, large: pd.DataFrame, objective: str) -> list[str]:
    """The ladder's answer for one objective in words: the ordering, then each resolved effect."""
    small, large = same_depth(small, large)
    fits = [effects.fit(t, objective) for t in (small, large)]
    if any(f is None for f in fits):
        return [
            f"{objective}: no noise model at one size yet (it needs 3 complete trainings of at least 2 assignments)"
        ]
    shared = shared_assignments(small, large)
    found = correlation(*fits, shared)
    lines = [found.text(objective) if found else f"{objective}: no rank correlation: {why_none(*fits, shared)}"]
    moved = transfer(*fits)
    if moved.empty:
        lines.append(f"no effect on {objective} is resolved at the smaller size: nothing to carry")
    for row in moved.itertuples():
        if row.sign == "not estimated":
            lines.append(f"  {row.term}: {row.effect:+.4f} at the smaller size; not estimated at the larger")
            continue
        lines.append(
            f"  {row.term}: {row.effect:+.4f} ± {row.ci95:.4f} -> {row.effect_large:+.4f} ± "
            f"{row.ci95_large:.4f}: sign {row.sign}, size {row.size}"
        )
    return lines


def trained(small: pd.DataFrame, large: pd.DataFrame, sizes: tuple[str, str]) -> str:
    """What each size trained, from its records: steps, tokens a training and per active parameter (a size
    may train the proxy's steps or scale them with its parameters: `[[scale]] tokens`)."""
    return "trained: " + "; ".join(f"{size} {budget(t)}" for size, t in zip(sizes, (small, large), strict=True))


def budget(trials: pd.DataFrame) -> str:
    """'250 steps, 4.1M tokens a training (14 per active parameter)' of a study's complete trainings."""
    done = trials[trials["state"] == State.COMPLETE]
    if done.empty:
        return "nothing yet"
    configs = [json.loads(c) for c in done["config_json"]]
    if not all("train" in c and "model" in c for c in configs):  # records written by hand (tests)
        return "not recorded"
    steps = sorted({c["train"]["steps"] for c in configs})
    tokens = (
        np.array([c["train"]["steps"] * c["train"]["micro_batch"] * c["model"]["seq_len"] for c in configs])
        * done["world_size"].to_numpy()
    )
    per_param = np.median(tokens / done["params_active"].to_numpy())
    return (
        f"{'/'.join(map(str, steps))} steps, {np.median(tokens) / 1e6:.3g}M tokens a training "
        f"({per_param:.3g} per active parameter)"
    )


def fronts(small: pd.DataFrame, large: pd.DataFrame, sizes: tuple[str, str]) -> list[str]:
    """Each size's expected front, one line each: member, probability of being on it, trainings."""
    lines = depth_text(small, large, sizes)
    small, large = same_depth(small, large)
    for size, trials in zip(sizes, (small, large), strict=True):
        found = expected.expected_front(trials, objectives_of(trials)) if len(trials) else None
        if found is None:
            lines.append(f"expected front at {size}: too few trainings for a noise model")
            continue
        front = found[0][found[0]["expected_front"]]
        tested = expected.testable(found[0])  # a shrunk model's P is no call
        members = [
            f"{a} ({f'P {p:.2f}' if tested else 'not testable yet'}, {n} trained)"
            for a, p, n in zip(front["assignment"], front["p_front"], front["trained"], strict=True)
        ]
        lines.append(f"expected front at {size}: {'; '.join(members)}")
    return lines


def link_of(results: Path, study: str) -> dict | None:
    """A promoted study's link to the study below it on the ladder (`LINK`), else None."""
    path = Path(results) / study / LINK
    return json.loads(path.read_text()) if path.is_file() else None


def rungs_below(results: Path, study: str) -> list[tuple[str, str]]:
    """(study, size) of each study under `study` on its ladder, the nearest first, down to the proxy's."""
    chain, link, seen = [], link_of(results, study), {study}
    while link is not None and link["source"] not in seen:  # links edited by hand may loop
        seen.add(link["source"])
        lower = link_of(results, link["source"])
        chain.append((link["source"], lower["size"] if lower else PROXY))
        link = lower
    return chain


def rungs_above(results: Path, study: str) -> list[tuple[str, str]]:
    """(study, size) of each study promoted from `study`, directly or from one of these, the nearest first
    (a rung added between two others later links to the same study as the one above it: both are kept)."""
    links = {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(results).glob(f"*/{LINK}"))}
    chain, frontier, seen = [], [study], {study}
    while frontier:
        up = [name for name, link in links.items() if link["source"] in frontier and name not in seen]
        chain += [(name, links[name]["size"]) for name in up]
        frontier, seen = up, seen | set(up)
    return chain


def section(results: Path, study: str, trials: pd.DataFrame) -> list[str]:
    """What `pareto` and the report show of a study on a ladder. A promoted one: the ladder from the size
    below (both expected fronts), and from the proxy where that is further down. Any with promotions above
    it: how its answer holds at each larger size."""
    results = Path(results)
    below, above = rungs_below(results, study), rungs_above(results, study)
    objective = objective_of(objectives_of(trials))
    lines = []
    if below:
        source, size = below[0][0], link_of(results, study)["size"]
        small = results_mod.load_trials(results, source)
        lines += [f"scale ladder: {study!r} is size {size} of {source!r}:"] + text(small, trials, objective)
        lines += [trained(small, trials, (below[0][1], size)), *fronts(small, trials, (below[0][1], size))]
        if len(below) > 1:
            proxy = below[-1][0]
            lines += [f"from the proxy {proxy!r} to {size}:"]
            lines += text(results_mod.load_trials(results, proxy), trials, objective)
    for name, size in above:
        lines += [f"scale ladder: from {study!r} to {size} ({name!r}):"]
        lines += text(trials, results_mod.load_trials(results, name), objective)
    if below or above:
        lines.append(cheapest_faithful(results, study, objective))
    return lines


def holds(small: pd.DataFrame, large: pd.DataFrame, objective: str) -> str | None:
    """None where the larger size holds the smaller one's answer: the rank correlation's 95% interval above 0
    and no effect the smaller size resolved resolved the other way; else why not."""
    small, large = same_depth(small, large)
    fits = [effects.fit(t, objective) for t in (small, large)]
    if any(f is None or not f.testable for f in fits):
        return "the noise model is not testable at both sizes yet"
    shared = shared_assignments(small, large)
    found = correlation(*fits, shared)
    if found is None:
        return f"no rank correlation ({why_none(*fits, shared)})"
    moved = transfer(*fits)
    turned = moved.loc[moved["sign"] == "reverses", "term"]
    if len(turned):
        return f"{turned.iloc[0]} reverses"
    if found.spearman_ci[0] <= 0:
        return f"the rank correlation's interval reaches {found.spearman_ci[0]:+.2f} (Spearman {found.spearman:+.2f})"
    return None


def cheapest_faithful(results: Path, study: str, objective: str) -> str:
    """The ladder's answer in one line: the smallest size whose answer every larger size trained holds
    (`holds`, each step to the next), or "none yet" and what would decide it."""
    own = link_of(results, study)
    chain = [
        *reversed(rungs_below(results, study)),
        (study, own["size"] if own else PROXY),
        *rungs_above(results, study),
    ]
    trials = {name: results_mod.load_trials(results, name) for name, _ in chain}
    why = [holds(trials[a], trials[b], objective) for (a, _), (b, _) in zip(chain, chain[1:], strict=False)]
    for i, (name, size) in enumerate(chain[:-1]):
        if all(w is None for w in why[i:]):
            return (
                f"cheapest faithful rung: {size} ({name!r}): every larger size trained holds its answer on "
                f"{objective} (rank correlation above 0, no resolved effect reversing)"
            )
    k = max(i for i, w in enumerate(why) if w is not None)
    (_, a), (_, b) = chain[k], chain[k + 1]
    if why[k].endswith("reverses"):
        decide = (
            "its answer does not carry: a parametrization that keeps activations' size as width grows "
            "(model.parametrization = 'mup') or a larger proxy might"
        )
    elif why[k].startswith("the rank correlation"):
        decide = (
            f"more assignments or seeds at both sizes would decide it (`moesearch promote SPACE --size {b} "
            "--max-seeds N`, N above the seeds trained)"
        )
    else:
        decide = f"training {b} (`moesearch promote --size {b}`) would decide it"
    return f"cheapest faithful rung: none yet: from {a} to {b}, {why[k]}; {decide}"
