"""Live curves through DeepSpeed's monitors: a two-rank search's TensorBoard events, read back with
tensorboard's own reader, and its CSV files, against the Parquet records of the same trials."""

from __future__ import annotations

import csv

import pytest

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
