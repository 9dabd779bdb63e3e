"""Parquet records (trials, steps, layers) and the Pareto analysis, from the files alone."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from moesearch.analysis import pareto
from moesearch.cli import cli
from moesearch.core import results

ROOT = Path(__file__).resolve().parent.parent

OBJECTIVES = {"val_loss": "minimize", "tokens_per_s": "maximize"}
REFERENCE = {"val_loss": 3.0, "tokens_per_s": 0.0}


def steps(n: int = 3) -> list[dict]:
    return [
        {
            "step": s,
            "tokens": 64 * s,
            "train_loss": 3.0 - s / 10,
            "aux_loss": 2.0,
            "lr": 1e-3,
            "step_time_s": 0.1,
            "val_loss": 2.5 if s == n else None,
        }
        for s in range(1, n + 1)
    ]


def layer_rows(assignment: str) -> list[dict]:
    return [
        {
            "layer": i,
            "activation": a,
            "moe": True,
            "hidden_width": 96,
            "n_experts": 2,
            "top_k": 1,
            "expert_load": [0.5, 0.5],
            "load_balance": 1.0,
            "hidden_mean": 0.1,
            "hidden_std": 0.2,
            "hidden_zero_frac": 0.0,
            "hidden_near_zero_frac": 0.1,
        }
        for i, a in enumerate(assignment.split(","))
    ]


def record(
    trial: int,
    assignment: str,
    val_loss: float | None,
    tokens_per_s: float | None,
    state="COMPLETE",
    seed: int = 0,
    study: str = "s",
    origin: str = "search",
    data_sha256: str = "ab",
) -> results.Record:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    metrics = (
        {}
        if val_loss is None
        else {
            "val_loss": val_loss,
            "tokens_per_s": tokens_per_s,
            "params_total": 10,
            "params_active": 4,
            "train_flops_per_token": 1000,
            "peak_memory_mb": 9.0,
        }
    )
    return results.make_record(
        study=study,
        trial=trial,
        origin=origin,
        layers=assignment.split(","),
        state=state,
        failure_reason=None if state == "COMPLETE" else "diverged: non-finite loss at step 3",
        objectives=OBJECTIVES,
        reference_point=REFERENCE,
        metrics=metrics,
        steps=steps(),
        layer_rows=layer_rows(assignment) if state == "COMPLETE" else [],
        config_json="{}",
        seed=seed,
        replicate_of=None,
        data_sha256=data_sha256,
        hardware={"device_kind": "cpu", "device_count": 1, "world_size": 2},
        ep_size=2,
        random_streams="crn",
        started_at=start,
        finished_at=start + timedelta(seconds=5),
    )


def write(folder, *records) -> None:
    for r in records:
        results.write_trial(folder, r)


def test_a_record_round_trips_in_three_tables_with_schema_and_versions(tmp_path):
    path = results.write_trial(tmp_path, record(3, "gelu,swiglu", 2.0, 100.0))
    assert path.name == "trial-000003.parquet"
    for table in results.TABLES:
        meta = pq.read_schema(results.table_dir(tmp_path, "s", table) / path.name).metadata
        assert meta[b"moesearch_schema_version"] == str(results.SCHEMA_VERSION).encode()
    row = pq.read_table(path).to_pylist()[0]
    assert row["layer_00"] == "gelu" and row["layer_01"] == "swiglu" and row["assignment"] == "gelu,swiglu"
    assert json.loads(row["objectives"]) == OBJECTIVES and json.loads(row["reference_point"]) == REFERENCE
    assert row["torch_version"] and row["deepspeed_version"] and row["optuna_version"] and row["python_version"]
    assert row["wall_time_s"] == 5.0 and row["step_time_s"] is None and row["origin"] == "search"
    steps_df, layers_df = results.load_steps(tmp_path, "s"), results.load_layers(tmp_path, "s")
    assert steps_df["step"].tolist() == [1, 2, 3] and set(steps_df["trial"]) == {3}
    assert steps_df["val_loss"].isna().tolist() == [True, True, False]
    assert layers_df["activation"].tolist() == ["gelu", "swiglu"] and layers_df["expert_load"][0].tolist() == [0.5, 0.5]
    assert list(tmp_path.rglob(".tmp-*")) == []


def test_a_trial_is_never_written_twice(tmp_path):
    write(tmp_path, record(1, "gelu,gelu", 2.0, 100.0))
    with pytest.raises(FileExistsError):
        results.write_trial(tmp_path, record(1, "gelu,gelu", 9.0, 1.0))
    assert pq.read_table(results.trials_dir(tmp_path, "s")).column("val_loss").to_pylist() == [2.0]
    assert len(results.load_steps(tmp_path, "s")) == 3, "no second set of step rows either"
    assert list(tmp_path.rglob(".tmp-*")) == []


def test_rows_of_a_trial_without_its_trials_record_are_not_loaded(tmp_path):
    write(tmp_path, record(0, "gelu,gelu", 2.0, 100.0), record(1, "gelu,swiglu", 2.1, 90.0))
    (results.trials_dir(tmp_path, "s") / "trial-000001.parquet").unlink()  # as if it crashed before the commit
    assert set(results.load_steps(tmp_path, "s")["trial"]) == {0}
    assert set(results.load_layers(tmp_path, "s")["trial"]) == {0}


def test_seed_replicates_link_to_each_other(tmp_path):
    write(
        tmp_path,
        record(0, "gelu,gelu", 2.0, 100.0),
        record(1, "gelu,swiglu", 1.9, 90.0),
        record(2, "gelu,gelu", 2.1, 101.0, seed=1, origin="verify"),
        record(3, "gelu,gelu", 2.2, 99.0, seed=2),
    )
    trials = results.load_trials(tmp_path, "s").set_index("trial")
    assert trials["replicates"].to_dict() == {0: (2, 3), 1: (), 2: (0, 3), 3: (0, 2)}


def test_polars_and_duckdb_read_the_same_files(tmp_path):
    import duckdb
    import polars as pl

    write(tmp_path, record(0, "gelu,gelu", 2.0, 100.0), record(1, "swiglu,gelu", 1.9, 90.0))
    study = tmp_path / "s"
    (study / ".tmp" / ".tmp-left-by-a-killed-writer.parquet").write_bytes(b"PAR1 half")  # globs must not see it
    trials = pl.read_parquet(study / "trials" / "*.parquet")
    assert sorted(trials["assignment"].to_list()) == ["gelu,gelu", "swiglu,gelu"]
    curve = duckdb.sql(f"""
        SELECT t.assignment, max(s.step) AS last_step, min(s.train_loss) AS best
        FROM '{study}/steps/*.parquet' s JOIN '{study}/trials/*.parquet' t USING (trial)
        GROUP BY t.assignment ORDER BY t.assignment""").fetchall()
    assert curve == [("gelu,gelu", 3, 2.7), ("swiglu,gelu", 3, 2.7)]
    layer = duckdb.sql(f"SELECT avg(load_balance) FROM '{study}/layers/*.parquet'").fetchall()[0][0]
    assert layer == 1.0


FRONT = [
    record(0, "gelu,gelu", 2.0, 120.0),
    record(1, "swiglu,swiglu", 1.8, 100.0),
    record(2, "gelu,swiglu", 1.9, 110.0),
    record(3, "swiglu,gelu", 1.95, 90.0),
    record(4, "relu,relu", 2.5, 80.0),
    record(5, "relu,gelu", None, None, state="FAIL"),
]


def test_ranks_knee_and_hypervolume(tmp_path):
    write(tmp_path, *FRONT)
    analysis = pareto.analyse(results.load_trials(tmp_path, "s"))
    t = analysis.table.set_index("assignment")
    assert t["pareto_rank"].to_dict() == {
        "gelu,gelu": 1,
        "swiglu,swiglu": 1,
        "gelu,swiglu": 1,
        "swiglu,gelu": 2,
        "relu,relu": 3,
    }
    assert t.index[t["knee"]].tolist() == ["gelu,swiglu"], "the balanced middle of a symmetric front"
    assert t.loc[["gelu,gelu", "swiglu,swiglu", "relu,relu"], "baseline"].all()
    # (3.0 - loss) x tokens/s, as rectangles under the staircase of the three front points
    assert analysis.hypervolume == pytest.approx(1.0 * 120 + 1.1 * 110 - 1.0 * 110 + 1.2 * 100 - 1.1 * 100)
    assert analysis.failed == 1


def test_hypervolume_history_grows_only_when_the_front_does(tmp_path):
    write(tmp_path, *FRONT, record(6, "relu,swiglu", 2.9, 1.0), record(7, "gelu,relu", 3.5, 500.0))
    analysis = pareto.analyse(results.load_trials(tmp_path, "s"))
    history = analysis.history.set_index("trial")["hypervolume"]
    assert history.index.tolist() == [0, 1, 2, 3, 4, 6, 7], "failed trials have no point"
    assert history[0] == pytest.approx(120) and history.is_monotonic_increasing
    assert history[2] > history[1] and history[3] == history[2] and history[4] == history[3]
    assert history[7] == history[6] == history[4], "a point beyond the reference adds nothing"
    assert history.iloc[-1] == pytest.approx(analysis.hypervolume)


def test_seed_replicates_count_once_at_their_mean(tmp_path):
    write(tmp_path, *FRONT, record(6, "gelu,swiglu", 2.1, 110.0, seed=1, origin="verify"))
    analysis = pareto.analyse(results.load_trials(tmp_path, "s"))
    row = analysis.table.set_index("assignment").loc["gelu,swiglu"]
    assert row["seeds"] == 2 and row["trials"] == [2, 6] and row["val_loss"] == pytest.approx(2.0)
    assert row["val_loss_std"] == pytest.approx(math.sqrt(0.02))
    history = analysis.history.set_index("trial")["hypervolume"]
    assert history.index.tolist() == [0, 1, 2, 3, 4, 6]
    assert history[6] < history[4], "the replicate's worse loss moves the mean: the volume shrinks"
    assert history[6] == pytest.approx(analysis.hypervolume), "history ends at the headline hypervolume"


def test_a_repeated_seed_is_averaged_before_the_spread_over_seeds(tmp_path):
    write(
        tmp_path,
        record(0, "gelu,gelu", 2.0, 100.0),
        record(1, "gelu,gelu", 2.2, 100.0),
        record(2, "gelu,gelu", 2.4, 100.0, seed=1),
    )
    row = pareto.analyse(results.load_trials(tmp_path, "s")).table.iloc[0]
    assert row["seeds"] == 2 and row["val_loss"] == pytest.approx(2.25) and row["trials"] == [0, 1, 2]
    assert row["val_loss_std"] == pytest.approx(math.sqrt(2 * 0.15**2))


def test_the_large_study_front_matches_the_full_analysis(tmp_path):
    """`pareto.front` (positions, no ranks) against `analyse`: replicates, a repeated seed and failures."""
    write(
        tmp_path,
        *FRONT,
        record(6, "gelu,swiglu", 2.1, 110.0, seed=1, origin="verify"),
        record(7, "swiglu,swiglu", 1.6, 100.0),
        record(8, "swiglu,gelu", None, None, state="FAIL"),
    )
    trials = results.load_trials(tmp_path, "s")
    analysis = pareto.analyse(trials)
    on, volume = pareto.front(trials)
    expected = analysis.table[analysis.table["pareto"]].drop(columns=["pareto_rank", "pareto", "knee"])
    pd.testing.assert_frame_equal(
        on.set_index("assignment").sort_index(), expected.set_index("assignment").sort_index(), check_like=True
    )
    assert volume == pytest.approx(analysis.hypervolume)


def test_front_members_are_compared_with_every_baseline(tmp_path):
    write(tmp_path, *FRONT)
    deltas = pareto.analyse(results.load_trials(tmp_path, "s")).deltas.set_index(["assignment", "baseline"])
    assert (
        deltas.loc[("gelu,swiglu", "all-swiglu"), "summary"]
        == "0.100 higher val_loss, 10.0% higher tokens_per_s than all-swiglu"
    )
    assert deltas.loc[("gelu,swiglu", "all-gelu"), "val_loss_delta"] == pytest.approx(-0.1)
    assert ("gelu,gelu", "all-gelu") not in deltas.index, "no baseline against itself"
    assert ("swiglu,gelu", "all-gelu") not in deltas.index, "only front members"


def test_pareto_prints_the_front_and_exports_the_ranked_table(tmp_path):
    write(tmp_path, *FRONT)
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path), "--out", str(tmp_path / "front.parquet")])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert any(line.split()[:4] == ["*", "B", "1", "0"] or line.split()[:3] == ["*B", "1", "0"] for line in lines)
    assert any(line.split()[:5] == ["B", "3", "4", "1", "relu,relu"] for line in lines), "dominated baselines too"
    assert not any("swiglu,gelu" in line.split() for line in lines), "dominated hybrids are not"
    assert "5 assignments from 5 complete trials (1 failed), 3 on the front" in out.output
    assert "gelu,swiglu: 0.100 lower val_loss, 8.3% lower tokens_per_s than all-gelu" in out.output
    exported = pd.read_parquet(tmp_path / "front.parquet").set_index("assignment")
    assert exported["pareto"].sum() == 3 and exported.loc["swiglu,gelu", "pareto_rank"] == 2
    assert exported.loc["gelu,swiglu", ["layer_00", "layer_01"]].tolist() == ["gelu", "swiglu"]
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path), "--all", "--out", str(tmp_path / "f.csv")])
    assert out.exit_code == 0 and any("swiglu,gelu" in line.split() for line in out.output.splitlines())
    assert pd.read_csv(tmp_path / "f.csv")["knee"].sum() == 1


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_export_holds_every_objective_and_cost_column_and_readable_trial_lists(tmp_path, suffix):
    write(tmp_path, *FRONT, record(6, "gelu,swiglu", 2.1, 110.0, seed=1, origin="verify"))
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path), "--out", str(tmp_path / f"f{suffix}")])
    assert out.exit_code == 0, out.output
    exported = (pd.read_csv if suffix == ".csv" else pd.read_parquet)(tmp_path / f"f{suffix}").set_index("assignment")
    from moesearch.core.metrics import METRICS

    assert set(METRICS) <= set(exported.columns), "docs/results.md: every objective and cost column"
    assert exported.loc["gelu,gelu", ["params_total", "train_flops_per_token"]].tolist() == [10, 1000]
    assert exported["params_total"].dtype.kind == "i", "exact counts stay integers"
    trials = exported["trials"].map(json.loads) if suffix == ".csv" else exported["trials"].map(list)
    assert trials["gelu,gelu"] == [0] and trials["gelu,swiglu"] == [2, 6], "a list, not a bare 0 that reads as a count"


def test_pareto_imports_neither_torch_nor_deepspeed(tmp_path):
    write(tmp_path, *FRONT)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "moesearch", "pareto", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert "moesearch" in imported and not imported & {"torch", "deepspeed"}


@pytest.mark.parametrize(
    "args, flag, says",
    [
        (["--study", "nope"], "--study", "a, b"),
        (["--study", "a", "--out", "f.xlsx"], "--out", ".csv"),
    ],
)
def test_pareto_names_the_bad_flag(tmp_path, args, flag, says):
    for study in ("a", "b"):
        write(tmp_path, record(0, "gelu,gelu", 2.0, 1.0, study=study))
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path), *args])
    assert out.exit_code == 2 and flag in out.output and says in out.output
    assert not list(tmp_path.glob("f.*"))


def test_pareto_names_a_missing_results_folder(tmp_path):
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path / "nowhere")])
    assert out.exit_code == 2 and "--results" in out.output and "not a folder" in out.output
    assert "allowed: the results folder of a search, e.g. --results path/to/results" in out.output


def test_pareto_of_a_study_with_only_failures_says_so(tmp_path):
    write(tmp_path, record(0, "relu,gelu", None, None, state="FAIL"))
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path)])
    assert out.exit_code == 2 and "no completed trial" in out.output


def documented_columns(section: str) -> list[str]:
    """Column names in the tables under '## <section>' of docs/results.md."""
    text = (ROOT / "docs" / "results.md").read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]


def test_docs_describe_every_column_of_every_table_and_the_schema_version():
    trials = [n for n in results.schema(2).names if not n.startswith("layer_")] + ["layer_00", "replicates"]
    assert documented_columns("trials") == trials
    assert documented_columns("steps") == results.STEPS_SCHEMA.names
    assert documented_columns("layers") == results.LAYERS_SCHEMA.names
    assert f"Schema version: **{results.SCHEMA_VERSION}**" in (ROOT / "docs" / "results.md").read_text()


def naive_ranks(points, maximise) -> list[int]:
    """Pareto ranks by repeatedly peeling off the non-dominated set, with an O(n^2) dominance check."""
    signed = [[-v if m else v for v, m in zip(p, maximise, strict=True)] for p in points]
    ranks, left, level = [0] * len(points), set(range(len(points))), 1
    while left:
        front = {
            i
            for i in left
            if not any(
                all(a <= b for a, b in zip(signed[j], signed[i], strict=True)) and signed[j] != signed[i] for j in left
            )
        }
        for i in front:
            ranks[i] = level
        left, level = left - front, level + 1
    return ranks


@pytest.mark.parametrize("n_objectives", [2, 3, 4])
def test_ranks_match_a_naive_peeling_for_two_to_four_objectives(n_objectives):
    import numpy as np

    names = ["val_loss", "tokens_per_s", "params_active", "peak_memory_mb"][:n_objectives]
    objectives = {n: "maximize" if n == "tokens_per_s" else "minimize" for n in names}
    rng = np.random.default_rng(n_objectives)
    table = pd.DataFrame(rng.integers(0, 6, size=(60, n_objectives)).astype(float), columns=names)  # ties included
    ranked = pareto.rank(table, objectives)
    assert ranked["pareto_rank"].tolist() == naive_ranks(
        table.to_numpy().tolist(), [d == "maximize" for d in objectives.values()]
    )
    assert ranked["knee"].sum() == 1 and ranked.loc[ranked["knee"], "pareto"].all()


def test_records_of_another_schema_version_get_a_clear_error(tmp_path):
    path = results.write_trial(tmp_path, record(0, "gelu,gelu", 2.0, 100.0))
    table = pq.read_table(path)
    path.unlink()
    pq.write_table(table.replace_schema_metadata({"moesearch_schema_version": "1"}), path)
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path)])
    assert out.exit_code == 2 and "schema version 1" in out.output and "reads versions 2, 3" in out.output


def test_compacting_keeps_every_row_once_even_if_interrupted(tmp_path):
    import shutil

    write(tmp_path, *FRONT)
    before = [results.load_trials(tmp_path, "s"), results.load_steps(tmp_path, "s"), results.load_layers(tmp_path, "s")]
    kept = tmp_path / "kept.parquet"
    shutil.copy(results.trials_dir(tmp_path, "s") / "trial-000002.parquet", kept)
    out = CliRunner().invoke(cli, ["compact", "--results", str(tmp_path)])
    assert out.exit_code == 0 and "merged 6 trials" in out.output
    for table in results.TABLES:
        assert [p.name.split("-")[0] for p in results.table_dir(tmp_path, "s", table).iterdir()] == ["part"]
    shutil.copy(kept, results.trials_dir(tmp_path, "s") / "trial-000002.parquet")  # as if interrupted before removal
    after = [results.load_trials(tmp_path, "s"), results.load_steps(tmp_path, "s"), results.load_layers(tmp_path, "s")]
    for old, new in zip(before, after, strict=True):
        pd.testing.assert_frame_equal(old.reset_index(drop=True), new.reset_index(drop=True))
    again = CliRunner().invoke(cli, ["compact", "--results", str(tmp_path)])  # and then run again
    assert again.exit_code == 0 and "merged 1 trials" in again.output, again.output
    pd.testing.assert_frame_equal(before[0].reset_index(drop=True), results.load_trials(tmp_path, "s"))


def test_compacting_again_after_an_interruption_before_any_removal_finishes_the_job(tmp_path, monkeypatch):
    """Killed after the part was linked in, before a single file went: the same command finishes it."""
    from pathlib import Path

    write(tmp_path, *FRONT)
    before = results.load_trials(tmp_path, "s")

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Path, "unlink", killed)
        with pytest.raises(KeyboardInterrupt):
            results.compact(tmp_path, "s")
    out = CliRunner().invoke(cli, ["compact", "--results", str(tmp_path)])
    assert out.exit_code == 0 and "merged 6 trials" in out.output, out.output
    assert sorted(p.name.split("-")[0] for p in results.trials_dir(tmp_path, "s").iterdir()) == ["part"]
    pd.testing.assert_frame_equal(before.reset_index(drop=True), results.load_trials(tmp_path, "s"))


def test_records_of_schema_version_2_read_with_the_new_columns_null(tmp_path):
    new = record(1, "gelu,swiglu", 2.0, 100.0)
    write(tmp_path, record(0, "gelu,gelu", 2.1, 90.0), new)
    for table, dropped in (
        ("trials", ["max_grad_norm", "clipped_share", "loss_spikes", "precision", "random_streams"]),
        ("steps", ["grad_norm"]),
    ):  # trial 0 as moesearch 0.x with schema 2 wrote it
        path = results.trial_file(tmp_path, "s", 0, table)
        old = pq.read_table(path).drop_columns(dropped)
        old = old.replace_schema_metadata({b"moesearch_schema_version": b"2"})
        path.unlink()
        pq.write_table(old, path)
    trials, steps = results.load_trials(tmp_path, "s"), results.load_steps(tmp_path, "s")
    assert list(trials["trial"]) == [0, 1] and trials["precision"].isna().all()
    assert list(trials["random_streams"]) == ["global", "crn"], "old records are marked as the one scheme there was"
    assert steps.loc[steps["trial"] == 0, "grad_norm"].isna().all() and len(steps) == 6


def test_version_3_s_symmetric_int8_reads_as_int8_sym(tmp_path):
    import pyarrow as pa

    gaps = {"val_loss_int8": 2.01, "quant_gap_int8": 0.01}
    old, new = record(0, "gelu,gelu", 2.0, 90.0), record(1, "gelu,swiglu", 2.0, 100.0)
    write(
        tmp_path,
        results.Record({**old.trial, **gaps}, old.steps, old.layers),
        results.Record({**new.trial, **gaps}, new.steps, new.layers),
    )
    path = results.trial_file(tmp_path, "s", 0)  # trial 0 as schema 3 wrote it: no affine INT8, *_int8 symmetric
    table = pq.read_table(path).drop_columns(
        ["val_loss_int8_sym", "quant_gap_int8_sym", "random_streams", "quant_uncalibrated_experts"]
    )
    table = table.set_column(0, "schema_version", pa.array([3], pa.int32()))
    path.unlink()
    pq.write_table(table.replace_schema_metadata({b"moesearch_schema_version": b"3"}), path)
    trials = results.load_trials(tmp_path, "s").set_index("trial")
    assert trials.loc[0, "val_loss_int8_sym"] == 2.01 and trials.loc[0, "quant_gap_int8_sym"] == 0.01
    assert math.isnan(trials.loc[0, "val_loss_int8"]) and math.isnan(trials.loc[0, "quant_gap_int8"])
    assert trials.loc[1, "quant_gap_int8"] == 0.01 and math.isnan(trials.loc[1, "quant_gap_int8_sym"]), "schema 4 as is"


def test_a_schema_3_study_searched_on_the_symmetric_gap_keeps_its_front(tmp_path):
    objectives = {"val_loss": "minimize", "quant_gap_int8": "minimize"}
    for number, (loss, gap) in enumerate([(2.0, 0.02), (2.1, 0.01), (2.2, 0.03)]):
        r = record(number, ["gelu,gelu", "gelu,swiglu", "swiglu,gelu"][number], loss, 1.0)
        row = {
            **r.trial,
            "schema_version": 3,
            "val_loss_int8": loss + gap,
            "quant_gap_int8": gap,
            "objectives": json.dumps(objectives),
            "reference_point": json.dumps({"val_loss": 3.0, "quant_gap_int8": 1.0}),
        }
        results.write_trial(tmp_path, results.Record(row, r.steps, r.layers))
    analysis = pareto.analyse(results.load_trials(tmp_path, "s"))
    assert list(analysis.objectives) == ["val_loss", "quant_gap_int8_sym"]
    assert sorted(analysis.table.loc[analysis.table["pareto"], "assignment"]) == ["gelu,gelu", "gelu,swiglu"]


def test_pareto_all_lists_pruned_assignments_with_their_state_and_rung_values(tmp_path):
    stopped = record(6, "relu,swiglu", 2.7, 95.0, state="PRUNED")  # its metrics are those at the rung, step 2
    stopped = results.Record(
        stopped.trial, [{**row, "val_loss": 2.7 if row["step"] == 2 else None} for row in steps(2)], []
    )
    resumed = record(7, "swiglu,gelu", 3.0, 50.0, state="PRUNED", seed=1)  # pruned, but complete with seed 0
    write(tmp_path, *FRONT, stopped, resumed)
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path), "--all", "--out", str(tmp_path / "all.csv")])
    assert out.exit_code == 0, out.output
    [line] = [line for line in out.output.splitlines() if "relu,swiglu" in line.split()]
    assert line.split()[:4] == ["-", "6", "1", "relu,swiglu"] and line.split()[4] == "2.7"
    assert line.rstrip().endswith("PRUNED at step 2")
    assert "PRUNED rows: stopped at a rung" in out.output
    assert not any("3.0" in line.split() for line in out.output.splitlines()), "a completed assignment shows its mean"
    exported = pd.read_csv(tmp_path / "all.csv").set_index("assignment")
    assert exported.loc["relu,swiglu", ["state", "rung", "val_loss"]].tolist() == ["PRUNED", 2, 2.7]
    assert pd.isna(exported.loc["relu,swiglu", "pareto_rank"]) and not exported.loc["relu,swiglu", "pareto"]
    assert (exported.drop("relu,swiglu")["state"] == "COMPLETE").all() and len(exported) == 6
    front = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path)])
    assert "relu,swiglu" not in front.output and "PRUNED rows" not in front.output, "without --all: front and baselines"
