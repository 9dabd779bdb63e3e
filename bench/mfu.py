"""Model FLOPs utilisation: a trial's training FLOPs per second over this machine's measured matmul rate.

    python bench/mfu.py [--layers gelu,swiglu,gelu,swiglu] [--nproc 2] [--space bench/throughput.toml] [--json F]

The achieved rate is tokens/s times the analytic training FLOPs per token (moesearch/core/costs.py) of a
`moesearch train` run of --space (default: the default model, bench/throughput.toml; on a GPU,
bench/gpu_mfu.toml is d_model 1024 in bf16). The peak is a large fp32 matmul (GPU: bf16) on every core
(GPU: the device), measured in this run before and after the trial. --json also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from moesearch.core import results, space

HERE = Path(__file__).resolve().parent


def matmul_rate(n: int = 2048, seconds: float = 3.0) -> float:
    """FLOP/s of n x n matmuls, the best of repeated timed batches."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="gelu,swiglu,gelu,swiglu")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--space", type=Path, default=HERE / "throughput.toml")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.nproc)  # the cores the trial's ranks use, one thread each
    before = matmul_rate()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "moesearch",
                "train",
                str(args.space),
                "--layers",
                args.layers,
                "--nproc",
                str(args.nproc),
                "--results",
                tmp,
                "--no-progress",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        row = results.load_trials(Path(tmp), space.load(args.space).name).iloc[0]
    after = matmul_rate()
    peak = max(before, after)
    achieved = row["tokens_per_s"] * row["train_flops_per_token"]
    print(f"matmul peak: {before / 1e9:.1f} GFLOP/s before, {after / 1e9:.1f} after ({args.nproc} threads)")
    print(
        f"trial: {row['tokens_per_s']:,.0f} tokens/s x {row['train_flops_per_token']:,} FLOPs/token "
        f"= {achieved / 1e9:.2f} GFLOP/s on {row['device_kind']} x {row['world_size']} ranks"
    )
    print(f"MFU: {achieved / peak:.1%} (layers {args.layers})")
    if args.json:
        figures = {
            "space": str(args.space),
            "layers": args.layers,
            "device_kind": row["device_kind"],
            "precision": row["precision"],
            "world_size": int(row["world_size"]),
            "tokens_per_s": float(row["tokens_per_s"]),
            "train_flops_per_token": int(row["train_flops_per_token"]),
            "achieved_flops": achieved,
            "peak_matmul_flops": peak,
            "mfu": achieved / peak,
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
