"""What happened inside the layers, in lines: where each mixed layer's router sent its tokens, and what shape
each learnable layer learned (the fixed activation nearest it), pooled over a study's trainings.

`moesearch pareto` and the report print these after the answer; `moesearch train` prints one trial's.
Light: pandas, no torch.
"""

from __future__ import annotations

import json

import pandas as pd

from moesearch.core.activations import MIX, parts, run


def text(layers: pd.DataFrame, seeds: pd.Series) -> list[str]:
    """The routing lines of the mixed layers, then the learned-shape lines of the learnable ones (none for a
    study with neither, or records before schema 7); `seeds`: each trial's training seed, by trial."""
    return _routing(layers, seeds) + _learned(layers)


def _routing(layers: pd.DataFrame, seeds: pd.Series) -> list[str]:
    if "activation_share" not in layers:
        return []
    mixed = layers.dropna(subset=["activation_share"])
    mixed = mixed[mixed["activation"].astype(str).str.contains(MIX, regex=False)]
    if mixed.empty:
        return []
    lines = [
        "mixed layers: the share of a layer's routed training tokens its router sent to the first activation's "
        "experts (mean over trainings, 95% interval), against the even split the load-balancing loss pushes toward:"
    ]
    one_seed = False
    for (layer, choice), rows in mixed.groupby(["layer", "activation"], observed=True):
        first = parts(str(choice))[0]
        share = rows["activation_share"].map(lambda s, a=first: json.loads(s)[a])
        even = run(str(choice)).count(first) / len(run(str(choice)))
        others = "/".join(parts(str(choice))[1:])
        n_seeds = rows["trial"].map(seeds).nunique()
        one_seed |= n_seeds == 1 and len(rows) > 1
        lines.append(
            f"  layer {layer} {choice}: {first} {share.mean():.3f}{_against(share, even, first, others)}, "
            f"{n_trainings(len(share))} of {n_seeds} seed{'s' if n_seeds != 1 else ''}{_last(rows, first)}"
        )
    if one_seed:
        lines.append(
            "  (trainings of one seed share the router's start and the batches: a preference shown holds for that "
            "seed; `moesearch verify` trains others)"
        )
    return lines


def _against(share: pd.Series, even: float, first: str, others: str) -> str:
    """The share's 95% interval over trainings (Student's t) and what it says of the even split."""
    if len(share) < 2:
        return f" (even {even:g}; one training: no interval)"
    from scipy import stats

    half = stats.t.ppf(0.975, len(share) - 1) * share.std() / len(share) ** 0.5
    low, high = share.mean() - half, share.mean() + half
    said = f"prefers {first}" if low > even else f"prefers {others}" if high < even else "no preference shown"
    return f" ({low:.3f} to {high:.3f}; even {even:g}: {said})"


def _last(rows: pd.DataFrame, first: str) -> str:
    """The mean share on the held-out tokens at the last evaluation (schema 8), where recorded."""
    if "eval_activation_share" not in rows or (found := rows["eval_activation_share"].dropna()).empty:
        return ""
    last = found.map(lambda s: json.loads(s)[max(json.loads(s), key=int)][first])
    return f"; held-out tokens at the last evaluation {last.mean():.3f}"


def _learned(layers: pd.DataFrame) -> list[str]:
    if "nearest_fixed" not in layers or (learned := layers.dropna(subset=["nearest_fixed"])).empty:
        return []
    lines = ["learnable layers: the fixed activation nearest each layer's learned curve, and its parameters:"]
    for (layer, choice), rows in learned.groupby(["layer", "activation"], observed=True):
        counts = rows["nearest_fixed"].value_counts()
        values = pd.DataFrame([_means(json.loads(s)) for s in rows["learned"]]).mean()
        shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items())
        lines.append(
            f"  layer {layer} {choice}: nearest {counts.index[0]} ({counts.iloc[0]} of {n_trainings(len(rows))}); "
            f"{shown} (mean over experts and trainings)"
        )
    nearest = learned.groupby("layer")["nearest_fixed"].agg(lambda s: s.mode().iloc[0])
    if len(nearest) == layers["layer"].nunique():  # every layer learnable in some training: a whole assignment
        lines.append(f"  a categorical search can start from --layers {','.join(nearest)}")
    return lines


def _means(learned: dict[str, list[float]]) -> dict[str, float]:
    return {name: sum(values) / len(values) for name, values in learned.items()}


def n_trainings(count: int) -> str:
    return f"{count} training{'s' if count != 1 else ''}"
