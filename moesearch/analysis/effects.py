"""The noise model of a study: per-layer effects of each activation, pooled over every complete trial.

    objective = mean + sum over layers of effect[layer, activation]   (+ neighbouring layers' interactions)

Each layer's reference is gelu where the layer allows it (else its alphabetically first choice), so an
effect is "this activation at this layer instead of the reference, everything else alike". Every trial
informs every layer's effect at once, seed replicates included, which is how a study learns more than its
single trainings say.
- Enough trials: least squares (statsmodels OLS). Where assignments were trained more than once, their
  spread is the pure error, and the lack-of-fit F test (the main-effects model against one mean per
  assignment, statsmodels' anova_lm) says whether main effects miss something. The interactions of
  neighbouring layers are fitted beside them whenever the trials allow, and tested as their own family
  (`Fit.pairs`), so the layers' effects keep one meaning (averaged over the other layers) and no test is
  chosen by another on the same data.
- Effects about as many as the trials: Bayesian ridge (scikit-learn), which shrinks effects toward zero by
  a prior whose width the data choose, so even a small study gets an estimate. With so few residual
  degrees of freedom its noise estimate can collapse (it nearly interpolates), so its intervals are a
  guide, never a test: nothing is called resolved until least squares can run (`testable`).
Beside the layers' effects, one contrast per activation every layer may take: that activation everywhere
instead of the reference everywhere (all-swiglu against all-gelu), the question a study asks first and
the one it answers soonest, since every layer's trials inform it.
"Resolved" is a test over the whole family: Holm's step-down test at a family-wise 5%, weighted so that the
every-layer contrasts hold half of it and the layers' effects share the other half (fixed, never chosen
per study), so pure noise in eight layers does not come out with one resolved by chance.
A fit keeps its coefficients' covariance, so it predicts any assignment's expected value with an interval
and draws from its posterior (the expected front, `analysis/expected.py`). Its reading in words:
`analysis/verdict.py`. Light: no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from moesearch.analysis import power
from moesearch.analysis.pareto import one_text
from moesearch.core import design
from moesearch.core.trial import State

MIN_DOF = design.ERROR_DOF  # residual dof least squares needs for a usable t test; fewer: shrinkage
LACK_OF_FIT_P = 0.05  # below this, main effects miss something: the neighbouring interactions are shown
OUTLIER_P = 0.01  # a training whose externally studentised residual has a Bonferroni p below this is set aside:
# 1 in 100 clean studies loses one training; a diverged one sits far below it (p < 1e-6 at 16 trainings)
ALPHA = 0.05  # the family-wise error rate of the resolved calls (weighted Holm over the fit's effects)
PAIRS_ALPHA = 0.025  # the neighbour interactions' own family: with ALPHA, pure noise calls something in < 7.5%
UNIFORM_WEIGHT = 0.5  # the every-layer contrasts' share of ALPHA (0 < it < 1): the study's first question
POWER = 0.8  # "resolvable": the effect the test finds this often
EVERY_LAYER = "every layer"  # the `kind` of a contrast row: an activation at every layer against the reference
COLUMNS = ["term", "kind", "layer", "activation", "reference", "effect", "se", "ci95", "resolved", "trials_with"]


@dataclass(frozen=True)
class Term:
    """One column of the model: an activation at one layer, or a pair at two neighbouring layers."""

    layers: tuple[int, ...]
    activations: tuple[str, ...]
    references: tuple[str, ...]
    seed: int | None = None  # a block: trainings of this seed against the first seed's (common random numbers)

    @property
    def label(self) -> str:
        if self.seed is not None:
            return f"seed {self.seed} (block)"
        if len(self.layers) == 1:
            return f"layer {self.layers[0]}: {self.activations[0]} instead of {self.references[0]}"
        return f"layers {self.layers[0]}+{self.layers[1]}: {' with '.join(self.activations)} (interaction)"

    def column(self, codes: pd.DataFrame) -> np.ndarray:
        """1 where every layer of the term takes its activation (a block: where the training had its seed)."""
        if self.seed is not None:
            return (codes["seed"].to_numpy() == self.seed).astype(float)
        return np.logical_and.reduce(
            [codes.iloc[:, i].to_numpy() == a for i, a in zip(self.layers, self.activations, strict=True)]
        ).astype(float)


@dataclass(frozen=True)
class Fit:
    """A fitted model of one objective, in centred form: value = y_mean + (x - x_mean) @ beta."""

    objective: str
    method: str  # "least squares", "least squares with neighbour interactions", "bayesian ridge"
    choices: list[list[str]]  # per layer, the activations seen, reference first
    terms: list[Term]
    x_mean: np.ndarray
    y_mean: float
    beta: np.ndarray
    cov: np.ndarray  # of beta
    mean_var: float  # of y_mean, independent of beta in the centred form
    sigma: float  # residual standard deviation: one training's noise plus what the model misses
    dof: float  # of the t intervals; inf for the Bayesian fit
    n_trials: int
    n_assignments: int
    pure_error: tuple[float, int] | None  # (sd, degrees of freedom) from replicated assignments
    lack_of_fit: tuple[float, float] | None  # (F, p) of main effects against one mean per assignment
    trials_with: np.ndarray  # per term, the trials that have it
    aliased: bool = False  # trials enough, but their assignments cannot tell some terms apart (more seeds won't)
    outlying: tuple[int, ...] = ()  # rows (positions in the fitted trials) whose residual is extreme (`OUTLIER_P`)
    set_aside: tuple[tuple[int, float], ...] = ()  # (trial, value) of trainings fitted without: outliers
    n_seeds: int = 1  # training seeds among the fitted trials: with one, every effect is that seed's
    seed_by_effect: tuple[float, int, float] | None = None  # (sd, dof) of the error the effects are tested
    # against across seeds, and the p of the seeds changing the effects (`_across_seeds`); None: within seeds
    interactions: Fit | None = None  # these effects with the neighbouring pairs: the pairs' own family (`pairs`)
    matters: float | None = None  # the effect that matters on this objective as the space set it (`verdict.size_for`)

    def design(self, assignments: pd.DataFrame) -> np.ndarray:
        """The model's columns for rows of layer activations (one column per layer, in order). Rows without a
        seed are predicted over the seeds as trained (a block at its mean: no contribution once centred)."""
        if not self.terms:
            return np.zeros((len(assignments), 0))
        return np.column_stack(
            [
                np.full(len(assignments), m)
                if t.seed is not None and "seed" not in assignments
                else t.column(assignments)
                for t, m in zip(self.terms, self.x_mean, strict=True)
            ]
        )

    @property
    def exact(self) -> bool:
        """An objective the model fits without residual (an analytic cost): its ties are real ties."""
        return self.sigma <= 1e-9 * max(1.0, abs(self.y_mean))

    def predict(self, assignments: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Expected value of each assignment and its standard error."""
        centred = self.design(assignments) - self.x_mean
        if self.exact:  # rounding error must not break a tie between equally costly assignments
            scale = max(1.0, abs(self.y_mean))
            return np.round((self.y_mean + centred @ self.beta) / scale, 9) * scale, np.zeros(len(centred))
        var = np.einsum("ij,jk,ik->i", centred, self.cov, centred) + self.mean_var
        return self.y_mean + centred @ self.beta, np.sqrt(np.maximum(var, 0))

    def difference(self, a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Expected value of each row of a minus the same row of b, and its standard error: the shared mean
        cancels, so the contrast is tighter than two predictions' intervals side by side."""
        dx = self.design(a) - self.design(b)
        if self.exact:
            return dx @ self.beta, np.zeros(len(dx))
        return dx @ self.beta, np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", dx, self.cov, dx), 0))

    def draws(
        self, assignments: pd.DataFrame, n: int, rng: np.random.Generator, shocks: Shocks | None = None
    ) -> np.ndarray:
        """n joint posterior draws of every assignment's expected value: shape (n, assignments). shocks: the
        standard draws to transform (shared with another objective's fit to correlate the two), else fresh."""
        if self.exact:
            return np.broadcast_to(self.predict(assignments)[0], (n, len(assignments)))
        centred = self.design(assignments) - self.x_mean
        if shocks is None:
            shocks = Shocks.draw(n, len(self.beta), self.dof, rng)
        beta = self.beta + shocks.normal @ factor(self.cov).T * shocks.scale[:, None]
        # the mean shifts every assignment alike (no dominance changes), so it is drawn on its own
        mean = self.y_mean + math.sqrt(self.mean_var) * rng.standard_normal(n)
        return mean[:, None] + beta @ centred.T

    @property
    def testable(self) -> bool:
        """Least squares with residual degrees of freedom: its t tests mean something (a shrunk fit's do not)."""
        return math.isfinite(self.dof)

    def quantile(self, family: int = 1) -> float:
        """The two-sided 95% multiplier of a standard error; of each of `family` intervals held jointly
        (Bonferroni: each at 5% / family)."""
        upper = 1 - 0.025 / family
        return float(stats.t.ppf(upper, self.dof)) if math.isfinite(self.dof) else float(stats.norm.ppf(upper))

    def effects(self) -> pd.DataFrame:
        """One row per term (`kind` "layer" or "pair"), then one per every-layer contrast (`kind`
        EVERY_LAYER): its effect, standard error, 95% half-width, and whether the weighted Holm test over
        all of these rows resolves it."""
        se = np.sqrt(np.diag(self.cov))
        terms = [
            {
                "term": t.label,
                "kind": "layer" if len(t.layers) == 1 else "pair",
                "layer": t.layers[0] if len(t.layers) == 1 else None,
                "activation": "+".join(t.activations),
                "reference": "+".join(t.references),
                "effect": b,
                "se": s,
                "trials_with": int(n),
            }
            for t, b, s, n in zip(self.terms, self.beta, se, self.trials_with, strict=True)
            if t.seed is None  # blocks are not effects of a choice
        ]
        uniform = self._uniform()
        rows = terms + uniform
        resolved = self._holm([_t(r["effect"], r["se"]) for r in rows], _weights(len(terms), len(uniform)))
        for row, r in zip(rows, resolved, strict=True):
            row.update(ci95=self.quantile() * row["se"], resolved=r)
        rows = pd.DataFrame(terms + uniform, columns=COLUMNS)
        shown = self.pairs()
        if (self.lack_of_fit and self.lack_of_fit[1] < LACK_OF_FIT_P) or shown["resolved"].any():
            rows = pd.concat([rows, shown], ignore_index=True)  # else untold: nothing says the layers interact
        return rows.astype({"layer": "Int64"})  # <NA>: not one layer's

    def pairs(self) -> pd.DataFrame:
        """The neighbouring layers' interactions, rows as `effects()`'s (`kind` "pair"), from the model with
        them (`interactions`), tested as their own family (Holm at ALPHA) whenever the trials can fit it: a
        rule stated before the data, never chosen by a test on the same data (a lack-of-fit test that let them
        in made 23% of the studies it fired in resolve an interaction that was not there), at PAIRS_ALPHA. The
        layers' and every-layer effects stay the main-effects model's, each averaged over the other layers."""
        wide = self.interactions
        if wide is None:
            return pd.DataFrame(columns=COLUMNS).astype({"resolved": bool})
        se = np.sqrt(np.diag(wide.cov))
        rows = [
            {
                "term": t.label,
                "kind": "pair",
                "layer": None,
                "activation": "+".join(t.activations),
                "reference": "+".join(t.references),
                "effect": b,
                "se": s,
                "trials_with": int(n),
            }
            for t, b, s, n in zip(wide.terms, wide.beta, se, wide.trials_with, strict=True)
            if len(t.layers) == 2
        ]
        resolved = wide._holm([_t(r["effect"], r["se"]) for r in rows], np.ones(len(rows)), PAIRS_ALPHA)
        for row, r in zip(rows, resolved, strict=True):
            row.update(ci95=wide.quantile() * row["se"], resolved=r)
        return pd.DataFrame(rows, columns=COLUMNS)

    @property
    def predictive(self) -> Fit:
        """The model that predicts assignments (the expected front): with the pairs where one is resolved."""
        return self.interactions if self.interactions and self.pairs()["resolved"].any() else self

    def _uniform(self) -> list[dict]:
        """The question a study asks first: an activation at every layer instead of the reference at every
        layer (all-swiglu against all-gelu). Its estimate is the difference of the model's two predictions,
        interactions included, its se from the coefficients' covariance; one test where a layer's effect is
        a quarter of it in a 4-layer space, so it resolves the direction long before any single layer.
        Only where the layers share their reference and the activation is a choice at every layer."""
        references = {layer[0] for layer in self.choices}
        if len(self.choices) < 2 or len(references) > 1:
            return []
        (reference,) = references
        rows = []
        for a in self.choices[0][1:]:
            if not all(a in layer for layer in self.choices):
                continue
            every, none = self.design(pd.DataFrame([[a] * len(self.choices), [reference] * len(self.choices)]))
            dx = every - none
            rows.append(
                {
                    "term": f"{EVERY_LAYER}: {a} instead of {reference}",
                    "kind": EVERY_LAYER,
                    "layer": None,
                    "activation": a,
                    "reference": reference,
                    "effect": float(dx @ self.beta),
                    "se": float(np.sqrt(max(dx @ self.cov @ dx, 0.0))),
                    "trials_with": self.n_trials,  # every trial informs it
                }
            )
        return rows

    def _holm(self, t_values: list[float], weights: np.ndarray, alpha: float = ALPHA) -> list[bool]:
        """Which effects the weighted Holm step-down test resolves at family-wise `alpha` (none in a shrunk
        fit): by p / weight ascending, each is resolved while p <= alpha x its weight / the weight of those
        not yet resolved (Holm 1979; equal weights: the usual Holm)."""
        if not self.testable or not t_values:
            return [False] * len(t_values)
        p = np.array([2 * stats.t.sf(abs(v), self.dof) for v in t_values])
        resolved = [False] * len(p)
        left = float(weights.sum())
        for k in np.argsort(p / weights, kind="stable"):
            if not p[k] <= alpha * weights[k] / left:  # a NaN p-value resolves nothing
                break
            resolved[k], left = True, left - weights[k]
        return resolved

    def _main_se(self) -> float | None:
        """The typical standard error of a main effect. Shrinkage narrows a posterior toward the prior, not
        toward the truth, so the Bayesian fit is judged by the se least squares would have in a balanced
        design: sigma * sqrt(1/with + 1/without)."""
        main = [i for i, t in enumerate(self.terms) if len(t.layers) == 1]
        if not main:
            return None
        if not self.testable:
            with_ = np.maximum(self.trials_with[main], 1)
            return float(np.median(self.sigma * np.sqrt(1 / with_ + 1 / np.maximum(self.n_trials - with_, 1))))
        return float(np.median(np.sqrt(np.diag(self.cov))[main]))

    def multiplier(self, dof: float) -> float:
        """se x this = the effect a two-sided t test finds POWER of the time, at the level of a layer's weight
        in the family (the weighted Holm test's first step, the strictest it asks): `power.multiplier`."""
        m = sum(t.seed is None for t in self.terms)
        level = ALPHA * _weights(m, len(self._uniform()))[0] if m else ALPHA
        return power.multiplier(level, dof, POWER)

    def _residual_dof(self, n: int) -> float:
        """Residual degrees of freedom of least squares with this model over `n` trials; across seeds, those of
        the seed-by-effect error, which grow with the seeds (trials like these: their seeds in proportion)."""
        if self.seed_by_effect:
            return self.seed_by_effect[1] * n / self.n_trials
        return n - len(self.terms) - 1

    @property
    def error_sd(self) -> float:
        """The sd the effects are tested against: the seed-by-effect error across seeds, else the residual."""
        return self.seed_by_effect[0] if self.seed_by_effect else self.sigma

    def trials_to_test(self) -> int:
        """Trials least squares needs to test this model's effects (MIN_DOF residual degrees of freedom), with
        assignments that tell its terms apart."""
        return len(self.terms) + 1 + MIN_DOF

    def resolvable(self) -> float | None:
        """The main effect these trials find POWER of the time (at the family-wise level); with no residual
        degrees of freedom yet, what the least-squares test would find once it has MIN_DOF of them."""
        se = self._main_se()
        if se is None:
            return None
        return se * self.multiplier(self.dof if self.testable else MIN_DOF)

    def trials_to_resolve(self, size: float) -> int | None:
        """Trials in all (like those so far) for a main effect of `size` to be found POWER of the time: an
        effect's standard error shrinks as 1/sqrt(trials) and the test's degrees of freedom grow with them.
        None without a main effect or for a size of 0."""
        se = self._main_se()
        if se is None or size <= 0:
            return None
        n = max(self.n_trials, len(self.terms) + 1 + MIN_DOF)
        for _ in range(100):  # a fixed point: the multiplier falls as n (and so the dof) grows
            need = se * math.sqrt(self.n_trials / n) * self.multiplier(self._residual_dof(n))
            if need <= size:
                return n
            n = max(n + 1, math.ceil(n * (need / size) ** 2))
        return n


def _t(effect: float, se: float) -> float:
    """The t statistic; an exact effect (se 0) is infinitely sure unless it is 0; an unknown se (NaN), NaN."""
    if se > 0:
        return effect / se
    if se == 0:
        return math.inf if effect else 0.0
    return math.nan


def _weights(terms: int, uniform: int) -> np.ndarray:
    """Each row's share of ALPHA: the every-layer contrasts share UNIFORM_WEIGHT, the terms the rest (all
    alike when there is no contrast). So the study's first question, is the activation better here at all,
    is not diluted by eight layers' questions, and a layer's effect is still tested when it is not."""
    if not uniform:
        return np.full(terms, 1.0 / max(terms, 1))
    if not terms:
        return np.full(uniform, 1.0 / uniform)
    return np.array([(1 - UNIFORM_WEIGHT) / terms] * terms + [UNIFORM_WEIGHT / uniform] * uniform)


def fit(trials: pd.DataFrame, objective: str = "val_loss", set_aside: bool = True) -> Fit | None:
    """The noise model of `objective` (`_fit`), with the effect that matters as the newest record gives it."""
    found = _fit(trials, objective, set_aside)
    return None if found is None else dataclasses.replace(found, matters=_matters(trials, objective))


def _matters(trials: pd.DataFrame, objective: str) -> float | None:
    """search.effect_size of `objective` as the newest record carries it (None: not set, or records before it)."""
    if "effect_size" not in trials or trials.empty:
        return None
    texts = trials.sort_values("trial")["effect_size"].dropna().astype(str)
    return json.loads(texts.iloc[-1]).get(objective) if len(texts) else None


def _fit(trials: pd.DataFrame, objective: str = "val_loss", set_aside: bool = True) -> Fit | None:
    """The noise model of `objective` over the study's complete trials; None with fewer than 3 trials
    or 2 assignments (nothing to pool). set_aside: a training whose residual under main effects is extreme
    (externally studentised, Bonferroni p below OUTLIER_P over the trainings: statsmodels' outlier test) is
    set aside and the model fitted without it (`Fit.set_aside`), where least squares keeps 2 x MIN_DOF residual
    degrees of freedom without it (with fewer, dropping the largest residual would shrink the noise estimate
    too much to test against)."""
    done = one_text(trials)[0]
    done = done[(done["state"] == State.COMPLETE) & done[objective].notna()]
    if len(done) < 3 or done["assignment"].nunique() < 2:
        return None
    codes = layer_codes(done)
    choices = [sorted(codes[c].unique(), key=lambda a: (a != "gelu", a)) for c in codes.columns]
    main = [Term((i,), (a,), (layer[0],)) for i, layer in enumerate(choices) for a in layer[1:]]
    blocks = seed_blocks(done)
    codes["seed"] = done["seed"].to_numpy()
    main += blocks
    y = done[objective].to_numpy(float)
    # one mean per assignment (and seed block): the model that misses nothing, for pure error and lack of fit
    cells = pd.get_dummies(done["assignment"].astype(str)).to_numpy(float)
    if blocks:
        cells = np.column_stack([cells] + [b.column(codes) for b in blocks])
    found = _least_squares(objective, choices, main, codes, y, cells)
    if found is None:
        shrunk = _bayesian_ridge(objective, choices, main, codes, y, done["assignment"].nunique())
        # enough trials for least squares, so it refused for collinear columns: these assignments alias terms
        return dataclasses.replace(shrunk, aliased=len(y) - len(main) - 1 >= MIN_DOF, n_seeds=done["seed"].nunique())
    found = dataclasses.replace(found, n_seeds=int(done["seed"].nunique()))
    if found.outlying and set_aside:
        # one diverging or broken training must not rewrite the verdict: fit without it, once, and say so
        numbers = done["trial"].to_numpy()[list(found.outlying)]
        kept = fit(trials[~trials["trial"].isin(numbers)], objective, set_aside=False)
        if kept is not None and kept.testable and kept.dof >= 2 * MIN_DOF:  # few dof left: its noise too unsure
            values = done[objective].to_numpy(float)[list(found.outlying)]
            return dataclasses.replace(kept, set_aside=tuple(zip(map(int, numbers), map(float, values), strict=True)))
    found = _across_seeds(_with_seed_spread(found), codes, y)
    pairs = [
        Term((i, i + 1), (a, b), (choices[i][0], choices[i + 1][0]))
        for i in range(len(choices) - 1)
        for a in choices[i][1:]
        for b in choices[i + 1][1:]
    ]
    wider = _least_squares(
        objective, choices, main + pairs, codes, y, cells, "least squares with neighbour interactions"
    )
    if pairs and wider is not None:
        wider = dataclasses.replace(wider, n_seeds=found.n_seeds)
        found = dataclasses.replace(found, interactions=_across_seeds(_with_seed_spread(wider), codes, y))
    return found


def _across_seeds(found: Fit, codes: pd.DataFrame, y: np.ndarray) -> Fit:
    """Effects that hold across seeds. Under common random numbers a seed changes the effects, not only the
    level (bench/data/hard8-lr1e-3: layer 0 +0.019 at seed 0, +0.011 at seed 1, intervals apart), so the
    error of an effect meant for any seed is its seed-by-effect variation, as the block-by-treatment
    interaction is the error of a randomised block design (Montgomery, Design and Analysis of Experiments,
    4-3; seeds random): the model with every term's seed interactions (the estimable ones) against this one
    gives their mean square, whose expectation is the within-seed noise plus the effects' seed variance. The
    effects keep their estimates (averaged over the seeds); their covariance takes that mean square for the
    residual one and its degrees of freedom (the exact test of the design), or the residual mean square of
    the model with the interactions where that is larger (a seed variance estimated below 0 is taken as 0).
    Unchanged without two seeds as blocks, for an exact objective, or where fewer than MIN_DOF seed
    interactions are estimable (only the baselines at more seeds: one contrast seen across seeds says little
    of the layers'): then the verdict says the effects are the trained seeds'."""
    import statsmodels.api as sm

    blocks = [t for t in found.terms if t.seed is not None]
    if not blocks or found.exact or not found.testable:
        return found
    X = np.column_stack([np.ones(len(y))] + [t.column(codes) for t in found.terms])
    rank = np.linalg.matrix_rank(X)
    for t in (t for t in found.terms if t.seed is None):
        for b in blocks:
            wider = np.column_stack([X, t.column(codes) * b.column(codes)])
            if np.linalg.matrix_rank(wider) > rank:
                X, rank = wider, rank + 1
    extra = X.shape[1] - 1 - len(found.terms)
    full = sm.OLS(y, X).fit()
    if extra < MIN_DOF or full.df_resid < 1:  # a design rule, not a look at the data: no selection
        return found
    additive = found.sigma**2 * found.dof
    mean_square = max(additive - full.ssr, 0.0) / extra
    p = float(stats.f.sf(mean_square / full.scale, extra, full.df_resid)) if full.scale > 0 else 0.0
    # an average over the seeds is never surer than the noise within them lets it be: a seed-by-effect mean
    # square below the residual one is chance (the seeds' variance estimated below 0), so that one is used
    error, dof = (mean_square, extra) if mean_square >= full.scale else (full.scale, int(full.df_resid))
    return dataclasses.replace(
        found,
        cov=found.cov * error / found.sigma**2,
        dof=float(dof),
        seed_by_effect=(math.sqrt(error), dof, p),
    )


def _with_seed_spread(found: Fit) -> Fit:
    """Under seed blocks a prediction is the mean over the trained seeds; as an expected value over all
    seeds it is also off by the seeds' own spread, estimated from the blocks (seed k's offset from the
    first): its variance over the k seeds, divided by k, joins the mean's variance. Differences between
    assignments share the offset, so comparisons (and the front's probabilities) do not change."""
    blocks = [b for t, b in zip(found.terms, found.beta, strict=True) if t.seed is not None]
    if not blocks:
        return found
    offsets = np.array([0.0, *blocks])
    return dataclasses.replace(found, mean_var=found.mean_var + float(np.var(offsets, ddof=1)) / len(offsets))


def seed_blocks(done: pd.DataFrame) -> list[Term]:
    """Under common random numbers every training of one seed shares its draws, so a seed is a block whose
    effect the model removes (each seed but the first a term): the layers' effects are then estimated
    from comparisons within seeds, as paired differences are. Records of one global generator share
    little beyond their data order: no blocks."""
    seeds = sorted(done["seed"].unique())
    if len(seeds) < 2 or (done["random_streams"] != "crn").any():
        return []
    return [Term((), (), (), seed=int(s)) for s in seeds[1:]]


def layer_codes(rows: pd.DataFrame) -> pd.DataFrame:
    """The layer columns (layer_00, ...) as plain strings, in layer order."""
    layers = sorted(c for c in rows.columns if c.startswith("layer_"))
    return pd.DataFrame({c: rows[c].astype(str).to_numpy() for c in layers})


def _least_squares(
    objective: str,
    choices: list[list[str]],
    terms: list[Term],
    codes: pd.DataFrame,
    y: np.ndarray,
    cells: np.ndarray,
    method: str = "least squares",
) -> Fit | None:
    """OLS on the centred columns; None when the columns are collinear or leave fewer than MIN_DOF."""
    import statsmodels.api as sm
    from statsmodels.stats.anova import anova_lm

    X = np.column_stack([t.column(codes) for t in terms]) if terms else np.zeros((len(y), 0))
    if len(y) - X.shape[1] - 1 < MIN_DOF or np.linalg.matrix_rank(np.column_stack([np.ones(len(y)), X])) <= X.shape[1]:
        return None
    x_mean = X.mean(axis=0)
    model = sm.OLS(y, sm.add_constant(X - x_mean, has_constant="add")).fit()
    cov = np.asarray(model.cov_params())
    n_assignments = len({tuple(row) for row in codes.drop(columns="seed").itertuples(index=False)})
    pure = lack = None
    with np.errstate(divide="ignore", invalid="ignore"):  # a row with leverage 1 fixes its own fit: NaN, no warning
        tested = np.asarray(model.outlier_test(method="bonf"))[:, 2]  # Bonferroni p
    outlying = tuple(int(i) for i in np.flatnonzero(np.nan_to_num(tested, nan=1.0) < OUTLIER_P))
    if cells.shape[1] < len(y):  # replicates: the cells' spread is pure error
        saturated = sm.OLS(y, cells).fit()
        pure = (math.sqrt(saturated.scale), int(saturated.df_resid))
        if saturated.df_resid < model.df_resid:  # the cells fit more than main effects: lack of fit is testable
            table = anova_lm(model, saturated)
            lack = (float(table["F"].iloc[1]), float(table["Pr(>F)"].iloc[1]))
    return Fit(
        objective,
        method,
        choices,
        terms,
        x_mean,
        float(model.params[0]),
        np.asarray(model.params[1:]),
        cov[1:, 1:],
        float(cov[0, 0]),
        math.sqrt(model.scale),
        float(model.df_resid),
        len(y),
        n_assignments,
        pure,
        lack,
        X.sum(axis=0),
        outlying=outlying,
    )


def _bayesian_ridge(
    objective: str, choices: list[list[str]], terms: list[Term], codes: pd.DataFrame, y: np.ndarray, n_assignments: int
) -> Fit:
    """Effects shrunk toward 0 by a Gaussian prior whose precision, like the noise's, is fitted (evidence
    maximisation): wide intervals where the trials say little."""
    from sklearn.linear_model import BayesianRidge

    X = np.column_stack([t.column(codes) for t in terms])
    model = BayesianRidge(fit_intercept=True).fit(X, y)
    noise_var = 1.0 / model.alpha_
    return Fit(
        objective,
        "bayesian ridge",
        choices,
        terms,
        X.mean(axis=0),
        float(y.mean()),
        model.coef_,
        model.sigma_,
        noise_var / len(y),
        math.sqrt(noise_var),
        math.inf,
        len(y),
        n_assignments,
        None,
        None,
        X.sum(axis=0),
    )


@dataclass(frozen=True)
class Shocks:
    """The standard draws behind n posterior draws of p coefficients: beta = beta_hat + scale * normal @ L.T,
    with L the Cholesky factor of the coefficients' covariance (Student's t with the fit's degrees of
    freedom: scale = sqrt(dof / chi2(dof)); 1 when they are infinite). Two least-squares fits on the same
    trials and terms have covariances proportional to one (X'X)^-1, so their factors are too, and shocks
    whose normals correlate as the two objectives' residuals do give their joint posterior; their scales
    share one uniform draw (`scales`), so fits of different degrees of freedom each keep their own t."""

    normal: np.ndarray  # (n, p), standard normal
    scale: np.ndarray  # (n,)

    @staticmethod
    def draw(n: int, p: int, dof: float, rng: np.random.Generator) -> Shocks:
        return Shocks(rng.standard_normal((n, p)), Shocks.scales(rng.uniform(size=n), dof))

    @staticmethod
    def scales(u: np.ndarray, dof: float) -> np.ndarray:
        """The t scales sqrt(dof / chi2(dof)) at the chi-square's quantiles u."""
        return np.sqrt(dof / stats.chi2.ppf(u, dof)) if math.isfinite(dof) else np.ones(len(u))


def factor(cov: np.ndarray) -> np.ndarray:
    """L with L @ L.T = cov, the same up to scale for proportional covariances (what joint draws rely on):
    Cholesky, which is unique; where rounding leaves cov not quite positive definite, the eigenvectors
    scaled by the roots of their eigenvalues, each vector's sign fixed (largest entry positive)."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(cov)
        v = v * np.sign(v[np.abs(v).argmax(axis=0), np.arange(v.shape[1])])
        return v * np.sqrt(np.clip(w, 0, None))


def every_layer(rows: pd.DataFrame) -> pd.Series:
    """Which rows of `Fit.effects()` are every-layer contrasts, not one layer's (or pair's) effect."""
    return rows["kind"] == EVERY_LAYER
