"""Real searches: the CLI in a subprocess, a worker group of two gloo ranks, real DeepSpeed and Optuna."""

from __future__ import annotations

import os

import optuna
import pytest
from conftest import MICRO, ROOT, TAG_ENV, cli_command, leftover_ranks, run_cli, write_space

from moesearch.core import results
from moesearch.supervisor import optuna_compat


def records(folder, study):
    return results.load_trials(folder, study)


@pytest.mark.slow
def test_search_runs_baselines_first_records_each_trial_once_and_resumes(tmp_path):
    out = run_cli("search", "tiny", "--nproc", "2", "--trials", "4", "--results", str(tmp_path), "--no-progress")
    assert out.returncode == 0, out.stderr
    first = records(tmp_path, "tiny")
    assert list(first["trial"]) == [0, 1, 2, 3]
    assert list(first["assignment"][:3]) == ["gelu,gelu", "swiglu,swiglu", "relu2,relu2"]
    assert (first["state"] == "COMPLETE").all() and (first["world_size"] == 2).all()
    assert first["val_loss"].notna().all() and first["tokens_per_s"].gt(0).all()
    assert "* = Pareto front" in out.stdout and "gelu,gelu" in out.stdout

    storage = f"sqlite:///{tmp_path / 'moesearch.db'}"
    optuna.load_study(study_name="tiny", storage=storage).enqueue_trial({"layer_00": "gelu", "layer_01": "gelu"})
    again = run_cli("search", "tiny", "--nproc", "2", "--trials", "6", "--results", str(tmp_path), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "2 trials trained now, 6 in study" in again.stdout
    assert "next: run the same command with --trials " in again.stdout, "6 trials of 5 effects resolve nothing"
    second = records(tmp_path, "tiny")
    assert len(second) == 6 and list(second["trial"][:4]) == [0, 1, 2, 3], "the first run's records are kept"
    assert (second["trial"][4:] > 3).all(), "resumed after them"
    assert second["assignment"].is_unique
    assert len(list(results.trials_dir(tmp_path, "tiny").iterdir())) == 6, "no temporary or extra files"
    study = optuna.load_study(study_name="tiny", storage=storage)
    told = [t for t in study.trials if t.user_attrs.get("trained")]
    assert sorted(t.number for t in told) == list(second["trial"]), "exactly the trained trials have records"
    answered = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert answered and answered[0].params == {"layer_00": "gelu", "layer_01": "gelu"}, "the repeat we enqueued"
    for t in answered:
        assert t.values == study.trials[t.user_attrs["duplicate_of"]].values
        assert t.number not in set(second["trial"])

    front = run_cli("pareto", "--results", str(tmp_path))
    assert front.returncode == 0 and "6 complete trials (0 failed)" in front.stdout


@pytest.mark.slow
def test_repeated_assignments_are_answered_not_trained(tmp_path):
    space = write_space(tmp_path, MICRO)  # four assignments in all
    out = run_cli(
        "search", str(space), "--nproc", "2", "--trials", "6", "--results", str(tmp_path / "r"), "--no-progress"
    )
    assert out.returncode == 0, out.stderr
    assert "all 4 assignments of the space are evaluated" in out.stdout
    trained = records(tmp_path / "r", "micro")
    assert len(trained) == 4 and trained["assignment"].is_unique
    study = optuna.load_study(study_name="micro", storage=f"sqlite:///{tmp_path / 'r' / 'moesearch.db'}")
    answered = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert answered, "four assignments, six asks: the (seeded) sampler proposed some again"
    assert f"({len(answered)} repeated proposal" in out.stdout
    for t in answered:  # answered from the study: same values, no record of its own
        assert t.values == study.trials[t.user_attrs["duplicate_of"]].values
        assert t.number not in set(trained["trial"])

    replicate = run_cli(
        "train",
        str(space),
        "--nproc",
        "2",
        "--layers",
        "gelu,gelu",
        "--seed",
        "1",
        "--results",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert replicate.returncode == 0, replicate.stderr
    after = records(tmp_path / "r", "micro")
    assert len(after) == 5 and list(after["seed"]) == [0, 0, 0, 0, 1]
    assert after["trial"].is_unique


@pytest.mark.slow
def test_divergence_and_a_crashed_group_are_recorded_and_the_search_goes_on(tmp_path):
    fault = "nan:gelu,gelu;crash:swiglu,swiglu"
    out = run_cli(
        "search",
        "tiny",
        "--nproc",
        "2",
        "--trials",
        "3",
        "--results",
        str(tmp_path),
        "--no-progress",
        env={"MOESEARCH_FAULT": fault},
    )
    assert out.returncode == 0, out.stderr
    rows = records(tmp_path, "tiny").set_index("assignment")
    assert rows.loc["gelu,gelu", "state"] == "FAIL"
    assert "diverged: non-finite loss at step 1" in rows.loc["gelu,gelu", "failure_reason"]
    assert rows.loc["swiglu,swiglu", "state"] == "FAIL"
    assert "worker group exited with code" in rows.loc["swiglu,swiglu", "failure_reason"]
    assert rows.loc["relu2,relu2", "state"] == "COMPLETE", "a fresh group took over after the crash"
    assert len(list((tmp_path / "tiny" / "logs").glob("group-*.log"))) == 2
    assert "trial 1 [swiglu,swiglu] FAILED: worker group exited" in out.stdout

    storage = f"sqlite:///{tmp_path / 'moesearch.db'}"
    study = optuna.load_study(study_name="tiny", storage=storage)
    for layers in ("gelu", "swiglu"):  # TPE ignores failed trials, so it proposes them again
        study.enqueue_trial({"layer_00": layers, "layer_01": layers})
    again = run_cli("search", "tiny", "--nproc", "2", "--trials", "5", "--results", str(tmp_path), "--no-progress")
    assert again.returncode == 0, again.stderr
    rows = records(tmp_path, "tiny")
    assert list(rows.groupby("assignment")["state"].agg(list).loc[["gelu,gelu", "swiglu,swiglu"]]) == [
        ["FAIL"],  # diverged: a seed's training would diverge again, so it is answered, not trained
        ["FAIL", "COMPLETE"],  # crashed: the machine may have been at fault, so it is trained again
    ]
    assert len(rows) == 5 and rows["assignment"].nunique() == 4, "an untried one trained in the diverged one's stead"
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    [repeat] = [t for t in trials if t.user_attrs.get("duplicate_of") == 0]  # of trial 0, gelu,gelu
    assert repeat.state == optuna.trial.TrialState.FAIL
    assert "failed with this seed in a way that repeats: not trained again" in repeat.user_attrs["failure_reason"]
    assert leftover_ranks(out.tag) == [] and leftover_ranks(again.tag) == []


@pytest.mark.slow
def test_a_hung_rank_times_out_and_the_trial_is_recorded(tmp_path):
    space = write_space(tmp_path, MICRO.replace("timeout_s = 300", "timeout_s = 20"))
    out = run_cli(
        "train",
        str(space),
        "--nproc",
        "2",
        "--layers",
        "gelu,swiglu",
        "--results",
        str(tmp_path / "r"),
        "--no-progress",
        env={"MOESEARCH_FAULT": "hang:gelu,swiglu"},
    )
    assert out.returncode == 1
    row = records(tmp_path / "r", "micro").iloc[0]
    assert row["state"] == "FAIL" and row["failure_reason"].startswith("timeout: trial still running after 20 s")
    assert leftover_ranks(out.tag) == [], "the hung rank and its peers are gone"


@pytest.mark.slow
def test_ctrl_c_stops_the_group_fails_the_trial_and_the_search_resumes(tmp_path):
    import signal
    import subprocess
    import time
    import uuid

    space = write_space(
        tmp_path, MICRO.replace("steps = 6", "steps = 100000").replace("warmup_steps = 1", "warmup_steps = 2")
    )
    tag = uuid.uuid4().hex
    proc = subprocess.Popen(
        cli_command(
            "search", str(space), "--nproc", "2", "--trials", "2", "--results", str(tmp_path / "r"), "--no-progress"
        ),
        env={**os.environ, TAG_ENV: tag},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    logs = tmp_path / "r" / "micro" / "logs"
    deadline = time.monotonic() + 300
    while not any("moesearch: trial 0" in p.read_text(errors="replace") for p in logs.glob("*.log")):
        assert time.monotonic() < deadline and proc.poll() is None, "the first trial never started"
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert (
        proc.returncode == 130 and b"interrupted; every finished trial is recorded, and the same command resumes" in err
    )
    assert leftover_ranks(tag) == []
    study = optuna.load_study(study_name="micro", storage=f"sqlite:///{tmp_path / 'r' / 'moesearch.db'}")
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs["budget"] is False
    assert not results.trials_dir(tmp_path / "r", "micro").exists() or not any(
        results.trials_dir(tmp_path / "r", "micro").iterdir()
    ), "an interrupted trial is no result"
    waiting = [optuna_compat.queued_params(t) for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    assert sorted(w["layer_00"] for w in waiting) == ["gelu", "swiglu"], "both baselines are still queued"


@pytest.mark.slow
def test_the_baselines_get_their_seed_replicates_once_and_the_front_states_the_noise(tmp_path):
    space = write_space(
        tmp_path, MICRO.replace("[search]\n", "[search]\nbaseline_seeds = 1\neffect_size = { val_loss = 0.03 }\n")
    )
    args = ["search", str(space), "--nproc", "2", "--trials", "3", "--results", str(tmp_path / "r"), "--no-progress"]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    trained = records(tmp_path / "r", "micro")
    replicates = trained[trained["origin"] == "verify"]
    assert (trained["origin"] == "search").sum() == 3, "replicates are outside --trials"
    assert sorted(replicates["assignment"]) == ["gelu,gelu", "swiglu,swiglu"] and set(replicates["seed"]) == {1}
    assert set(trained["effect_size"].astype(str)) == {'{"val_loss": 0.03}'}, "every record, replicates too"
    assert "2 seed replicates trained: of the baselines for the seed noise" in out.stdout
    assert "seed noise: val_loss sd" in out.stdout and "every figure in this table is one training" not in out.stdout
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "0 trials trained now" in again.stdout and "seed replicates" not in again.stdout
    assert len(records(tmp_path / "r", "micro")) == 5, "resuming trains no replicate twice"


@pytest.mark.slow
def test_a_three_objective_deploy_search_on_a_tiny_space(tmp_path):
    """The deploy space's objectives (val_loss, quant_gap_int8, FLOPs) on the micro model, two ranks."""
    body = MICRO.replace("d_ff = 96", 'd_ff = 96\nwidth_policy = "width"').replace(
        "[search]\n",
        '[search]\nobjectives = { val_loss = "minimize", quant_gap_int8 = "minimize", '
        'train_flops_per_token = "minimize" }\n',
    )
    out = run_cli(
        "search",
        str(write_space(tmp_path, body)),
        "--nproc",
        "2",
        "--trials",
        "4",
        "--results",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    rows = records(tmp_path / "r", "micro")
    assert (rows["state"] == "COMPLETE").all() and rows["quant_gap_int8"].notna().all()
    assert (rows["quant_gap_int8"] == rows["val_loss_int8"] - rows["val_loss"]).all()
    assert "quant_gap_int8 [nats/token] (min)" in out.stdout and "quant_gap_int8 = 1" in out.stdout, (
        "the front table and the natural reference point of the gap"
    )
    plotted = run_cli("plot", "--results", str(tmp_path / "r"), "--study", "micro", "--out", str(tmp_path / "png"))
    assert plotted.returncode == 0 and (tmp_path / "png" / "quantization.png").exists(), plotted.stderr


@pytest.mark.slow
def test_a_budget_alone_bounds_the_search_not_the_space_s_trial_count(tmp_path):
    space = write_space(tmp_path, MICRO.replace("[search]\n", "[search]\ntrials = 2\n"))  # steps = 6 per trial
    out = run_cli(
        "search",
        str(space),
        "--nproc",
        "1",
        "--budget",
        "18",
        "--results",
        str(tmp_path / "r"),
        "--no-progress",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "18 steps, or every one of the space's 4 assignments" in out.stdout
    assert "the compute budget is spent: 18 of 18 steps trained" in out.stdout
    assert len(records(tmp_path / "r", "micro")) == 3, "three trials of 6 steps: more than the space's trials = 2"
