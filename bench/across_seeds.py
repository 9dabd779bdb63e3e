"""What a study resolves across its seeds against what each seed alone resolves (issue 32's goal on hard8-lr1e-3).

    python bench/across_seeds.py [--results bench/data/hard8-lr1e-3] [--study hard8-lr1e-3]

Fits the noise model (`analysis/effects.py`) on val_loss of every seed together (the effects tested against
their seed-by-effect variation) and of each seed alone, and prints each one's verdict and resolved effects.
"""

from __future__ import annotations

import argparse

from moesearch.analysis import effects, verdict
from moesearch.core import results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="bench/data/hard8-lr1e-3")
    parser.add_argument("--study", default="hard8-lr1e-3")
    args = parser.parse_args()
    trials = results.load_trials(args.results, args.study)
    seeds = sorted(trials["seed"].unique())
    parts = [("every seed", trials)] + [(f"seed {s} alone", trials[trials["seed"] == s]) for s in seeds]
    for name, part in parts:
        found = effects.fit(part)
        if found is None:
            print(f"{name} ({len(part)} trainings): too few for a noise model")
            continue
        rows = found.effects()
        resolved = "; ".join(f"{r.term} {r.effect:+.4f} ± {r.ci95:.4f}" for r in rows[rows["resolved"]].itertuples())
        print(f"{name} ({len(part)} trainings): {verdict.verdict(found)}")
        print(f"  resolved: {resolved or 'nothing'}")


if __name__ == "__main__":
    main()
