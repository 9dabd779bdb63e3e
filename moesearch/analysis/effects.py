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
per study), so pure noise in eight layers does not come out with one resolved by chance (the test and the
intervals: `Fit.effects`, `Fit.testable` in `analysis/fitted.py`).
This module fits the model; the fit (`analysis/fitted.py`) keeps its coefficients' covariance, so it
predicts any assignment's expected value with an interval and draws from its posterior (the expected front,
`analysis/expected.py`). Its reading in words: `analysis/verdict.py`. Light: no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
from scipy import stats

from moesearch.analysis.fitted import MIN_DOF, Fit, Term
from moesearch.analysis.pareto import one_text
from moesearch.core.trial import State

OUTLIER_P = 0.01  # a training whose externally studentised residual has a Bonferroni p below this is set aside:
# 1 in 100 clean studies loses one training; a diverged one sits far below it (p < 1e-6 at 16 trainings)


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
