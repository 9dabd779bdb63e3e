"""Training throughput: a moesearch trial against a bare DeepSpeed MoE loop (bench/bare_loop.py).

    python bench/throughput.py [--rounds 3] [--layers gelu,swiglu,gelu,swiglu] [--nproc 2]

The default space's model (bench/throughput.toml, fewer steps), the same ranks and steps for both,
interleaved (bare, moesearch, bare, ...) so that drift on a shared machine hits both alike. Each side
reports its median step time after warm-up; the table gives tokens/s per round and the ratio moesearch /
bare (goal: >= 0.97).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import one_trial  # beside this file: python puts bench/ on the path
import pandas as pd

from moesearch.core import space
from moesearch.core.activations import hidden_width

HERE = Path(__file__).resolve().parent


def bare_config(spec: space.Space, layers: list[str], ep_size: int) -> dict:
    m, t = spec.model, spec.train
    return {
        "d_model": m.d_model,
        "n_heads": m.n_heads,
        "seq_len": m.seq_len,
        "num_experts": m.num_experts,
        "top_k": m.top_k,
        "capacity_factor": m.capacity_factor,
        "min_capacity": m.min_capacity,
        "ep_size": ep_size,
        "layers": layers,
        "hidden": [hidden_width(a, m.d_ff, m.width_policy, m.width_multiple) for a in layers],
        "micro_batch": t.micro_batch,
        "lr": t.lr,
        "steps": t.steps,
        "warmup": t.warmup_steps,
    }


def run_bare(config: dict, nproc: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            str(HERE / "bare_loop.py"),
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", default="gelu,swiglu,gelu,swiglu")
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    spec = space.load(HERE / "throughput.toml")
    assert spec.model == space.load("default").model, "bench/throughput.toml must keep the default space's model"
    layers = args.layers.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in range(args.rounds):
            bare = run_bare(bare_config(spec, layers, spec.ep_size(args.nproc)), args.nproc)
            ours = float(
                one_trial.train(HERE / "throughput.toml", layers, args.nproc, Path(tmp) / "results", f"round{n}")[
                    "tokens_per_s"
                ]
            )
            rows.append({"round": n, "bare tokens/s": bare, "moesearch tokens/s": ours, "ratio": ours / bare})
            print(
                f"round {n}: bare {bare:,.0f} tokens/s, moesearch {ours:,.0f} tokens/s, ratio {ours / bare:.3f}",
                flush=True,
            )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    print(
        f"median ratio moesearch / bare: {statistics.median(table['ratio']):.3f} "
        f"(bench/throughput.toml: the default model, layers {args.layers}, {spec.train.steps} steps, "
        f"{args.nproc} ranks)"
    )


if __name__ == "__main__":
    main()
