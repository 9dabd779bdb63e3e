"""Common random numbers on a whole table: the noise model of hard8 as trained under each scheme, over
the assignments both tables hold (the CRN table is trained in sittings, so the early ones are partial).

    python bench/crn_table.py [--global-table bench/data/hard8-trials.parquet] [--crn bench/data/hard8-crn]

Fits the noise model (analysis/effects.py: least squares, one effect per layer) to val_loss of seed 0 over
the common assignments and prints, per scheme: trials, R^2, the residual sd (one training's noise plus
what main effects miss), every layer's SwiGLU-instead-of-GELU effect with its 95% interval; then the
ratio of the residual sds with its 95% interval (F distribution on the two residual degrees of freedom).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
from scipy import stats

from moesearch.analysis import effects, fitted
from moesearch.core import results

HERE = Path(__file__).resolve().parent


def seed0(trials: pd.DataFrame) -> pd.DataFrame:
    done = trials[(trials["state"] == "COMPLETE") & (trials["seed"] == 0)]
    return done.sort_values("trial").drop_duplicates("assignment")


def describe(name: str, trials: pd.DataFrame) -> fitted.Fit:
    found = effects.fit(trials, "val_loss")
    y = trials["val_loss"].to_numpy(float)
    r2 = 1 - found.sigma**2 * found.dof / ((y - y.mean()) ** 2).sum()
    print(f"{name}: {found.n_trials} trials, R^2 {r2:.2f}, residual sd {found.sigma:.4f} ({found.dof:.0f} dof)")
    for row in found.effects().itertuples():
        print(f"  {row.term}: {row.effect:+.4f} ± {row.ci95:.4f}{' (resolved)' if row.resolved else ''}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--global-table", type=Path, default=HERE / "data" / "hard8-trials.parquet")
    parser.add_argument("--crn", type=Path, default=HERE / "data" / "hard8-crn", help="results folder")
    parser.add_argument("--study", default="hard8-crn")
    args = parser.parse_args()
    crn = seed0(results.load_trials(args.crn, args.study))
    old = seed0(pd.read_parquet(args.global_table))
    common = sorted(set(crn["assignment"]) & set(old["assignment"]))
    print(f"{len(common)} assignments in both tables (seed 0)")
    fits = {
        scheme: describe(scheme, frame[frame["assignment"].isin(common)].reset_index(drop=True))
        for scheme, frame in (("global", old), ("crn", crn))
    }
    g, c = fits["global"], fits["crn"]
    f = (g.sigma / c.sigma) ** 2
    lo, hi = f / stats.f.ppf(0.975, g.dof, c.dof), f / stats.f.ppf(0.025, g.dof, c.dof)
    print(
        f"residual sd global / crn: {math.sqrt(f):.2f}x (95% interval {math.sqrt(lo):.2f}x to {math.sqrt(hi):.2f}x); "
        f"worth {f:.1f}x the trainings"
    )


if __name__ == "__main__":
    main()
