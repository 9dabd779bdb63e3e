"""Which layer positions prefer which activation: a per-position effect estimate from all trials.

An additive model, fitted by least squares over every complete trial (seed replicates included):
    objective = intercept + sum over layers of effect[layer, activation of that layer]
with each layer's first choice (gelu where allowed) the reference, so an effect is "this activation
at this layer instead of the reference, everything else alike". Standard errors come from the
residual variance (seed noise and interactions both land there), with a t interval of the residual
degrees of freedom. Few trials against many effects leave no degrees of freedom: then no estimate.
Light: numpy, pandas, scipy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from moesearch.analysis.pareto import one_text
from moesearch.vocab import State

COLUMNS = ["layer", "activation", "reference", "effect", "se", "ci95", "trials_with"]


def position_effects(trials: pd.DataFrame, objective: str = "val_loss") -> pd.DataFrame:
    """One row per layer and non-reference activation: effect on `objective`, its standard error and 95% half-width."""
    done = one_text(trials)[0]
    done = done[(done["state"] == State.COMPLETE) & done[objective].notna()]
    layers = sorted(c for c in done.columns if c.startswith("layer_"))
    columns, names = [np.ones(len(done))], []
    for i, layer in enumerate(layers):
        seen = sorted(done[layer].astype(str).unique(), key=lambda a: (a != "gelu", a))
        for activation in seen[1:]:
            columns.append((done[layer].astype(str) == activation).to_numpy(float))
            names.append((i, activation, seen[0]))
    X, y = np.column_stack(columns), done[objective].to_numpy(float)
    dof = len(y) - X.shape[1]
    if not names or dof < 1 or np.linalg.matrix_rank(X) < X.shape[1]:
        return pd.DataFrame(columns=COLUMNS)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    residual = y - X @ beta
    covariance = (residual @ residual / dof) * np.linalg.inv(X.T @ X)
    se = np.sqrt(np.diag(covariance))[1:]
    half = student_t.ppf(0.975, dof) * se
    return pd.DataFrame([{"layer": i, "activation": a, "reference": ref, "effect": b, "se": s, "ci95": h,
                          "trials_with": int(X[:, k + 1].sum())}
                         for k, ((i, a, ref), b, s, h) in enumerate(zip(names, beta[1:], se, half, strict=True))],
                        columns=COLUMNS)


def text(effects: pd.DataFrame, objective: str = "val_loss") -> list[str]:
    """One line per effect, saying whether its 95% interval excludes zero."""
    if effects.empty:
        return [f"per-position effects on {objective}: too few trials for an estimate (more trials than effects needed)"]
    lines = [f"per-position effects on {objective} (additive least squares over all complete trials, 95% interval):"]
    for r in effects.itertuples():
        clear = "clear" if abs(r.effect) > r.ci95 else "inside noise"
        lines.append(f"  layer {r.layer}: {r.activation} instead of {r.reference} {r.effect:+.4f} ± {r.ci95:.4f} ({clear})")
    return lines
