"""A benchmark that scores the truth (issue 20, item 5): arms replayed on a table with seed replicates.

    python bench/noise_replay.py [TABLE] [extra `moesearch replay` flags, e.g. --seeds 20 --budget 48]

TABLE (default: bench/data/replay6-crn-trials.parquet where it exists, else the one-seed
bench/data/replay6-trials.parquet) is an exhaustive study's trials (a Parquet file, or a study's trials/
folder, its steps/ beside it), ideally with several trainings per assignment. Each replayed query is
answered by one of the assignment's trainings drawn at random (seeded per run, as NAS-Bench-201 draws a
seed); the truth is the table's expected front, the noise model
(`analysis/effects.py`, seeds as blocks under common random numbers) fitted on every training. An arm is
scored at 8 budgets by what it would recommend there: at each cost level (train_flops_per_token), the
val_loss regret in nats of the candidate its own noise model predicts best, against the best expected
val_loss; per run the largest over levels; printed, the median over seeds per budget. "right" is the
share of members an arm calls resolved on the front that are truly on the expected front (or within the
truth's 95% interval of it). Arms: tpe, random, design (tpe after the orthogonal main-effects design) x
replicates off / auto (the search gets budget / 1.25, then search.replicates = "auto" re-trains what is
inside noise, answered by fresh draws, counted as compute); pruning none (the table has no curves).

Writes bench/data/<table>-noise-replay.csv (hypervolume curves), -noise-replay-truth.csv (every score)
and -noise-replay.png (median max-regret against compute, quartile bands). 100 seeds x 6 arms take about
10 minutes on 2 cores on replay6 (scoring fits the noise model 8 times a run), about an hour on the
hard8 table at 32 points; each run is kept in -noise-replay-runs.jsonl as it ends, so the same command
again resumes a stopped replay.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parent / "data"
CRN = DATA / "replay6-crn-trials.parquet"  # 64 assignments x 2 seeds, common random numbers
ONE_SEED = DATA / "replay6-trials.parquet"  # 64 assignments x 1 seed, one global generator


TARGETS = (0.005, 0.002)  # the regret target, and a stricter one where every arm meets it early


def targets(truth_csv: Path, base: str = "tpe") -> pd.DataFrame:
    """Per arm and target: the budget from which the median regret stays at it or below and that budget over the base
    arm's, each with its 95% interval over seeds (as `moesearch replay` prints for one target)."""
    from moesearch.replay import truth

    scores = pd.read_csv(truth_csv)
    by_arm = {
        arm: rows.pivot(index="seed", columns="budget", values="regret")
        for arm, rows in scores.groupby("arm", sort=False)
    }
    regrets = {arm: regret.to_numpy() for arm, regret in by_arm.items()}  # one array each: the base is itself
    rows = []
    for arm, regret in regrets.items():
        row = {"arm": arm, "seeds": len(regret)}
        for target in TARGETS:
            at = by_arm[arm].columns.to_numpy(float)
            reached = truth.to_target(regret, regrets.get(base), at, target, base)
            row.update({k if k.startswith("to ") else f"{k} @{target:g}": v for k, v in reached.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def plot(truth_csv: Path, png: Path, title: str) -> None:
    """Median (line) and quartiles (band) of the largest regret over cost levels, per arm, against compute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = pd.read_csv(truth_csv)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, rows in scores.groupby("arm", sort=False):
        q = rows.groupby("budget")["regret"].quantile([0.25, 0.5, 0.75]).unstack()
        line = ax.plot(q.index, q[0.5], marker="o", label=arm, linestyle="--" if "replicates" in arm else "-")[0]
        ax.fill_between(q.index, q[0.25], q[0.75], color=line.get_color(), alpha=0.12)
    ax.axhline(0.005, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("compute (trainings, or optimizer steps with curves)")
    ax.set_ylabel("largest regret over cost levels (nats)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main(args: list[str]) -> None:
    if {"-h", "--help"} & set(args):  # the script's own help; replay's is `moesearch replay --help`
        print(__doc__)
        return
    if "--out" in args:  # the plot and the targets read what --out names
        sys.exit("noise_replay.py: --out is the script's own (bench/data/<table>-noise-replay.csv); leave it out")
    table = Path(args.pop(0)) if args and not args[0].startswith("-") else (CRN if CRN.exists() else ONE_SEED)
    # a study's trials/ folder is named for its study (results/<study>/trials), a file for itself
    stem = table.parent.name if table.name == "trials" else table.name.removesuffix(".parquet").removesuffix("-trials")
    out = DATA / f"{stem}-noise-replay.csv"
    arms = ["--samplers", "tpe,random,design", "--pruning", "none", "--replicates", "off,auto"]
    scoring = ["--score-points", "8", "--jobs", "2", "--out", str(out)]
    replay = [sys.executable, "-m", "moesearch", "replay", str(table), *arms, *scoring]
    subprocess.run([*replay, *(args or ["--seeds", "100"])], check=True)
    png, scores = out.with_suffix(".png"), out.with_name(f"{stem}-noise-replay-truth.csv")
    plot(scores, png, f"{stem}: regret against the truth")
    print(f"wrote {png}")
    print(targets(scores).to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1:])
