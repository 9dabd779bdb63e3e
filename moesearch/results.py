"""The trials table: its schema, one atomic Parquet file per finished trial, and loading a study.

Layout: <results>/<study>/trials/trial-NNNNNN.parquet. A file is written under a temporary name and
hard-linked into place, so a reader never sees a partial file and a trial can never get two files.
Light: pyarrow and pandas, no torch.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from moesearch.metrics import METRICS

SCHEMA_VERSION = 1
_INT_METRICS = {"params_total", "params_active", "train_flops_per_token"}
_TIME = pa.timestamp("us", tz="UTC")

_FIXED = [
    pa.field("schema_version", pa.int32()),
    pa.field("study", pa.string()),
    pa.field("trial", pa.int64()),
    pa.field("state", pa.string()),  # COMPLETE or FAIL
    pa.field("failure_reason", pa.string()),
    pa.field("assignment", pa.string()),  # "gelu,swiglu,...", the form --layers takes
    pa.field("n_layers", pa.int32()),
    pa.field("objectives", pa.string()),  # JSON {metric: "minimize" | "maximize"}
    *(pa.field(m, pa.int64() if m in _INT_METRICS else pa.float64()) for m in METRICS),
    pa.field("expert_load", pa.list_(pa.list_(pa.float64()))),  # per MoE layer, share of tokens per expert
    pa.field("load_balance", pa.list_(pa.float64())),  # per MoE layer, max share x experts (1 = even)
    pa.field("seed", pa.int64()),
    pa.field("data_sha256", pa.string()),
    pa.field("config_json", pa.string()),  # the full RunConfig
    pa.field("python_version", pa.string()),
    pa.field("torch_version", pa.string()),
    pa.field("deepspeed_version", pa.string()),
    pa.field("optuna_version", pa.string()),
    pa.field("moesearch_version", pa.string()),
    pa.field("device_kind", pa.string()),
    pa.field("device_count", pa.int32()),
    pa.field("world_size", pa.int32()),
    pa.field("ep_size", pa.int32()),
    pa.field("started_at", _TIME),
    pa.field("finished_at", _TIME),
    pa.field("wall_time_s", pa.float64()),
]


def layer_column(i: int) -> str:
    return f"layer_{i:02d}"


def schema(n_layers: int) -> pa.Schema:
    """The trials table of a study with `n_layers` layers: fixed columns, then one per layer's activation."""
    return pa.schema(_FIXED + [pa.field(layer_column(i), pa.string()) for i in range(n_layers)],
                     metadata={"moesearch_schema_version": str(SCHEMA_VERSION)})


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torch here would slow the CLI)."""
    found = {"python_version": platform.python_version()}
    for pkg in ("torch", "deepspeed", "optuna", "moesearch"):
        try:
            found[f"{pkg}_version"] = version(pkg)
        except PackageNotFoundError:
            found[f"{pkg}_version"] = None
    return found


def make_record(*, study: str, trial: int, layers: list[str], state: str, failure_reason: str | None,
                objectives: dict[str, str], metrics: dict, config_json: str, seed: int, data_sha256: str,
                hardware: dict, ep_size: int, started_at: datetime, finished_at: datetime) -> dict:
    """One row of the trials table; metrics missing for a failed trial stay null."""
    row = dict.fromkeys(schema(len(layers)).names)
    row.update({k: v for k, v in metrics.items() if k in row})
    row.update(versions())
    row.update({k: hardware.get(k) for k in ("device_kind", "device_count", "world_size")})
    row.update({layer_column(i): a for i, a in enumerate(layers)})
    row.update(
        schema_version=SCHEMA_VERSION, study=study, trial=trial, state=state, failure_reason=failure_reason,
        assignment=",".join(layers), n_layers=len(layers), objectives=json.dumps(objectives),
        config_json=config_json, seed=seed, data_sha256=data_sha256, ep_size=ep_size,
        started_at=started_at, finished_at=finished_at, wall_time_s=(finished_at - started_at).total_seconds(),
    )
    return row


def trials_dir(results: Path, study: str) -> Path:
    return Path(results) / study / "trials"


def write_trial(results: Path, row: dict) -> Path:
    """Write one trial's record atomically; FileExistsError if that trial already has one."""
    folder = trials_dir(results, row["study"])
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"trial-{row['trial']:06d}.parquet"
    table = pa.Table.from_pylist([row], schema=schema(row["n_layers"]))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.link(tmp, final)  # atomic, and refuses to replace an existing record
    finally:
        os.unlink(tmp)
    return final


def studies(results: Path) -> list[str]:
    """Studies with at least one record under `results`."""
    return sorted(p.parent.name for p in Path(results).glob("*/trials") if any(p.glob("trial-*.parquet")))


def load_trials(results: Path, study: str) -> pd.DataFrame:
    """Every record of one study, one row per trial, ordered by trial number."""
    files = sorted(trials_dir(results, study).glob("trial-*.parquet"))
    if not files:
        return schema(0).empty_table().to_pandas()
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    return table.to_pandas().sort_values("trial", ignore_index=True)
