"""The coordinate check read out: each layer's activation size per width, and how much it grows from the
smallest width to the largest (flat under muP: a growth near 1x; standard with Adam: it grows with width)."""

from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

SITE_ORDER = ("attention", "ffn_hidden", "ffn_out", "residual", "logits")


def table(rows: pd.DataFrame, step: int | None = None) -> pd.DataFrame:
    """Mean |x| at `step` (default: the last) per parametrization, layer and site (rows) and d_model (columns),
    with `growth`: the largest width's over the smallest's."""
    at = rows[rows["step"] == (rows["step"].max() if step is None else step)]
    wide = at.pivot_table(index=["parametrization", "site", "layer"], columns="d_model", values="value")
    wide = wide.reindex(sorted(wide.columns), axis=1)
    wide["growth"] = wide[wide.columns[-1]] / wide[wide.columns[0]]
    order = {site: i for i, site in enumerate(SITE_ORDER)}
    return wide.sort_index(key=lambda index: index.map(order) if index.name == "site" else index)


def growth(rows: pd.DataFrame) -> pd.Series:
    """Per parametrization: the largest growth of any layer and site at the last step."""
    return table(rows)["growth"].groupby(level="parametrization").max()


def figure(rows: pd.DataFrame) -> Figure:
    """One row of panels per parametrization, one panel per site: mean |x| against d_model at the last step
    (solid) and the first (dashed), a line per layer; flat lines are what muP promises."""
    parametrizations = list(dict.fromkeys(rows["parametrization"]))
    sites = [s for s in SITE_ORDER if s in set(rows["site"])]
    fig = Figure(figsize=(3.0 * len(sites), 2.6 * len(parametrizations)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(parametrizations), len(sites), sharey="col", squeeze=False))
    colors = matplotlib.colormaps["viridis"]
    first, last = rows["step"].min(), rows["step"].max()
    n_layers = rows["layer"].max() + 1
    for (p, parametrization), (s, site) in itertools.product(enumerate(parametrizations), enumerate(sites)):
        ax = axes[p, s]
        mine = rows[(rows["parametrization"] == parametrization) & (rows["site"] == site)]
        for layer, of_layer in mine.groupby("layer"):
            color = colors(layer / max(1, n_layers - 1))
            for step, style in ((last, "-"), (first, "--")):
                line = of_layer[of_layer["step"] == step].sort_values("d_model")
                ax.plot(
                    line["d_model"],
                    line["value"],
                    style,
                    color=color,
                    marker="o",
                    ms=3,
                    label=f"layer {layer}" if step == last and site != "logits" else None,
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{parametrization}: {site}", fontsize=9)
        ax.set_xlabel("d_model")
    axes[0, 0].set_ylabel(f"mean |x| (step {last + 1} solid, {first + 1} dashed)")
    axes[0, 0].legend(fontsize=7)
    return fig
