"""Fused kernels: tokens/s of each activation eager against torch.compile'd, side by side in one run.

    python bench/compile.py [--rounds 2] [--activations gelu,swiglu,geglu,reglu,relu,relu2,silu] [--nproc 2]

The default space's model (bench/throughput.toml) trained by `moesearch train` with every layer of one
activation, once with `train.compile = false` and once with `true`, interleaved per round (eager,
compiled, eager, ...) so drift on a shared machine hits both alike. Throughput is the trial's own
tokens_per_s (median step time after the warm-up, which pays the compilation); the wall time of the
compiled trial is printed too, since every trial compiles again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import one_trial  # beside this file: python puts bench/ on the path
import pandas as pd

HERE = Path(__file__).resolve().parent


def space_file(folder: Path, compiled: bool, activations: list[str]) -> Path:
    text = (
        (HERE / "throughput.toml")
        .read_text()
        .replace('activations = ["gelu", "swiglu"]', f"activations = {activations!r}".replace("'", '"'))
    )
    path = folder / f"compile-{compiled}.toml"
    path.write_text(
        text.replace("[train]\n", f"[train]\ncompile = {'true' if compiled else 'false'}\n", 1).replace(
            'name = "throughput"', f'name = "compile-{str(compiled).lower()}"'
        )
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--activations", default="gelu,swiglu,geglu,reglu,relu,relu2,silu")
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    activations = args.activations.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spaces = {c: space_file(folder, c, activations) for c in (False, True)}
        for n in range(args.rounds):
            for activation in activations:
                eager, fused = (
                    one_trial.train(
                        spaces[c],
                        [activation] * 4,
                        args.nproc,
                        folder / "r",
                        f"{activation}-{c}-{n}".replace("+", "_").replace("*", "x"),
                    )  # a study name: no + or *
                    for c in (False, True)
                )
                rows.append(
                    {
                        "round": n,
                        "activation": activation,
                        "eager tokens/s": eager["tokens_per_s"],
                        "compiled tokens/s": fused["tokens_per_s"],
                        "ratio": fused["tokens_per_s"] / eager["tokens_per_s"],
                        "eager wall s": eager["wall_time_s"],
                        "compiled wall s": fused["wall_time_s"],
                    }
                )
                print(
                    f"round {n} {activation}: eager {eager['tokens_per_s']:,.0f}, compiled "
                    f"{fused['tokens_per_s']:,.0f} tokens/s, ratio {rows[-1]['ratio']:.3f}",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    for activation, group in table.groupby("activation", sort=False):
        print(f"{activation}: median compiled / eager {statistics.median(group['ratio']):.3f}")


if __name__ == "__main__":
    main()
