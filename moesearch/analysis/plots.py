"""The study's pictures, drawn with matplotlib (Agg: no screen needed) from its Parquet tables.

    front.png        the answer in objective space, a panel per cost: where the noise model can be tested,
                     the expected front with its intervals, every candidate coloured by P(non-dominated),
                     the knee and the baselines named, single trainings faint behind; before that, the
                     observed front as its staircase, dominated points faded, baselines, the knee and the
                     best first objective labelled
    hypervolume.png  hypervolume after each trial of the search, in the objectives' units
    layers.png       which activation each layer takes, along the front and for the baselines
    curves.png       training loss (smoothed) and val_loss over tokens, front members and baselines
    hidden.png       FFN hidden activations near zero, per layer and activation
    learned.png      each learnable layer's learned curve; routing.png: each mixed layer's router at each evaluation
    effects.png      the noise model's answer: each layer's effect and the every-layer contrast with its 95%
                     interval, resolved ones filled, a panel per noisy objective
Figures are built without pyplot: no global figure registry to leak into, no backend chosen for
the caller (a notebook keeps its own), and `Figure.savefig` renders PNG anywhere. Light: no torch.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, MaxNLocator

from moesearch.analysis.answer import Answer, answer
from moesearch.analysis.pareto import Analysis, header
from moesearch.analysis.within_layers import n_trainings
from moesearch.core.activations import CURVE_X, NAMES, parts, run
from moesearch.core.assignment import Assignment, baseline_name
from moesearch.core.files import write_atomic
from moesearch.core.metrics import METRICS, fmt
from moesearch.core.results import routing_shares
from moesearch.core.trial import State

COLORS = dict(zip(NAMES, matplotlib.colormaps["tab10"].colors, strict=False))  # one colour per activation
NAMES_PNG = ("effects", "front", "hypervolume", "layers", "curves", "hidden", "outliers", "quantization")  # schema 3


def colour(name: str) -> tuple:
    """An activation's colour; a mix of them (gelu+swiglu) one of its own, the same in every picture."""
    if name in COLORS:
        return COLORS[name]
    mixes = matplotlib.colormaps["Pastel1"].colors
    return mixes[sum(map(ord, name)) % len(mixes)]


def _in_registry_order(name: str) -> tuple[int, str]:
    return (NAMES.index(name), "") if name in NAMES else (len(NAMES), name)


def shown(analysis: Analysis) -> pd.DataFrame:
    """Front members then baselines, each by ascending first objective: the assignments the pictures single out."""
    t = analysis.table
    picked = t[t["pareto"] | t["baseline"]]
    return picked.sort_values(["pareto", next(iter(analysis.objectives))], ascending=[False, True])


def label(row) -> str:
    return baseline_name(row["assignment"]) if row["baseline"] else row["assignment"]


def front(analysis: Analysis, expected: pd.DataFrame | None = None, told: Answer | None = None) -> Figure:
    """Every pair of objectives (one panel each: two objectives, one panel; three, three), the front marked.

    told: the answer (`analysis/answer.py`), where the noise model can be tested: the expected front leads
    (`_answer_panel`). Else the observed front; expected: the noise model's candidates
    (`analysis.expected.expected_front`) of a model not testable yet, its expected front drawn with 95%
    intervals and every observed front member and baseline at the model's expected value, linked to where
    its trainings landed.
    """
    if told is not None:
        return _answer_front(analysis, expected, told)
    first, *_ = analysis.objectives
    pairs = list(itertools.combinations(analysis.objectives, 2))
    t = analysis.table
    fig = Figure(figsize=(6.4 * len(pairs), 4.8))
    axes = fig.subplots(1, len(pairs), squeeze=False)
    on = t[t["pareto"]]
    best = on[first].idxmin() if analysis.objectives[first] == "minimize" else on[first].idxmax()
    singled = t[t["baseline"] | t["knee"] | (t.index == best)]
    for ax, (y, x) in zip(axes[0], pairs, strict=True):
        rest = t[~t["pareto"]]
        ax.scatter(rest[x], rest[y], color="grey", alpha=0.3, label="dominated")
        if len(pairs) == 1:  # a two-objective front is a staircase: each step is the region one point dominates
            ax.step(
                on.sort_values(x)[x],
                on.sort_values(x)[y],
                color="tab:blue",
                alpha=0.6,
                where="post" if analysis.objectives[x] == "minimize" else "pre",
            )
        ax.plot(
            on[x], on[y], "o", color="tab:blue", label="Pareto front" + (" (all objectives)" if len(pairs) > 1 else "")
        )
        spread = t[(t["seeds"] > 1) & (t["pareto"] | t["baseline"])]  # seed error bars (± sd) where measured
        if len(spread):
            ax.errorbar(
                spread[x],
                spread[y],
                xerr=spread[f"{x}_std"],
                yerr=spread[f"{y}_std"],
                fmt="none",
                ecolor="black",
                elinewidth=0.8,
                capsize=3,
                label="± sd over seeds",
            )
        if expected is not None:
            _expected(ax, expected, t[t["pareto"] | t["baseline"]], x, y)
        for index, row in singled.iterrows():
            if row["baseline"] or row["knee"]:
                _mark(ax, row[x], row[y], row["baseline"])
            notes = [n for n, yes in (("knee", row["knee"]), (f"best {first}", index == best)) if yes]
            _name(ax, row[x], row[y], label(row) + (f" ({', '.join(notes)})" if notes else ""))
        _finish(ax, x, y, analysis.objectives)
    fig.suptitle(
        "Assignments in objective space (means over seeds); stars: uniform baselines"
        + ("; every pair of objectives, the front is the front of all of them" if len(pairs) > 1 else "")
    )
    return fig


def _answer_front(analysis: Analysis, candidates: pd.DataFrame, told: Answer) -> Figure:
    """The answer in objective space: every candidate's predicted point coloured by its probability of being
    non-dominated, the expected front with 95% intervals, the knee and the baselines named at their expected
    values, and the single trainings faint behind (what they measured, noise and all)."""
    pairs = list(itertools.combinations(told.objectives, 2))
    fig = Figure(figsize=(6.4 * len(pairs) + 1, 4.8), layout="constrained")
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    t, on = told.table, told.table[told.table["front"]]
    for ax, (y, x) in zip(axes, pairs, strict=True):
        trained = analysis.table
        ax.scatter(trained[x], trained[y], color="grey", alpha=0.25, s=18, label="single trainings (means over seeds)")
        dots = ax.scatter(
            candidates[x], candidates[y], c=candidates["p_front"], cmap="viridis", vmin=0, vmax=1, s=22, zorder=2
        )
        ax.errorbar(
            on[x],
            on[y],
            xerr=_bars(on, x),
            yerr=_bars(on, y),
            fmt="none",
            ecolor="tab:orange",
            elinewidth=1,
            capsize=3,
            zorder=1,
            label="expected front (95% intervals)",
        )
        if len(pairs) == 1:
            ordered = on.sort_values(x)
            where = "post" if told.objectives[x] == "minimize" else "pre"
            ax.step(ordered[x], ordered[y], color="tab:orange", alpha=0.6, where=where)
        for _, row in on[~(on["knee"] | on["baseline"])].iterrows():  # the other members, named small
            ax.annotate(
                f"{row['assignment']}, P {row['p_front']:.2f}",
                (row[x], row[y]),
                textcoords="offset points",
                xytext=(6, -10),
                fontsize=7,
                color="tab:orange",
            )
        for _, row in t[t["knee"] | t["baseline"]].iterrows():
            _mark(ax, row[x], row[y], row["baseline"])
            name = baseline_name(row["assignment"]) if row["baseline"] else row["assignment"]
            note = ", knee" if row["knee"] and row["baseline"] else (" (knee)" if row["knee"] else "")
            _name(ax, row[x], row[y], f"{name}{note}, P {row['p_front']:.2f}")
        _finish(ax, x, y, told.objectives)
    fig.colorbar(dots, ax=list(axes), label="P(non-dominated), over the model's posterior draws")
    fig.suptitle(
        "The expected front: the noise model's predictions; diamond: its knee, stars: uniform baselines "
        "(expected values); grey: single trainings"
    )
    return fig


def _expected(ax, expected: pd.DataFrame, observed: pd.DataFrame, x: str, y: str) -> None:
    """The model's view: its expected front, and each observed point's expected value, with 95% intervals."""

    on = expected[expected["expected_front"]]
    ax.errorbar(
        on[x],
        on[y],
        xerr=_bars(on, x),
        yerr=_bars(on, y),
        fmt="s",
        mfc="none",
        color="tab:orange",
        elinewidth=0.8,
        capsize=2,
        label="expected front (noise model, 95% intervals)",
    )
    modelled = observed["assignment"][observed["assignment"].isin(expected["assignment"])]  # see expected.candidates
    seen = expected.set_index("assignment").loc[modelled].reset_index()
    ax.errorbar(
        seen[x],
        seen[y],
        xerr=_bars(seen, x),
        yerr=_bars(seen, y),
        fmt=".",
        color="tab:purple",
        elinewidth=0.6,
        capsize=2,
        alpha=0.7,
        label="observed front and baselines: expected value, 95%",
    )
    for (_, o), (_, e) in zip(observed.iterrows(), seen.iterrows(), strict=True):  # where the trainings landed
        ax.plot([o[x], e[x]], [o[y], e[y]], ":", color="tab:purple", linewidth=0.7, alpha=0.7)


def _bars(rows: pd.DataFrame, name: str) -> list[np.ndarray]:
    """Error bars from the point to each end of its 95% interval (<name>_lo, <name>_hi)."""
    return [(rows[name] - rows[f"{name}_lo"]).to_numpy(), (rows[f"{name}_hi"] - rows[name]).to_numpy()]


def _mark(ax, x: float, y: float, baseline: bool) -> None:
    """A uniform baseline's star or the knee's diamond."""
    ax.scatter(
        x,
        y,
        marker="*" if baseline else "D",
        s=160,
        zorder=3,
        color="tab:red" if baseline else "tab:green",
        edgecolor="black",
    )


def _name(ax, x: float, y: float, text: str) -> None:
    ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)


def _finish(ax, x: str, y: str, objectives: dict[str, str]) -> None:
    """Axis titles with units and direction, numbers that carry their magnitude, a grid and the legend."""
    ax.set_xlabel(header(x, objectives[x]))
    ax.set_ylabel(header(y, objectives[y]))
    _plain_numbers(ax.xaxis, x)
    _plain_numbers(ax.yaxis, y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _plain_numbers(axis, metric: str) -> None:
    """Tick labels that carry their own magnitude (8.47M FLOPs), never a '1e7' offset beside the axis."""
    counted = METRICS[metric][0] in ("FLOPs", "params", "tokens/s")
    axis.set_major_formatter(EngFormatter(sep="") if counted else FuncFormatter(lambda value, _: fmt(value)))


def hypervolume(analysis: Analysis) -> Figure:
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    h = analysis.history
    ax.step(h["trial"], h["hypervolume"], where="post", marker="o")
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"hypervolume [{' x '.join(METRICS[o][0] for o in analysis.objectives)}]")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt(value)))  # 3,400,000, not an offset
    ref = ", ".join(f"{o} {v:.4g}" for o, v in analysis.reference.items())
    ax.set_title(f"Hypervolume of the search so far (reference: {ref})", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def layers(analysis: Analysis) -> Figure:
    rows = shown(analysis)
    grid = np.array([Assignment.parse(a) for a in rows["assignment"]])
    names = list(NAMES) + sorted(set(grid.flat) - set(NAMES))  # the mixes after the activations
    codes = np.vectorize(names.index)(grid)
    fig = Figure(figsize=(1.2 + 0.9 * grid.shape[1], 1 + 0.45 * len(rows)))
    ax = fig.subplots()
    ax.imshow(codes, cmap=ListedColormap([colour(n) for n in names]), vmin=0, vmax=len(names) - 1, aspect="auto")
    for (i, j), name in np.ndenumerate(grid):
        ax.text(j, i, name, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(grid.shape[1]), [f"layer {j}" for j in range(grid.shape[1])])
    ax.set_yticks(
        range(len(rows)),
        [("* " if p else "") + label(r) for p, (_, r) in zip(rows["pareto"], rows.iterrows(), strict=True)],
    )
    ax.set_title("Activation per layer: front members (*) by first objective, then baselines", fontsize=9)
    return fig


def curves(analysis: Analysis, steps: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    top = []
    for _, row in shown(analysis).iterrows():
        mine = steps[steps["trial"] == row["trial"]].sort_values("step")
        if mine.empty:
            continue
        smooth = mine["train_loss"].rolling(max(1, len(mine) // 20), min_periods=1).mean()
        (line,) = ax.plot(mine["tokens"], smooth, linestyle="--" if row["baseline"] else "-", label=label(row))
        evals = mine.dropna(subset=["val_loss"])
        ax.plot(evals["tokens"], evals["val_loss"], "o", color=line.get_color())
        top.append(smooth.iloc[len(smooth) // 10])
    if top:  # the first 10% of training falls steeply and would hide the differences that matter
        ax.set_ylim(top=max(top))
    ax.set_xlabel("training tokens")
    ax.set_ylabel("loss [nats/token]")
    ax.set_title(
        "Training loss (lines, rolling mean over 5% of steps; y cut at the loss after 10%) and val_loss (dots), "
        "first trial of each",
        fontsize=8,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def hidden(layer_rows: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    mean = layer_rows.groupby(["activation", "layer"])["hidden_near_zero_frac"].mean().unstack("activation")
    for name in mean.columns:
        ax.plot(mean.index, mean[name], "o-", color=colour(name), label=name)
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of hidden values near zero")
    ax.set_xticks(mean.index)
    ax.set_title("FFN hidden activations with |h| < 0.01 on held-out text, mean over trials", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def outliers(layer_rows: pd.DataFrame) -> Figure | None:
    """Per layer and activation: how far the largest hidden value stands out (max |h| / RMS) and how
    heavy the tails are (excess kurtosis), mean over trials; None for records without them (schema 2)."""
    stats = layer_rows.dropna(subset=["hidden_max_over_rms"])
    if stats.empty:
        return None
    fig = Figure(figsize=(11, 4))
    for ax, column, title in zip(
        fig.subplots(1, 2),
        ("hidden_max_over_rms", "hidden_excess_kurtosis"),
        ("max |h| / RMS", "excess kurtosis (0: Gaussian)"),
        strict=True,
    ):
        mean = stats.groupby(["activation", "layer"], observed=True)[column].mean().unstack("activation")
        for name in mean.columns:
            ax.plot(mean.index, mean[name], "o-", color=colour(name), label=name)
        ax.set_xlabel("layer")
        ax.set_xticks(mean.index)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        "Outliers of the FFN hidden activation on held-out text, per layer and activation, mean over trials", fontsize=9
    )
    return fig


def learned(layer_rows: pd.DataFrame) -> Figure | None:
    """What each layer's learnable activation learned: its curve (mean over experts, then over trials) per
    layer, one panel per learnable activation, the layer's nearest fixed activation in its label; None
    without a learnable layer (or records before schema 7)."""
    if "learned_curve" not in layer_rows or (rows := layer_rows.dropna(subset=["learned_curve"])).empty:
        return None
    kinds = sorted(rows["activation"].unique())
    fig = Figure(figsize=(5.5 * len(kinds), 4))
    for ax, kind in zip(np.atleast_1d(fig.subplots(1, len(kinds))), kinds, strict=True):
        for layer, at in rows[rows["activation"] == kind].groupby("layer"):
            nearest = at["nearest_fixed"].mode().iloc[0]
            curve = np.mean(np.stack(at["learned_curve"].to_numpy()), axis=0)
            ax.plot(CURVE_X, curve, label=f"layer {layer} (nearest {nearest}, {n_trainings(len(at))})")
        ax.axhline(0, color="#888", lw=0.5)
        ax.set_xlabel("x (the FFN's hidden pre-activation)")
        ax.set_ylabel(f"{kind}(x) as learned")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Learned activations at the end of training, per layer (mean over experts and trainings)", fontsize=9)
    return fig


def routing(layer_rows: pd.DataFrame) -> Figure | None:
    """Whether a mixed layer's router came to prefer one activation: the share of the held-out tokens routed to
    the mix's first part (GELU in gelu+swiglu) at each evaluation, a panel per mix, a line per layer (the
    mean over trainings, each training faint), its even split dashed; None without a mixed layer (or before
    schema 8)."""
    if "eval_activation_share" not in layer_rows or (shares := routing_shares(layer_rows)).empty:
        return None
    mixes = sorted(shares["activation"].unique())
    fig = Figure(figsize=(5.5 * len(mixes), 4))
    for ax, mix in zip(np.atleast_1d(fig.subplots(1, len(mixes))), mixes, strict=True):
        first = parts(mix)[0]
        at = shares[(shares["activation"] == mix) & (shares["part"] == first)]
        for (layer, rows), colour_ in zip(at.groupby("layer"), itertools.cycle(f"C{i}" for i in range(10))):
            for _, one in rows.groupby("trial"):
                ax.plot(one["step"], one["share"], color=colour_, alpha=0.15, lw=0.8)
            mean = rows.groupby("step")["share"].mean()
            ax.plot(
                mean.index, mean, "o-", color=colour_, label=f"layer {layer} ({n_trainings(rows['trial'].nunique())})"
            )
        even = run(mix).count(first) / len(run(mix))
        ax.axhline(even, color="#888", ls="--", lw=1, label=f"even split ({even:g})")
        ax.set_ylim(0, 1)
        ax.set_xlabel("step")
        ax.set_ylabel(f"share of held-out tokens to {first}'s experts")
        ax.set_title(mix, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Mixed layers: what each router chose at each evaluation (mean over trainings; each faint)", fontsize=9
    )
    return fig


_FORMATS = {"int8": "o-", "int8_sym": "^:", "fp8": "s--"}  # the 8-bit formats and their line styles


def quantization(trials: pd.DataFrame) -> Figure | None:
    """The quantization gap against each layer's activation: per layer position, the mean gap of the
    complete trials with each activation there (affine INT8 solid, symmetric INT8 dotted, FP8 dashed; schema-3
    records have only the symmetric one); None without the metric."""
    gaps = [f"quant_gap_{fmt}" for fmt in _FORMATS]
    done = trials[(trials["state"] == State.COMPLETE) & trials[gaps].notna().any(axis=1)]
    if done.empty:
        return None
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    layers = sorted(c for c in done.columns if c.startswith("layer_"))
    for name in sorted({v for c in layers for v in done[c].astype(str).unique()}, key=_in_registry_order):
        for number_format, style in _FORMATS.items():
            gaps = [done.loc[done[c].astype(str) == name, f"quant_gap_{number_format}"].mean() for c in layers]
            if not all(np.isnan(gaps)):
                ax.plot(range(len(layers)), gaps, style, color=colour(name), label=f"{name}, {number_format}")
    ax.set_xticks(range(len(layers)), [f"layer {i}" for i in range(len(layers))])
    ax.set_ylabel("quantized val_loss - val_loss [nats/token]")
    ax.set_title(
        "What 8-bit FFN activations cost, by the activation a layer has (mean over complete trials)", fontsize=9
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def replay_curves(runs: dict[str, list], budget: float, unit: str) -> Figure:
    """Relative hypervolume against compute spent, per replayed arm: the median over seeds and the
    quartiles' band; an arm with pruning ("tpe+mo-asha") is dashed in its sampler's colour.
    runs: arm -> runs, each with `.at(budgets)` (`replay.arms.Run`)."""
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.subplots()
    grid = np.linspace(0, budget, 400)
    samplers = list(dict.fromkeys(name.split("+")[0] for name in runs))
    lowest = 1.0
    for name, arm_runs in runs.items():
        values = np.stack([run.at(grid) for run in arm_runs])
        q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75], axis=0)
        color = f"C{samplers.index(name.split('+')[0]) % 10}"
        ax.step(
            grid,
            median,
            where="post",
            label=f"{name} ({len(arm_runs)} seeds)",
            color=color,
            linestyle="--" if "+" in name else "-",
        )
        ax.fill_between(grid, q1, q3, step="post", alpha=0.12, color=color)
        lowest = min(lowest, float(q1[len(grid) // 10 :].min()))
    for target in (0.9, 0.95):
        ax.axhline(target, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel(f"compute spent [{unit}]")
    ax.set_ylabel("hypervolume / true hypervolume")
    ax.xaxis.set_major_formatter(EngFormatter())
    # zoomed on where arms differ (every band from a tenth of the way in), the 90% line always in view
    ax.set_ylim(max(0.0, min(0.85, np.floor(20 * lowest) / 20 - 0.05)), 1.01)
    ax.set_title("Replayed searches: median and quartiles over seeds (dashed: with pruning)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def effects_figure(fits: dict) -> Figure | None:
    """The question the tool exists to answer, as a picture: per noisy objective, each effect of the noise
    model (an activation at one layer instead of the reference; a neighbour pair; every layer at once) as
    a point with its 95% interval, resolved ones filled (weighted Holm at 5%), inside noise hollow. A shrunk
    model's estimates are drawn without intervals and marked not testable. None without a noisy fit."""
    noisy = {o: f for o, f in fits.items() if f is not None and not f.exact}
    if not noisy:
        return None
    rows = {o: f.effects() for o, f in noisy.items()}
    fig = Figure(figsize=(6.5 * len(noisy), 0.45 * max(len(r) for r in rows.values()) + 1.6), layout="constrained")
    for ax, (o, found) in zip(np.atleast_1d(fig.subplots(1, len(noisy), squeeze=False)[0]), noisy.items(), strict=True):
        table = rows[o].iloc[::-1]  # the first effect on top
        y = np.arange(len(table))
        every = (table["kind"] == "every layer").to_numpy()
        filled = table["resolved"].to_numpy(bool)
        x, half = table["effect"].to_numpy(float), table["ci95"].to_numpy(float)
        for mine, color, what in ((~every, "tab:blue", "a layer (or pair)"), (every, "tab:purple", "every layer")):
            if found.testable:
                ax.errorbar(x[mine], y[mine], xerr=half[mine], fmt="none", ecolor=color, capsize=3, lw=1.2)
            open_ = "inside noise" if found.testable else "not testable yet"
            for shown, style in ((mine & filled, {"color": color}), (mine & ~filled, {"facecolors": "white"})):
                if shown.any():
                    said = "resolved" if style.get("color") else open_
                    ax.scatter(x[shown], y[shown], edgecolors=color, zorder=3, label=f"{what}: {said}", **style)
        ax.axvline(0, color="grey", lw=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # signed, 4-digit labels: more would overlap
        ax.set_yticks(y, table["term"])
        unit = METRICS.get(o, ("",))[0]
        ax.set_xlabel(f"effect on {o} ({unit}); 95% intervals" if found.testable else f"shrunk estimate ({unit})")
        how = f"{found.method}, {found.n_trials} trainings" + ("" if found.testable else ": not testable yet")
        ax.set_title(f"{o}: {how}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    return fig


def draw_all(
    analysis: Analysis,
    steps: pd.DataFrame,
    layer_rows: pd.DataFrame,
    trials: pd.DataFrame | None = None,
    found: tuple | None = None,
) -> dict[str, Figure]:
    """Every picture of a study; outliers and quantization where the records have them (schema 3).

    found: `expected_front` of these trials, drawn on the front (None: the front alone)."""
    figures = {
        "effects": effects_figure(found[1]) if found else None,
        "front": front(analysis, found[0] if found else None, answer(analysis, found)),
        "hypervolume": hypervolume(analysis),
        "layers": layers(analysis),
        "curves": curves(analysis, steps),
        "hidden": hidden(layer_rows),
        "outliers": outliers(layer_rows),
        "quantization": quantization(trials) if trials is not None else None,
        "learned": learned(layer_rows),
        "routing": routing(layer_rows),
    }
    return {name: fig for name, fig in figures.items() if fig is not None}


def save(figures: dict[str, Figure], folder: Path) -> list[Path]:
    """One PNG per figure, each written whole."""
    return [save_png(fig, folder / f"{name}.png") for name, fig in figures.items()]


def save_png(fig: Figure, path: Path) -> Path:
    """One figure as a PNG, written whole."""
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
