"""A fitted noise model (`Fit`, made by `analysis/effects.py`) and what it answers.

Its terms (`Term`: an activation at a layer, a neighbouring pair, a seed block), its coefficients and their
covariance give the per-layer effects and the every-layer contrasts with their intervals and the weighted
Holm test that calls them resolved (`Fit.effects`), the neighbour interactions as their own family
(`Fit.pairs`), any assignment's expected value (`Fit.predict`), posterior draws (`Fit.draws`, `Shocks`,
`factor`: the expected front, `analysis/expected.py`) and power (`Fit.resolvable`, `Fit.trials_to_resolve`).
Light: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from moesearch.analysis import power
from moesearch.core import design

MIN_DOF = design.ERROR_DOF  # residual dof least squares needs for a usable t test; fewer: shrinkage
LACK_OF_FIT_P = 0.05  # below this, main effects miss something: the neighbouring interactions are shown
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
    outlying: tuple[
        int, ...
    ] = ()  # rows (positions in the fitted trials) whose residual is extreme (`effects.OUTLIER_P`)
    set_aside: tuple[tuple[int, float], ...] = ()  # (trial, value) of trainings fitted without: outliers
    n_seeds: int = 1  # training seeds among the fitted trials: with one, every effect is that seed's
    seed_by_effect: tuple[float, int, float] | None = None  # (sd, dof) of the error the effects are tested
    # against across seeds, and the p of the seeds changing the effects (`effects._across_seeds`); None: within seeds
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
