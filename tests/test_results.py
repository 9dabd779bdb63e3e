"""Parquet records and the Pareto front, from the files alone."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from moesearch import pareto, results
from moesearch.cli import cli

OBJECTIVES = {"val_loss": "minimize", "tokens_per_s": "maximize"}


def record(trial: int, assignment: str, val_loss: float | None, tokens_per_s: float | None, state="COMPLETE"):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    metrics = {} if val_loss is None else {"val_loss": val_loss, "tokens_per_s": tokens_per_s, "params_total": 10}
    return results.make_record(
        study="s", trial=trial, layers=assignment.split(","), state=state,
        failure_reason=None if state == "COMPLETE" else "diverged: non-finite loss at step 3",
        objectives=OBJECTIVES, metrics=metrics, config_json="{}", seed=0, data_sha256="ab",
        hardware={"device_kind": "cpu", "device_count": 1, "world_size": 2}, ep_size=2,
        started_at=start, finished_at=start + timedelta(seconds=5),
    )


def test_record_round_trips_with_schema_and_versions(tmp_path):
    path = results.write_trial(tmp_path, record(3, "gelu,swiglu", 2.0, 100.0))
    assert path.name == "trial-000003.parquet"
    table = pq.read_table(path)
    assert table.schema.metadata[b"moesearch_schema_version"] == str(results.SCHEMA_VERSION).encode()
    row = table.to_pylist()[0]
    assert row["layer_00"] == "gelu" and row["layer_01"] == "swiglu" and row["assignment"] == "gelu,swiglu"
    assert json.loads(row["objectives"]) == OBJECTIVES
    assert row["torch_version"] and row["deepspeed_version"] and row["optuna_version"] and row["python_version"]
    assert row["wall_time_s"] == 5.0 and row["params_active"] is None
    assert list(tmp_path.rglob(".tmp-*")) == []


def test_a_trial_is_never_written_twice(tmp_path):
    results.write_trial(tmp_path, record(1, "gelu,gelu", 2.0, 100.0))
    with pytest.raises(FileExistsError):
        results.write_trial(tmp_path, record(1, "gelu,gelu", 9.0, 1.0))
    assert pq.read_table(results.trials_dir(tmp_path, "s")).column("val_loss").to_pylist() == [2.0]
    assert list(tmp_path.rglob(".tmp-*")) == []


def test_front_marks_nondominated_and_always_shows_baselines(tmp_path):
    for row in [record(0, "gelu,gelu", 2.0, 120.0), record(1, "swiglu,swiglu", 1.8, 100.0),
                record(2, "gelu,swiglu", 1.9, 110.0), record(3, "swiglu,gelu", 1.95, 90.0),
                record(4, "relu,relu", 2.5, 80.0), record(5, "relu,gelu", None, None, state="FAIL")]:
        results.write_trial(tmp_path, row)
    trials = results.load_trials(tmp_path, "s")
    marked = pareto.mark_front(trials, OBJECTIVES).set_index("trial")
    assert marked["pareto"].to_dict() == {0: True, 1: True, 2: True, 3: False, 4: False}
    assert marked.loc[[0, 1, 4], "baseline"].all() and not marked.loc[[2, 3], "baseline"].any()

    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert any(l.split()[:3] == ["*B", "0", "0"] for l in lines), "mark, trial, seed"
    assert any(l.split()[:4] == ["B", "4", "0", "relu,relu"] for l in lines), "a dominated baseline is still shown"
    assert not any("swiglu,gelu" in l for l in lines), "dominated hybrids are not"
    assert "5 complete trials (1 failed), 3 on the front" in out.output


def test_pareto_imports_neither_torch_nor_deepspeed(tmp_path):
    import subprocess
    import sys

    results.write_trial(tmp_path, record(0, "gelu,gelu", 2.0, 120.0))
    code = ("import sys; from click.testing import CliRunner; from moesearch.cli import cli; "
            f"r = CliRunner().invoke(cli, ['pareto', '--results', {str(tmp_path)!r}]); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'deepspeed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("args, flag", [([], "--study"), (["--study", "nope"], "--study")])
def test_pareto_asks_for_an_existing_study(tmp_path, args, flag):
    for study in ("a", "b"):
        row = record(0, "gelu,gelu", 2.0, 1.0)
        row["study"] = study
        results.write_trial(tmp_path, row)
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path), *args])
    assert out.exit_code == 2 and flag in out.output and "a, b" in out.output


def test_pareto_names_a_missing_results_folder(tmp_path):
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path / "nowhere")])
    assert out.exit_code == 2 and "--results" in out.output and "is not a folder" in out.output
