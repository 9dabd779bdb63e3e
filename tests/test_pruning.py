"""Early stopping in the live search: the real CLI, two gloo ranks, real DeepSpeed and Optuna.

The deliberately poor trials are stalled (`MOESEARCH_FAULT=stall:...`: the loss carries no gradient,
so the model does not learn while it trains normally otherwise): pruning must stop them at a rung.
"""

from __future__ import annotations

import itertools
import re
import signal

import optuna
import psutil
import pytest
from conftest import MICRO, leftover_ranks, run_cli, start_cli, wait_for_training, write_space
from optuna.trial import TrialState
from test_cluster import ONE_THREAD, check_study

from moesearch.core import results
from moesearch.core.metrics import AT_RUNG
from moesearch.core.sections import PruningSpec
from moesearch.replay import arms
from moesearch.replay import table as tables

# 2 layers x {gelu, swiglu, relu}: three baselines, six mixed assignments; val_loss at 10, 20 and 30.
# Objectives val_loss and FLOPs: all-gelu and all-relu are the cheapest, so a stalled mixed trial is
# dominated at the first rung by at least one baseline, and ranks outside the best half (eta 2).
PRUNING = (
    MICRO.replace('activations = ["gelu", "swiglu"]', 'activations = ["gelu", "swiglu", "relu"]')
    .replace("d_ff = 96", 'd_ff = 96\nwidth_policy = "width"')
    .replace("steps = 6", "steps = 30\neval_interval = 10")
    .replace(
        "[search]\n",
        '[search]\nsampler = "brute"\nobjectives = { val_loss = "minimize", train_flops_per_token = "minimize" }\n',
    )
    + '[search.pruning]\nmethod = "mo-asha"\nrungs = [10, 20]\neta = 2\nmin_records = 3\n'
)
PRUNING_SPEC = PruningSpec(method="mo-asha", rungs=[10, 20], eta=2, min_records=3)
BASELINES = {"gelu,gelu", "swiglu,swiglu", "relu,relu"}
MIXED = [",".join(p) for p in itertools.product(["gelu", "swiglu", "relu"], repeat=2) if len(set(p)) == 2]
STALL_MIXED = {"MOESEARCH_FAULT": ";".join(f"stall:{a}" for a in MIXED)}


@pytest.mark.slow
def test_a_poor_trial_is_pruned_at_the_first_rung_with_its_steps_and_never_trained_again(tmp_path):
    space, out = write_space(tmp_path, PRUNING), tmp_path / "r"
    command = ["search", str(space), "--nproc", "2", "--results", str(out), "--no-progress"]
    first = run_cli(*command, "--trials", "4", env=STALL_MIXED)
    assert first.returncode == 0, first.stderr
    rows = results.load_trials(out, "micro")
    assert list(rows["state"]) == ["COMPLETE"] * 3 + ["PRUNED"] and set(rows["assignment"][:3]) == BASELINES
    poor = rows.iloc[3]
    assert re.match(r"pruned at rung 10: place [34] of 4 records there, outside the best 2", poor["failure_reason"])
    assert poor["val_loss"] > rows["val_loss"][:3].max(), "its metrics are those at the rung"
    assert poor[sorted(AT_RUNG)].notna().all(), "a rung measures every metric the space's validation allows there"
    steps = results.load_steps(out, "micro")
    assert steps.groupby("trial")["step"].max().tolist() == [30, 30, 30, 10], "its steps rows are kept"
    assert f"trial 3 [{poor['assignment']}] PRUNED: pruned at rung 10" in first.stdout
    assert "1 of them pruned at a rung" in first.stdout and "compute: 100 steps" in first.stdout

    storage = f"sqlite:///{out / 'moesearch.db'}"
    study = optuna.load_study(study_name="micro", storage=storage)
    assert study.trials[3].state == TrialState.PRUNED, "Optuna knows it pruned: the sampler learns from it"
    assert set(study.trials[3].user_attrs["rungs"]) == {"10"} and set(study.trials[0].user_attrs["rungs"]) == {
        "10",
        "20",
    }
    status = run_cli("status", "--storage", storage, "--study", "micro")
    assert "(3 complete, 1 pruned, 0 failed)" in status.stdout and "pruned per rung: 1 at step 10" in status.stdout
    pareto = run_cli("pareto", "--results", str(out), "--study", "micro")
    assert "pruned: 1 of 4 trials (1 at step 10); 100 steps trained, 17% fewer" in pareto.stdout

    study.enqueue_trial({"layer_00": poor["layer_00"], "layer_01": poor["layer_01"]})  # proposed again
    again = run_cli(*command, "--trials", "9", "--budget", "110", env=STALL_MIXED)
    assert again.returncode == 0, again.stderr
    assert "(1 repeated proposal answered from the study)" in again.stdout
    assert "the compute budget is spent: 110 of 110 steps trained" in again.stdout
    rows = results.load_trials(out, "micro")
    assert len(rows) == 5 and rows["assignment"].is_unique, "the pruned assignment was not trained again"
    repeat = optuna.load_study(study_name="micro", storage=storage).trials[4]
    assert repeat.state == TrialState.PRUNED and repeat.user_attrs["duplicate_of"] == 3
    assert rows.iloc[4]["state"] == "PRUNED", "the budget's last trial was another stalled one"


@pytest.mark.slow
def test_two_groups_prune_against_each_other_s_records_as_the_replay_does_on_the_same_table(tmp_path):
    space, out = write_space(tmp_path, PRUNING), tmp_path / "r"
    storage = f"journal:{tmp_path / 'study.log'}"
    common = ["--storage", storage, "--results", str(out), "--no-progress", "--nproc", "1"]
    first = run_cli("search", str(space), "--trials", "3", *common, env=ONE_THREAD)
    assert first.returncode == 0, first.stderr
    groups = [
        start_cli("worker", "--study", "micro", "--trials", "9", *common, env={**ONE_THREAD, **STALL_MIXED})
        for _ in range(2)
    ]
    for g in groups:
        _, stderr = g.communicate(timeout=600)
        assert g.returncode == 0, stderr
    study, rows = check_study(out, storage, "micro", trained=9)
    assert rows["assignment"].is_unique, "no trial decided twice"
    assert set(rows.loc[rows["state"] == "PRUNED", "assignment"]) == set(MIXED), "every stalled trial stopped"
    workers = {t.number: t.user_attrs["worker"] for t in study.trials}
    counted_others = []
    for t in study.trials:
        if t.state == TrialState.PRUNED and t.number in set(rows["trial"]):
            seen = int(re.search(r"of (\d+) records", t.user_attrs["failure_reason"]).group(1))
            own = sum(1 for n, w in workers.items() if w == workers[t.number] and n <= t.number)
            counted_others.append(seen > own)
    assert any(counted_others), "a group's verdicts count the other group's records"
    replay_on_the_same_table(tmp_path, study)


def replay_on_the_same_table(tmp_path, study: optuna.Study) -> None:
    """The two groups' verdicts, replayed: the same space trained exhaustively without pruning (training
    is deterministic: the same seed gives the same curves) is a replay table, and at every rung of every
    live trial the replay's rung walk (`replay.arms._rungs`), given the records that verdict saw
    (`rung_peers`), stops the trial where the live search did."""
    space = write_space(tmp_path, PRUNING.split("[search.pruning]")[0], name="exhaustive.toml")
    out = tmp_path / "table"
    made = run_cli(
        "search",
        str(space),
        "--trials",
        "9",
        "--results",
        str(out),
        "--no-progress",
        "--nproc",
        "1",
        env={**ONE_THREAD, **STALL_MIXED},
    )
    assert made.returncode == 0, made.stderr
    table = tables.load_table(results.load_trials(out, "micro"), "t", results.load_steps(out, "micro"))
    directions = list(table.objectives)
    live_trials = [t for t in study.trials if t.user_attrs.get("origin") == "search" and "rung_peers" in t.user_attrs]
    assert len(live_trials) >= 6, "every mixed trial was ranked at a rung"
    for t in live_trials:
        assignment = t.user_attrs["assignment"]
        training = table.trainings[assignment][0]
        for step, values in t.user_attrs["rungs"].items():
            mine = [values[o] for o in directions]
            assert mine == pytest.approx(training.at_step[int(step)], rel=1e-6), "the live curve is the table's"
        seen = {
            int(step): [table.trainings[study.trials[n].user_attrs["assignment"]][0].at_step[int(step)] for n in peers]
            for step, peers in t.user_attrs["rung_peers"].items()
        }
        stopped = int(max(t.user_attrs["rungs"], key=int)) if t.state == TrialState.PRUNED else None
        assert arms._rungs(table, PRUNING_SPEC, training, seen, may_stop=True) == stopped, t.number


@pytest.mark.slow
def test_a_preempted_search_with_pruning_resumes_and_decides_every_trial_once(tmp_path):
    long = PRUNING.replace("steps = 30\neval_interval = 10", "steps = 150\neval_interval = 50").replace(
        "rungs = [10, 20]", "rungs = [50]"
    )
    space, out = write_space(tmp_path, long), tmp_path / "r"
    command = ["search", str(space), "--nproc", "2", "--trials", "4", "--results", str(out), "--no-progress"]
    proc = start_cli(*command, env=STALL_MIXED)
    wait_for_training(out / "micro" / "logs", 1, proc)
    proc.send_signal(signal.SIGUSR1)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "preempted by SIGUSR1" in stdout, stderr
    assert leftover_ranks(proc.tag) == [] and psutil.pid_exists(proc.pid) is False
    again = run_cli(*command, env=STALL_MIXED)
    assert again.returncode == 0, again.stderr
    study, rows = check_study(out, f"sqlite:///{out / 'moesearch.db'}", "micro", trained=4)
    decided = rows[rows["state"] != "PREEMPTED"]
    assert decided["assignment"].is_unique and set(decided["assignment"][:3]) == BASELINES
    assert list(decided["state"]) == ["COMPLETE"] * 3 + ["PRUNED"]
    assert rows.loc[rows["state"] == "PREEMPTED", "assignment"].isin(set(decided["assignment"])).all(), (
        "the preempted trial was trained again"
    )
