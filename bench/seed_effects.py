"""Do the noise model's intervals cover an effect that holds across seeds? (issue 32, item 1)

    python bench/seed_effects.py [--studies 400] [--layers 4] [--seeds 2] [--tau 0.004] [--sd 0.004]

Synthetic studies with known truth: every assignment of gelu/swiglu over --layers layers at --seeds seeds
(common random numbers: a seed is a block), val_loss = 2 + seed shift + sum over swiglu layers of
(effect + that seed's deviation of it) + noise. The effects that hold across seeds are the true ones; each
seed moves them by N(0, tau), as seed 1 moved hard8-lr1e-3's layer 0 from +0.019 to +0.011 (its
seed-by-layer F 5.92). Prints, with and without the seed-by-effect error (`effects._across_seeds`), how often
the layers' 95% intervals cover the true effects, and how often a study resolves an effect that is 0
across seeds (layers 1 and up are 0; layer 0 is +0.015). The issue's goals: coverage at least 0.93,
false calls in at most 10% of studies.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd

from moesearch.analysis import effects

EFFECT = 0.015  # layer 0's true effect; the others are 0


def frame(n_layers: int, n_seeds: int) -> pd.DataFrame:
    """The study's trials as `results.load_trials` gives them, val_loss to be filled."""
    combos = list(itertools.product(["gelu", "swiglu"], repeat=n_layers))
    rows = [
        {"assignment": ",".join(c), "seed": s, **{f"layer_{i:02d}": a for i, a in enumerate(c)}}
        for s in range(n_seeds)
        for c in combos
    ]
    out = pd.DataFrame(rows)
    out["trial"] = range(len(out))
    return out.assign(state="COMPLETE", random_streams="crn", data_sha256="ab")


def simulate(table: pd.DataFrame, n_layers: int, tau: float, sd: float, rng: np.random.Generator) -> pd.DataFrame:
    truth = np.array([EFFECT] + [0.0] * (n_layers - 1))
    n_seeds = table["seed"].nunique()
    per_seed = truth + rng.normal(0, tau, (n_seeds, n_layers))  # each seed's effects
    x = np.column_stack([table[f"layer_{i:02d}"] == "swiglu" for i in range(n_layers)]).astype(float)
    shift = rng.normal(0, 0.02, n_seeds)[table["seed"]]
    y = 2.0 + shift + (x * per_seed[table["seed"]]).sum(axis=1) + rng.normal(0, sd, len(table))
    return table.assign(val_loss=y)


def run(studies: int, n_layers: int, n_seeds: int, tau: float, sd: float, across: bool) -> tuple[float, float]:
    """(coverage of the layers' intervals, share of studies that resolve a layer whose effect is 0)."""
    original = effects._across_seeds
    if not across:
        effects._across_seeds = lambda found, codes, y: found
    try:
        rng = np.random.default_rng(0)
        table, truth = frame(n_layers, n_seeds), np.array([EFFECT] + [0.0] * (n_layers - 1))
        covered, false_calls = [], 0
        for _ in range(studies):
            rows = effects.fit(simulate(table, n_layers, tau, sd, rng)).effects()
            rows = rows[rows["kind"] == "layer"].sort_values("layer")
            covered += list(np.abs(rows["effect"].to_numpy() - truth) <= rows["ci95"].to_numpy())
            false_calls += bool(rows["resolved"].to_numpy()[1:].any())
        return float(np.mean(covered)), false_calls / studies
    finally:
        effects._across_seeds = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--tau", type=float, default=0.004, help="sd of an effect from seed to seed")
    parser.add_argument("--sd", type=float, default=0.004, help="one training's noise within a seed")
    args = parser.parse_args()
    print(
        f"{args.studies} studies: {2**args.layers} assignments x {args.seeds} seeds, seed-by-effect sd {args.tau}, "
        f"noise {args.sd}"
    )
    for across in (False, True):
        coverage, false = run(args.studies, args.layers, args.seeds, args.tau, args.sd, across)
        name = "across seeds (seed-by-effect error)" if across else "within seeds (residual error)"
        print(f"{name:>38}: coverage {coverage:.3f}, studies with a false call {false:.3f}")


if __name__ == "__main__":
    main()
