"""A study's three Parquet tables, one atomic file per table per finished trial, and loading them.

Layout: <results>/<study>/{trials,steps,layers}/trial-NNNNNN.parquet (columns: docs/results.md).
  trials  one row per trial: assignment, state, metrics, provenance
  steps   one row per optimizer step: losses, learning rate, periodic val_loss
  layers  one row per block: activation, expert load, hidden-activation statistics
Each file is written in <study>/.tmp/ and hard-linked into place, so a reader (or a glob) never sees
a partial file and a trial never gets two. The trials file is written last: it commits the trial, and
the loaders ignore steps and layers files of trials without one.
Light: pyarrow and pandas, no torch.
"""

from __future__ import annotations

import json
import platform
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from moesearch.core.assignment import Assignment, layer_name
from moesearch.core.errors import InputError
from moesearch.core.files import write_atomic
from moesearch.core.metrics import INTEGER_METRICS, METRICS

SCHEMA_VERSION = 8
# version 2 lacks the stability columns, versions 2-3 `random_streams`: they read as null (streams as "global");
# version 5 has the columns of 4, its evaluations routed exactly (before, with DeepSpeed's gate noise);
# version 6 adds `effect_size` (null before: the defaults); version 7 the layers' `learned`, `nearest_fixed`,
# `learned_curve`, `activation_share`; version 8 `eval_activation_share`
READABLE = ("2", "3", "4", "5", "6", "7", "8")
TABLES = ("trials", "steps", "layers")
_TIME = pa.timestamp("us", tz="UTC")

_FIXED = [
    pa.field("schema_version", pa.int32()),
    pa.field("study", pa.string()),
    pa.field("trial", pa.int64()),
    pa.field("origin", pa.string()),  # a trial.Origin
    pa.field("state", pa.string()),  # a trial.State
    pa.field("failure_reason", pa.string()),
    pa.field("assignment", pa.string()),  # "gelu,swiglu,...", the form --layers takes
    pa.field("n_layers", pa.int32()),
    pa.field("objectives", pa.string()),  # JSON {metric: "minimize" | "maximize"}
    pa.field("reference_point", pa.string()),  # JSON {metric: value}, fixed when the study was created
    pa.field("effect_size", pa.string()),  # JSON {metric: value}: search.effect_size as this trial's run gave it
    *(pa.field(m, pa.int64() if m in INTEGER_METRICS else pa.float64()) for m in METRICS),
    pa.field("quant_uncalibrated_experts", pa.int32()),  # experts left unquantized in the 8-bit evaluations
    pa.field("seed", pa.int64()),
    pa.field("replicate_of", pa.int64()),  # the first trial of this assignment with another seed
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
    pa.field("precision", pa.string()),  # "fp32" or "bf16", as the trial trained (null in version 2)
    pa.field("random_streams", pa.string()),  # "crn" or "global" (train.streams); versions 2-3 read "global"
    pa.field("started_at", _TIME),
    pa.field("finished_at", _TIME),
    pa.field("wall_time_s", pa.float64()),
]


_KEY = [pa.field("study", pa.string()), pa.field("trial", pa.int64())]
_METADATA = {"moesearch_schema_version": str(SCHEMA_VERSION)}

STEPS_SCHEMA = pa.schema(
    _KEY
    + [
        pa.field("step", pa.int64()),  # optimizer steps done, from 1
        pa.field("tokens", pa.int64()),  # training tokens seen by all ranks after this step
        pa.field("train_loss", pa.float64()),
        pa.field("aux_loss", pa.float64()),
        pa.field("lr", pa.float64()),
        pa.field("step_time_s", pa.float64()),
        pa.field("val_loss", pa.float64()),  # null except every eval_interval steps and at the last step
        pa.field("grad_norm", pa.float64()),  # global gradient norm before clipping (null in version 2)
    ],
    metadata=_METADATA,
)

LAYERS_SCHEMA = pa.schema(
    _KEY
    + [
        pa.field("layer", pa.int32()),
        pa.field("activation", pa.string()),
        pa.field("moe", pa.bool_()),
        pa.field("hidden_width", pa.int64()),
        pa.field("n_experts", pa.int32()),  # null for a dense layer, as are the routing columns below
        pa.field("top_k", pa.int32()),
        pa.field("expert_load", pa.list_(pa.float64())),
        pa.field("load_balance", pa.float64()),
        pa.field("activation_share", pa.string()),  # JSON {activation: share of tokens routed to its experts}
        pa.field("eval_activation_share", pa.string()),  # JSON {step: {activation: share}}, held-out tokens
        pa.field("hidden_mean", pa.float64()),
        pa.field("hidden_std", pa.float64()),
        pa.field("hidden_zero_frac", pa.float64()),
        pa.field("hidden_near_zero_frac", pa.float64()),
        pa.field("hidden_abs_max", pa.float64()),  # outliers, on the same held-out batches (null in version 2)
        pa.field("hidden_max_over_rms", pa.float64()),
        pa.field("hidden_excess_kurtosis", pa.float64()),
        pa.field("hidden_beyond_6sd_frac", pa.float64()),
        pa.field("expert_abs_max", pa.list_(pa.float64())),  # per expert, for MoE layers (null for dense ones)
        pa.field("expert_max_over_rms", pa.list_(pa.float64())),
        pa.field("expert_excess_kurtosis", pa.list_(pa.float64())),
        pa.field("expert_beyond_6sd_frac", pa.list_(pa.float64())),
        pa.field("learned", pa.string()),  # JSON {parameter: [per expert]} of a learnable activation (else null)
        pa.field("nearest_fixed", pa.string()),  # the fixed activation nearest its learned curve (else null)
        pa.field("learned_curve", pa.list_(pa.float64())),  # that curve, mean over experts, at activations.CURVE_X
    ],
    metadata=_METADATA,
)


def schema(n_layers: int) -> pa.Schema:
    """The trials table of a study with `n_layers` layers: fixed columns, then one per layer's activation."""
    return pa.schema(_FIXED + [pa.field(layer_name(i), pa.string()) for i in range(n_layers)], metadata=_METADATA)


@dataclass(frozen=True)
class Record:
    """Everything one trial writes: its row of the trials table and its rows of steps and layers.

    The steps and layers rows get the study and trial columns when written, from the trials row.
    """

    trial: dict
    steps: list[dict]
    layers: list[dict]


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torch here would slow the CLI)."""
    found = {"python_version": platform.python_version()}
    for pkg in ("torch", "deepspeed", "optuna", "moesearch"):
        try:
            found[f"{pkg}_version"] = version(pkg)
        except PackageNotFoundError:
            found[f"{pkg}_version"] = None
    return found


def make_record(
    *,
    study: str,
    trial: int,
    origin: str,
    layers: list[str],
    state: str,
    failure_reason: str | None,
    objectives: dict[str, str],
    reference_point: dict[str, float],
    metrics: dict,
    steps: list[dict],
    layer_rows: list[dict],
    config_json: str,
    seed: int,
    replicate_of: int | None,
    data_sha256: str,
    hardware: dict,
    ep_size: int,
    random_streams: str,
    started_at: datetime,
    finished_at: datetime,
    effect_size: dict[str, float] | None = None,
) -> Record:
    """One trial's rows; metrics missing for a failed trial stay null."""
    row = dict.fromkeys(schema(len(layers)).names)
    row.update({k: v for k, v in metrics.items() if k in row})
    row.update(versions())
    row.update({k: hardware.get(k) for k in ("device_kind", "device_count", "world_size")})
    row.update(Assignment(layers).params())
    row.update(
        schema_version=SCHEMA_VERSION,
        study=study,
        trial=trial,
        origin=origin,
        state=state,
        failure_reason=failure_reason,
        assignment=Assignment(layers).text,
        n_layers=len(layers),
        objectives=json.dumps(objectives),
        reference_point=json.dumps(reference_point),
        effect_size=json.dumps(effect_size or {}),
        config_json=config_json,
        seed=seed,
        replicate_of=replicate_of,
        data_sha256=data_sha256,
        ep_size=ep_size,
        random_streams=random_streams,
        started_at=started_at,
        finished_at=finished_at,
        wall_time_s=(finished_at - started_at).total_seconds(),
    )
    return Record(row, steps, layer_rows)


def table_dir(results: Path, study: str, table: str = "trials") -> Path:
    return Path(results) / study / table


def trial_file(results: Path, study: str, trial: int, table: str = "trials") -> Path:
    """Where one trial's file of `table` lives."""
    return table_dir(results, study, table) / f"trial-{trial:06d}.parquet"


def trials_dir(results: Path, study: str) -> Path:
    return table_dir(results, study, "trials")


def write_trial(results: Path, record: Record) -> Path:
    """Write one trial's files atomically, the trials file last; FileExistsError if the trial has any already."""
    row = record.trial
    with_number = {"study": row["study"], "trial": row["trial"]}
    for name, rows, fixed in (("steps", record.steps, STEPS_SCHEMA), ("layers", record.layers, LAYERS_SCHEMA)):
        _write(results, name, with_number, pa.Table.from_pylist([{**with_number, **r} for r in rows], schema=fixed))
    return _write(results, "trials", with_number, pa.Table.from_pylist([row], schema=schema(row["n_layers"])))


def _write(results: Path, table_name: str, key: dict, table: pa.Table) -> Path:
    final = trial_file(results, key["study"], key["trial"], table_name)
    scratch = Path(results) / key["study"] / ".tmp"  # outside the table folders: no glob can see a partial file
    return write_atomic(final, lambda tmp: pq.write_table(table, tmp), exclusive=True, scratch=scratch)


def studies(results: Path) -> list[str]:
    """Studies with at least one record under `results`."""
    return sorted(p.parent.name for p in Path(results).glob("*/trials") if _files(p))


def written_at(results: Path, study: str) -> float:
    """When a record last arrived in a study's trials folder: every record arrives whole, linked or renamed
    into it (`files.write_atomic`), which sets the folder's time; one stat, however many files."""
    return trials_dir(results, study).stat().st_mtime


def most_recent(results: Path, names: list[str]) -> str:
    """Of these studies under `results`, the most recently written (on a tie, the first in name order):
    what the CLI and the notebook read when no study is named."""
    return max(sorted(names), key=lambda name: written_at(results, name))


def compact(results: Path, study: str) -> int:
    """Merge a study's per-trial files into one part file per table; returns the trials merged.

    For finished studies with many trials: loading reads a few large files instead of one per trial.
    Each part is written whole before the files it replaces are removed, and the loaders drop rows
    seen twice, so an interruption loses nothing. Do not run it while a search writes to the study.
    """
    merged = 0
    for name in ("steps", "layers", "trials"):  # trials last, as when writing
        folder = table_dir(results, study, name)
        singles = sorted(folder.glob("trial-*.parquet"))
        if not singles:
            continue
        first, last = (int(f.stem.removeprefix("trial-")) for f in (singles[0], singles[-1]))
        part = folder / f"part-{first:06d}-{last:06d}.parquet"
        # there already: a run interrupted before its removals wrote it, whole, from these very files
        # (trial numbers never come back, so the same range is the same trials)
        if not part.exists():
            table = pa.concat_tables([pq.read_table(f) for f in singles], promote_options="default")
            write_atomic(
                part,
                lambda tmp, t=table: pq.write_table(t, tmp),
                exclusive=True,
                scratch=Path(results) / study / ".tmp",
            )
        for f in singles:
            f.unlink()
        merged = len(singles) if name == "trials" else merged
    return merged


def load_trials(results: Path, study: str) -> pd.DataFrame:
    """Every record of one study, one row per trial, ordered by trial number.

    Adds `replicates`: the other trials of the same assignment with a different seed. Records of schema
    versions before 4 read `random_streams` as "global", the only scheme there was, and their symmetric
    `*_int8` as `*_int8_sym`.
    """
    trials = _read(table_dir(results, study, "trials"), None, ["trial"])
    if not trials["trial"].is_monotonic_increasing:
        trials = trials.sort_values("trial", ignore_index=True)
    # Before schema 4 every trial drew its random numbers from one global generator
    trials["random_streams"] = trials["random_streams"].fillna("global")
    _int8_was_symmetric(trials)
    trials["replicates"] = [()] * len(trials)  # tuples: immutable, so one empty tuple serves every row
    repeated = trials[trials["assignment"].duplicated(keep=False)]  # usually few: the rest is a Python loop
    replicated = repeated[repeated.groupby("assignment")["seed"].transform("nunique") > 1]
    seeds_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for number, assignment, seed in zip(replicated["trial"], replicated["assignment"], replicated["seed"], strict=True):
        seeds_of[assignment].append((number, seed))
    for row, assignment, seed in zip(replicated.index, replicated["assignment"], replicated["seed"], strict=True):
        trials.at[row, "replicates"] = tuple(n for n, s in seeds_of[assignment] if s != seed)
    return trials


def _int8_was_symmetric(trials: pd.DataFrame) -> None:
    """Before schema 4, `*_int8` was symmetric INT8 (the affine one did not exist): read it as `*_int8_sym`,
    in the values and in the objectives and reference point the study was searched with.

    Its codes were [-128, 127] with scale max|x|/127, so -128 was never reached inside the calibrated
    range: the same grid as today's [-127, 127].
    """
    old = trials["schema_version"] < 4
    if not old.any():
        return
    for name in ("val_loss_int8", "quant_gap_int8"):
        trials.loc[old, f"{name}_sym"] = trials.loc[old, name]
        trials.loc[old, name] = float("nan")
    for column in ("objectives", "reference_point"):  # JSON objects keyed by metric
        renamed = (
            trials.loc[old, column]
            .astype(str)
            .map(lambda text: json.dumps({_SYM.get(k, k): v for k, v in json.loads(text).items()}))
        )
        trials[column] = trials[column].astype(str)
        trials.loc[old, column] = renamed
        trials[column] = trials[column].astype("category")


_SYM = {"val_loss_int8": "val_loss_int8_sym", "quant_gap_int8": "quant_gap_int8_sym"}


def load_steps(results: Path, study: str) -> pd.DataFrame:
    """Every logged step of the study's recorded trials, ordered by trial and step."""
    steps = _read(table_dir(results, study, "steps"), STEPS_SCHEMA, ["trial", "step"])
    return _committed(results, study, steps).sort_values(["trial", "step"], ignore_index=True)


def load_evals(results: Path, study: str) -> pd.DataFrame:
    """The steps that measured val_loss (trial, step, val_loss): the learning curves, a small read even
    for a large study (three columns, the evaluated rows)."""
    evals = _read(
        table_dir(results, study, "steps"),
        STEPS_SCHEMA,
        ["trial", "step"],
        columns=["trial", "step", "val_loss"],
        where=pc.field("val_loss").is_valid(),
    )
    return _committed(results, study, evals).sort_values(["trial", "step"], ignore_index=True)


def load_layers(results: Path, study: str) -> pd.DataFrame:
    """One row per recorded trial and layer, ordered by trial and layer."""
    layers = _read(table_dir(results, study, "layers"), LAYERS_SCHEMA, ["trial", "layer"])
    return _committed(results, study, layers).sort_values(["trial", "layer"], ignore_index=True)


def routing_shares(layers: pd.DataFrame) -> pd.DataFrame:
    """The mixed layers' routing at each evaluation in long form, one row per trial, layer, step and part:
    trial, layer, activation (the layer's choice, `gelu+swiglu`), step, part (`gelu`) and share (of the
    held-out tokens routed to that part's experts), from `eval_activation_share` (empty before schema 8)."""
    mixed = layers.dropna(subset=["eval_activation_share"])
    mixed = mixed[mixed["activation"].astype(str).str.contains("+", regex=False)]
    rows = [
        (trial, layer, str(choice), int(step), part, share)
        for trial, layer, choice, found in zip(
            mixed["trial"], mixed["layer"], mixed["activation"], mixed["eval_activation_share"], strict=True
        )
        for step, shares in json.loads(found).items()
        for part, share in shares.items()
    ]
    return pd.DataFrame(rows, columns=["trial", "layer", "activation", "step", "part", "share"])


# Columns with a handful of distinct values: read as categoricals, not a million strings each.
_FEW_VALUES = [
    "study",
    "origin",
    "state",
    "objectives",
    "reference_point",
    "effect_size",
    "data_sha256",
    "python_version",
    "torch_version",
    "deepspeed_version",
    "optuna_version",
    "moesearch_version",
    "device_kind",
    "activation",
    *(layer_name(i) for i in range(100)),
]


def has_records(results: Path, study: str) -> bool:
    """Whether the study has any record in the results folder, in trial files or compacted part files."""
    return bool(_files(trials_dir(results, study)))


def _files(folder: Path) -> list[str]:
    """A table's files: one per trial, and the part files `compact` merges them into."""
    if not folder.is_dir():
        return []
    return sorted(str(f) for pattern in ("part-*.parquet", "trial-*.parquet") for f in folder.glob(pattern))


def _read(
    folder: Path,
    fixed: pa.Schema | None,
    key: list[str],
    columns: list[str] | None = None,
    where: pc.Expression | None = None,
) -> pd.DataFrame:
    """All files of one table (a multi-threaded dataset scan); a row in two files (compaction) counts once."""
    files = _files(folder)
    if not files:
        empty = (fixed or schema(0)).empty_table()
        return (empty.select(columns) if columns else empty).to_pandas()
    first = pq.read_schema(files[0])
    found = (first.metadata or {}).get(b"moesearch_schema_version", b"?").decode()
    if found not in READABLE:
        raise InputError(
            f"--results: {folder} holds records of schema version {found}; this moesearch reads "
            f"versions {', '.join(READABLE)} (docs/results.md); use the moesearch that wrote them"
        )
    # this version's columns, whatever the files hold: those an older version lacks read as null
    fixed = fixed or schema(sum(name.startswith("layer_") for name in first.names))
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=_FEW_VALUES))
    rows = ds.dataset(files, schema=fixed, format=fmt).to_table(columns=columns, filter=where).to_pandas()
    return rows.drop_duplicates(subset=key, ignore_index=True) if any("part-" in f for f in files) else rows


def _committed(results: Path, study: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of trials that have a trials record (a crash between a trial's files leaves others behind)."""
    files = _files(trials_dir(results, study))
    recorded = ds.dataset(files, format="parquet").to_table(columns=["trial"]).column("trial") if files else []
    return rows[rows["trial"].isin(set(pa.array(recorded).to_pylist()))]
