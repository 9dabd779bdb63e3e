"""Analysis at scale: a study of 1,000,000 synthetic trial records, loaded and reduced to its front.

    python bench/scale.py [--trials 1000000] [--repeats 3]

The records follow the trials schema (30 layers, so nearly every assignment is distinct) and lie in
one compacted part file, as `moesearch compact` leaves a large study. Timed, best of --repeats:
`results.load_trials` plus the front and its hypervolume (`pareto.front`), against a naive O(n^2)
dominance check in the same run on growing subsets, extrapolated to n. Goal: < 2 s in all.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from moesearch.analysis import pareto
from moesearch.core import results
from moesearch.core.assignment import Assignment, layer_name

OBJECTIVES = {"val_loss": "minimize", "train_flops_per_token": "minimize"}
N_LAYERS = 30  # 2^30 assignments: a million random draws repeat only a few hundred


def synthetic(n: int, rng: np.random.Generator) -> pa.Table:
    """n complete trials: each SwiGLU layer costs FLOPs and (on average, noisily) lowers the loss."""
    swiglu = rng.random((n, N_LAYERS)) < 0.5
    flops = 8_000_000 + 700_000 * swiglu.sum(axis=1)
    loss = 2.1 - 0.01 * swiglu.sum(axis=1) + rng.normal(0, 0.03, n)
    names = np.where(swiglu, "swiglu", "gelu")
    now = datetime(2026, 11, 22, tzinfo=UTC)
    columns = {
        name: pa.nulls(n, field.type)
        for name, field in zip(results.schema(N_LAYERS).names, results.schema(N_LAYERS), strict=True)
    }
    columns.update(
        {
            "schema_version": pa.array(np.full(n, results.SCHEMA_VERSION, np.int32)),
            "study": pa.array(["scale"] * n),
            "trial": pa.array(np.arange(n)),
            "origin": pa.array(["search"] * n),
            "state": pa.array(["COMPLETE"] * n),
            "assignment": pa.array([Assignment(row).text for row in names]),
            "n_layers": pa.array(np.full(n, N_LAYERS, np.int32)),
            "objectives": pa.array([json.dumps(OBJECTIVES)] * n),
            "reference_point": pa.array([json.dumps({"val_loss": 2.5, "train_flops_per_token": 25e6})] * n),
            "val_loss": pa.array(loss),
            "train_flops_per_token": pa.array(flops.astype(np.int64)),
            "params_active": pa.array((flops // 8).astype(np.int64)),
            "seed": pa.array(np.zeros(n, np.int64)),
            "started_at": pa.array([now] * n, results.schema(0).field("started_at").type),
            **{layer_name(i): pa.array(names[:, i]) for i in range(N_LAYERS)},
        }
    )
    return pa.table(columns, schema=results.schema(N_LAYERS))


def naive_front(points: np.ndarray) -> np.ndarray:
    """Non-dominated mask by comparing every pair (minimised objectives), in row blocks to bound memory."""
    keep = np.ones(len(points), bool)
    for start in range(0, len(points), 512):
        block = points[start : start + 512, None, :]
        dominated = ((points[None] <= block).all(-1) & (points[None] < block).any(-1)).T
        keep[start : start + 512] = ~dominated.any(axis=0)
    return keep


def best_of(repeats: int, work) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = work()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = results.trials_dir(Path(tmp), "scale")
        folder.mkdir(parents=True)
        pq.write_table(
            synthetic(args.trials, np.random.default_rng(0)), folder / f"part-000000-{args.trials - 1:06d}.parquet"
        )

        def load_and_reduce():
            trials = results.load_trials(Path(tmp), "scale")
            return trials, pareto.front(trials)

        total, (trials, (front, volume)) = best_of(args.repeats, load_and_reduce)
        load, _ = best_of(args.repeats, lambda: results.load_trials(Path(tmp), "scale"))
    print(
        f"{len(trials):,} trials: load + front + hypervolume {total:.2f} s (load alone {load:.2f} s); "
        f"{len(front)} on the front, hypervolume {volume:.6g}"
    )
    points = trials[list(OBJECTIVES)].to_numpy(float)
    print(f"{'n':>9}{'naive O(n^2) s':>16}{'moesearch front s':>19}{'ratio':>8}")
    for n in (2_000, 4_000, 8_000):
        subset = trials.iloc[:n]
        naive_s, naive = best_of(1, lambda subset=subset: naive_front(points[: len(subset)]))
        ours_s, (ours, _) = best_of(args.repeats, lambda subset=subset: pareto.front(subset))
        assert sorted(subset.loc[naive, "assignment"]) == sorted(ours["assignment"]), "both find the same front"
        print(f"{n:>9,}{naive_s:>16.3f}{ours_s:>19.4f}{naive_s / ours_s:>8.0f}x")
    print(f"naive at {len(trials):,}, extrapolated as n^2: {naive_s * (len(trials) / n) ** 2 / 3600:,.1f} h")


if __name__ == "__main__":
    main()
