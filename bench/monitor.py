"""What live monitoring costs: tokens/s and wall time of a trial without a monitor, with --monitor csv
and with --monitor tensorboard, interleaved per round (none, csv, tensorboard, none, ...).

    python bench/monitor.py [--rounds 2] [--nproc 2]

The default space's model (bench/throughput.toml), every layer alternating gelu and swiglu; ratios
against the unmonitored trial of the same round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import one_trial  # beside this file: python puts bench/ on the path
import pandas as pd

HERE = Path(__file__).resolve().parent
LAYERS = ["gelu", "swiglu", "gelu", "swiglu"]
KINDS = {"none": [], "csv": ["--monitor", "csv"], "tensorboard": ["--monitor", "tensorboard"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            measured = {
                kind: one_trial.train(
                    HERE / "throughput.toml", LAYERS, args.nproc, Path(tmp), f"{kind}-{n}", KINDS[kind]
                )
                for kind in KINDS
            }
            for kind, row in measured.items():
                rows.append(
                    {
                        "round": n,
                        "monitor": kind,
                        "tokens/s": row["tokens_per_s"],
                        "wall s": row["wall_time_s"],
                        "tokens/s ratio": row["tokens_per_s"] / measured["none"]["tokens_per_s"],
                        "wall ratio": row["wall_time_s"] / measured["none"]["wall_time_s"],
                    }
                )
                print(
                    f"round {n} {kind}: {row['tokens_per_s']:,.0f} tokens/s, {row['wall_time_s']:.1f} s wall",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    for kind, group in table.groupby("monitor", sort=False):
        print(
            f"{kind}: median tokens/s ratio {statistics.median(group['tokens/s ratio']):.3f}, "
            f"wall ratio {statistics.median(group['wall ratio']):.3f}"
        )


if __name__ == "__main__":
    main()
