"""Does the best learning rate carry from the proxy to 4x width? (issue 31, goal 3)

    python bench/lr_sweep.py [--out bench/data/lr-sweep] [--widths 64 256] [--rates 3e-4 1e-3 3e-3 1e-2]
    python bench/lr_sweep.py --table        # only print the table of what is recorded

Trains one assignment per cell (all-gelu by default; --activations adds others) of ladder-mup's model at
each width and peak learning rate, under both parametrizations, with `moesearch train` (two gloo ranks,
seed 0). Each cell is its own study, its space file written beside the records (OUT/spaces/), so the sweep
resumes: a cell with a record is not trained again. At the proxy's width muP is the standard model bit for
bit, so that width trains once (as 'mup'). Prints val_loss per cell and, per row, the best rate and its
neighbours' gaps; a rate counts as "carrying" when the 4x width's best is the proxy's or one grid step away.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

import tomlkit

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "search_spaces" / "ladder-mup.toml"
BASE = {"base_d_model": 64, "base_d_ff": 192, "base_n_heads": 4}  # ladder-mup's proxy: muP's base shape


def cell_name(parametrization: str, width: int, activation: str, lr: float) -> str:
    return f"lr-{parametrization}-d{width}-{activation}-{lr:g}"


def write_space(out: Path, parametrization: str, width: int, activation: str, lr: float) -> Path:
    """ladder-mup.toml at one width and rate: d_ff 3 x d_model as on the ladder, no scale rungs."""
    doc = tomlkit.parse(TEMPLATE.read_text())
    name = cell_name(parametrization, width, activation, lr)
    doc["name"] = name
    doc["description"] = f"bench/lr_sweep.py: ladder-mup's model at d_model {width}, {parametrization}, lr {lr:g}"
    doc["model"]["d_model"] = width
    doc["model"]["d_ff"] = 3 * width
    doc["model"]["parametrization"] = parametrization
    if parametrization == "mup" and width != BASE["base_d_model"]:
        for key, value in BASE.items():
            doc["model"][key] = value
    doc["train"]["lr"] = lr
    del doc["scale"]
    path = out / "spaces" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomlkit.dumps(doc))
    return path


def cells(widths: list[int], rates: list[float], activations: list[str]):
    for width in widths:
        for parametrization in ("mup",) if width == BASE["base_d_model"] else ("standard", "mup"):
            for activation in activations:
                for lr in rates:
                    yield parametrization, width, activation, lr


def val_loss(out: Path, name: str) -> float | None:
    """The cell's val_loss; NaN for a failed training (diverged), None while untrained."""
    from moesearch.core import results

    if not results.has_records(out, name):
        return None
    trials = results.load_trials(out, name)
    done = trials[trials["state"] == "COMPLETE"]
    return float(done["val_loss"].iloc[0]) if len(done) else math.nan


def table(out: Path, widths: list[int], rates: list[float], activations: list[str]) -> str:
    rows = [f"{'parametrization':>15} {'d_model':>7} {'activation':>10} " + " ".join(f"{r:>8g}" for r in rates)]
    for parametrization, width, activation in dict.fromkeys(c[:3] for c in cells(widths, rates, activations)):
        losses = [val_loss(out, cell_name(parametrization, width, activation, lr)) for lr in rates]
        shown = ["untrained" if v is None else "diverged" if math.isnan(v) else f"{v:.4f}" for v in losses]
        done = [(v, i) for i, v in enumerate(losses) if v is not None and not math.isnan(v)]
        best = f"  best {rates[min(done)[1]]:g}" if done else ""
        rows.append(f"{parametrization:>15} {width:>7} {activation:>10} " + " ".join(f"{s:>8}" for s in shown) + best)
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "data" / "lr-sweep")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2])
    parser.add_argument("--activations", nargs="+", default=["gelu"])
    parser.add_argument("--table", action="store_true", help="print the table of what is recorded and exit")
    args = parser.parse_args()
    if not args.table:
        for parametrization, width, activation, lr in cells(args.widths, args.rates, args.activations):
            name = cell_name(parametrization, width, activation, lr)
            if val_loss(args.out, name) is not None:
                continue
            space = write_space(args.out, parametrization, width, activation, lr)
            layers = ",".join([activation] * 4)
            command = ["moesearch", "train", str(space), "--layers", layers, "--results", str(args.out)]
            print(f"{name}: {' '.join(command)}", flush=True)
            subprocess.run([*command, "--no-progress"], check=False)  # a diverged cell is a record, not a stop
    print(table(args.out, args.widths, args.rates, args.activations))


if __name__ == "__main__":
    sys.exit(main())
