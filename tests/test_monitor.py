"""Live curves: a two-rank search's TensorBoard events (DeepSpeed's monitor), read back with tensorboard's own
reader, its CSV files, and a training's offline Weights & Biases run, against the Parquet records of the same
trials; and the refusals of a monitor that cannot run here."""

from __future__ import annotations

import csv
import json

import pytest
import wandb_log
from click.testing import CliRunner
from conftest import run_cli

from moesearch.cli import cli
from moesearch.core import results


@pytest.fixture(scope="module")
def monitored(tiny_study):
    """The tiny study: its search ran with --monitor tensorboard --monitor csv, its verify without."""
    return tiny_study


def runs(folder, kind: str) -> dict[str, object]:
    return {p.name: p for p in sorted((folder / "tiny" / "monitor" / kind).iterdir())}


@pytest.mark.slow
def test_tensorboard_has_one_run_per_trial_with_every_step_evaluation_and_objective(monitored):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trials, steps = results.load_trials(monitored, "tiny"), results.load_steps(monitored, "tiny")
    trials = trials[trials["origin"] == "search"]  # verify ran without a monitor
    found = runs(monitored, "tensorboard")
    assert list(found) == [
        f"trial-{t:06d}_{a.replace(',', '-')}_seed0" for t, a in zip(trials["trial"], trials["assignment"], strict=True)
    ]
    for folder, (_, row) in zip(found.values(), trials.iterrows(), strict=True):
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1, "only rank 0 writes"
        events = EventAccumulator(str(folder))
        events.Reload()
        mine = steps[steps["trial"] == row["trial"]]
        train = events.Scalars("Train/train_loss")
        assert [e.step for e in train] == mine["step"].tolist()
        assert [e.value for e in train] == pytest.approx(mine["train_loss"].tolist(), rel=1e-6)
        for tag in ("Train/aux_loss", "Train/lr", "Train/step_time_s"):
            assert len(events.Scalars(tag)) == len(mine), tag
        evaluated = mine.dropna(subset=["val_loss"])
        val = events.Scalars("Eval/val_loss")
        assert [e.step for e in val] == evaluated["step"].tolist() == [4, 8, 12]
        assert [e.value for e in val] == pytest.approx(evaluated["val_loss"].tolist(), rel=1e-6)
        for objective in ("val_loss", "tokens_per_s"):
            assert events.Scalars(f"Final/{objective}")[0].value == pytest.approx(row[objective], rel=1e-6)


@pytest.mark.slow
def test_the_csv_monitor_writes_the_same_curves(monitored):
    steps = results.load_steps(monitored, "tiny")
    for folder in runs(monitored, "csv").values():
        t = int(folder.name.split("_")[0].removeprefix("trial-"))
        with open(folder / "Train_train_loss.csv") as f:
            rows = list(csv.DictReader(f))
        mine = steps[steps["trial"] == t]
        assert [int(r["step"]) for r in rows] == mine["step"].tolist()
        assert [float(r["train_loss"]) for r in rows] == pytest.approx(mine["train_loss"].tolist(), rel=1e-6)
        assert (folder / "Eval_val_loss.csv").exists() and (folder / "Final_quant_gap_int8.csv").exists()


@pytest.mark.slow
def test_a_wandb_run_per_trial_whose_offline_history_is_the_steps_table(tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_PROJECT": "moesearch-test"}
    args = ["tiny", "--nproc", "2", "--results", str(tmp_path), "--no-progress", "--monitor", "wandb"]
    out = run_cli("train", *args, "--layers", "swiglu,relu2", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    row = results.load_trials(tmp_path, "tiny").iloc[0]
    steps = results.load_steps(tmp_path, "tiny")
    (folder,) = (tmp_path / "tiny" / "monitor" / "wandb").glob("offline-run-*")  # one run, written by rank 0
    run = wandb_log.read(folder)
    assert run["name"] == f"trial-{row['trial']:06d}_swiglu-relu2_seed0" and run["group"] == "tiny"
    assert run["project"] == "moesearch-test"
    assert run["config"]["assignment"] == "swiglu,relu2" and run["config"]["layer_1"] == "relu2"
    assert run["config"]["model"] == json.loads(row["config_json"])["model"]
    history = {r["_step"]: r for r in run["history"]}
    assert sorted(history) == steps["step"].tolist()  # a row per step, at the training step
    for _, step in steps.iterrows():
        logged = history[step["step"]]
        for column in ("tokens", "train_loss", "aux_loss", "lr", "step_time_s", "grad_norm"):
            assert logged[f"Train/{column}"] == pytest.approx(step[column], rel=1e-6), column
        assert logged.get("Eval/val_loss") == (
            None if step["val_loss"] != step["val_loss"] else pytest.approx(step["val_loss"])
        )
    summary = run["summary"]
    assert summary["state"] == "COMPLETE"
    for objective in ("val_loss", "tokens_per_s", "params_active", "quant_gap_int8"):
        assert summary[objective] == pytest.approx(row[objective], rel=1e-6), objective


def test_monitor_wandb_without_the_package_or_a_login_is_refused_in_one_line(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.chdir(tmp_path)
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    refused = CliRunner().invoke(cli, ["search", "tiny", "--nproc", "2", "--monitor", "wandb"])
    assert refused.exit_code == 2 and refused.output.count("\n") == 1
    assert "--monitor wandb: not logged in" in refused.output and "WANDB_MODE=offline" in refused.output
    monkeypatch.setenv("WANDB_MODE", "offline")
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else found(name, *a))
    missing = CliRunner().invoke(cli, ["search", "tiny", "--nproc", "2", "--monitor", "wandb"])
    assert missing.exit_code == 2 and "pip install -e '.[wandb]'" in missing.output
    assert list(tmp_path.iterdir()) == [tmp_path / "netrc"]
