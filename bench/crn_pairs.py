"""Common random numbers: how noisy is the difference between two assignments that differ in one layer?

    python bench/crn_pairs.py [--layers 0,4] [--seeds 4] [--first-seed 0] [--schemes global,crn]
                              [--train KEY=VALUE ...] [--out bench/data/crn-pairs]

The hard8 model (search_spaces/hard8.toml): all-gelu against the same with SwiGLU in one layer, at each
seed, trained by `moesearch train` with `train.streams = "global"` (one generator: the layer's shape
re-draws every dense weight and the routing noise) and `"crn"` (a stream per place), interleaved per seed
in this one run. Prints, per scheme, each pair's val_loss difference per seed, its mean and sd, and the sd
of one assignment over seeds; then the ratio of the paired sds (global / crn) and what it is worth in
replicates (its square). The records stay under --out (one study per scheme) for the notebook.
`--train lr=1e-3` (repeatable) overrides hard8's `[train]` keys for every scheme: the training regime's
own share of the noise, measured against the shipped one (give each regime its own --out).
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

import one_trial  # beside this file: python puts bench/ on the path

from moesearch.core import results

HERE = Path(__file__).resolve().parent
SCHEMES = ("global", "crn")


def space_file(folder: Path, scheme: str, train: dict[str, str]) -> Path:
    """hard8 with `train.streams = scheme` and the `train` overrides (TOML values as written)."""
    text = (HERE.parent / "search_spaces" / "hard8.toml").read_text()
    for key in train:  # drop the shipped line, so the override is the only one
        text = re.sub(rf"^{re.escape(key)} = .*\n", "", text, flags=re.M)
    lines = "".join(f"{key} = {value}\n" for key, value in {"streams": f'"{scheme}"', **train}.items())
    path = folder / f"crn-{scheme}.toml"
    path.write_text(
        text.replace('name = "hard8"', f'name = "crn-{scheme}"').replace("[train]\n", f"[train]\n{lines}", 1)
    )
    return path


def override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--train {text!r}: expected KEY=VALUE, as in lr=1e-3")
    return key.strip(), value.strip()


def neighbour(n_layers: int, layer: int) -> list[str]:
    return ["swiglu" if i == layer else "gelu" for i in range(n_layers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="0,4", help="layers whose SwiGLU neighbour is paired with all-gelu")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--schemes", default=",".join(SCHEMES), help="streams schemes compared: global, crn")
    parser.add_argument("--train", type=override, action="append", default=[], help="a [train] override: KEY=VALUE")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "crn-pairs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    layers = [int(x) for x in args.layers.split(",")]
    assignments = [["gelu"] * 8] + [neighbour(8, layer) for layer in layers]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    schemes = args.schemes.split(",")
    files = {scheme: space_file(args.out, scheme, dict(args.train)) for scheme in schemes}
    for seed in seeds:  # interleaved: both schemes see the same machine, seed by seed
        for scheme in schemes:
            for layers_ in assignments:
                if _loss(args.out, scheme, layers_, seed) is None:  # resumable: a rerun trains what is missing
                    one_trial.train(
                        files[scheme], layers_, args.nproc, args.out, f"crn-{scheme}", ["--seed", str(seed)]
                    )
    report(args.out, schemes, layers, seeds)


def _loss(folder: Path, scheme: str, layers: list[str], seed: int) -> float | None:
    if not results.trials_dir(folder, f"crn-{scheme}").is_dir():
        return None
    trials = results.load_trials(folder, f"crn-{scheme}")
    same = (trials["assignment"] == ",".join(layers)) & (trials["seed"] == seed)
    hit = trials[same & (trials["state"] == "COMPLETE")]
    return None if hit.empty else float(hit["val_loss"].iloc[0])


def report(folder: Path, schemes: list[str], layers: list[int], seeds: range) -> None:
    paired_sd = {}
    for scheme in schemes:
        base = [_loss(folder, scheme, ["gelu"] * 8, s) for s in seeds]
        print(
            f"\n{scheme}: all-gelu val_loss over seeds {list(seeds)}: "
            f"{statistics.mean(base):.4f} ± {statistics.stdev(base):.4f} (sd)"
        )
        for layer in layers:
            other = [_loss(folder, scheme, neighbour(8, layer), s) for s in seeds]
            diff = [o - b for o, b in zip(other, base, strict=True)]
            paired_sd[scheme, layer] = statistics.stdev(diff)
            print(
                f"  swiglu in layer {layer} - all-gelu: {', '.join(f'{d:+.3f}' for d in diff)}; "
                f"mean {statistics.mean(diff):+.4f}, sd {statistics.stdev(diff):.4f}; "
                f"one assignment's sd over seeds {statistics.stdev(other):.4f}"
            )
    for layer in layers if set(SCHEMES) <= set(schemes) else []:
        ratio = paired_sd["global", layer] / paired_sd["crn", layer]
        print(f"layer {layer}: paired sd global/crn = {ratio:.2f}x, worth {ratio**2:.1f}x the replicates")


if __name__ == "__main__":
    main()
