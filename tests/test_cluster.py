"""Many worker groups on one study, groups across nodes, and faults: the real CLI in subprocesses.

In every case: the search completes when restarted, no trial stays RUNNING, every trained trial has
exactly one Parquet record, and every file is readable.
"""

from __future__ import annotations

import os
import signal
import time

import optuna
import psutil
import pytest
from conftest import (
    BACKENDS,
    LONG_MICRO,
    SPACES,
    free_port,
    leftover_ranks,
    run_cli,
    start_cli,
    storage_url,
    unique_study,
    wait_for_training,
    write_space,
)
from optuna.trial import TrialState

from moesearch.core import results
from moesearch.supervisor import accounting
from moesearch.supervisor import storage as storage_mod

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # several groups on 2 cores: no thread oversubscription


def check_study(folder, storage: str, name: str, trained: int) -> tuple[optuna.Study, object]:
    """The invariants every test ends on; returns the study and its records."""
    study = optuna.load_study(study_name=name, storage=storage_mod.open_storage(storage))
    assert study.get_trials(states=(TrialState.RUNNING,)) == [], "no trial stays RUNNING"
    counted = accounting.trained(study)
    assert len(counted) == trained, "exactly --trials trained trials"
    rows = results.load_trials(folder, name)  # every file readable
    results_told = {
        t.number
        for t in accounting.trained(study, budget_only=False)
        if t.state == TrialState.COMPLETE or t.user_attrs.get("budget", True)
    }
    preempted = set(rows.loc[rows["state"] == "PREEMPTED", "trial"])
    assert set(rows["trial"]) == results_told | preempted, "a record for every result Optuna holds, and no other"
    return study, rows


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.slow
def test_two_groups_share_one_study_and_stop_at_exactly_the_target(tmp_path, backend):
    storage, name, out = storage_url(backend, tmp_path), unique_study("shared"), tmp_path / "r"
    common = ["--storage", storage, "--results", str(out), "--no-progress", "--nproc", "1"]
    first = run_cli("search", "tiny", "--study", name, "--trials", "2", *common, env=ONE_THREAD)
    assert first.returncode == 0, first.stderr
    groups = [start_cli("worker", "--study", name, "--trials", "6", *common, env=ONE_THREAD) for _ in range(2)]
    outputs = [g.communicate(timeout=600) for g in groups]
    for g, (stdout, stderr) in zip(groups, outputs, strict=True):
        assert g.returncode == 0, stderr
        assert "joins, 6 trials" in stdout
    study, rows = check_study(out, storage, name, trained=6)
    good = rows[rows["state"] == "COMPLETE"]
    assert good["assignment"].is_unique, "no assignment trained twice with one seed"
    status = run_cli("status", "--storage", storage, "--study", name)
    assert status.returncode == 0, status.stderr
    assert "trials: 6 of 6 trained (6 complete, 0 pruned, 0 failed), 0 running" in status.stdout
    if backend == "postgresql":  # the password never leaves the URL the user typed
        assert run_cli("report", "--results", str(out), "--study", name).returncode == 0
        secret = storage.split(":")[2].split("@")[0]
        assert secret not in status.stdout + "".join(o for pair in outputs for o in pair)
        for path in out.rglob("*"):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_four_groups_write_one_study_and_one_results_folder_at_once(tmp_path):
    storage, out = f"journal:{tmp_path / 'study.log'}", tmp_path / "r"
    common = ["--storage", storage, "--no-progress", "--nproc", "1"]
    assert run_cli("search", "tiny", "--trials", "1", "--results", str(out), *common, env=ONE_THREAD).returncode == 0
    # no --results: a worker writes where the study's search did
    groups = [start_cli("worker", "--study", "tiny", "--trials", "8", *common, env=ONE_THREAD) for _ in range(4)]
    for g in groups:
        _, err = g.communicate(timeout=600)
        assert g.returncode == 0, err
    lower = run_cli("worker", "--study", "tiny", "--trials", "2", *common)
    assert lower.returncode == 0 and "below the study's target 8, which stays" in lower.stdout, lower.stderr
    _, rows = check_study(out, storage, "tiny", trained=8)
    assert rows["assignment"].is_unique
    for table in results.TABLES:  # one file per trained trial in every table, nothing half-written
        assert len(list(results.table_dir(out, "tiny", table).glob("trial-*.parquet"))) == 8
    assert not any((out / "tiny" / ".tmp").iterdir())


@pytest.mark.slow
def test_a_rank_killed_mid_trial_fails_that_trial_and_a_fresh_group_goes_on(tmp_path):
    space = write_space(tmp_path, LONG_MICRO)
    proc = start_cli(
        "search", str(space), "--nproc", "2", "--trials", "2", "--results", str(tmp_path / "r"), "--no-progress"
    )
    wait_for_training(tmp_path / "r" / "micro" / "logs", 0, proc)
    os.kill(max(leftover_ranks(proc.tag)), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    _, rows = check_study(tmp_path / "r", f"sqlite:///{tmp_path / 'r' / 'moesearch.db'}", "micro", trained=2)
    assert list(rows["state"]) == ["FAIL", "COMPLETE"]
    assert "worker group exited with code" in rows["failure_reason"][0]
    assert leftover_ranks(proc.tag) == []


@pytest.mark.slow
def test_the_supervisor_killed_then_the_same_command_again_completes_the_search(tmp_path):
    space = write_space(tmp_path, LONG_MICRO)
    command = ["search", str(space), "--nproc", "2", "--trials", "2", "--results", str(tmp_path / "r"), "--no-progress"]
    proc = start_cli(*command)
    wait_for_training(tmp_path / "r" / "micro" / "logs", 0, proc)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 120
    while leftover_ranks(proc.tag):  # rank 0 loses its link and the group goes down by itself
        assert time.monotonic() < deadline, "ranks outlived their supervisor"
        time.sleep(0.5)
    storage = f"sqlite:///{tmp_path / 'r' / 'moesearch.db'}"
    assert optuna.load_study(study_name="micro", storage=storage).trials[0].state == TrialState.RUNNING

    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    assert "trial 0: lost: its supervisor" in again.stdout and "queued again" in again.stdout
    study, rows = check_study(tmp_path / "r", storage, "micro", trained=2)
    lost = study.trials[0]
    assert lost.state == TrialState.FAIL and lost.user_attrs["budget"] is False
    assert 0 not in set(rows["trial"]), "it had no record"
    assert "gelu,gelu" in set(rows["assignment"]), "the lost baseline was trained again"


@pytest.mark.parametrize(
    "sig, target", [(signal.SIGUSR1, "supervisor"), (signal.SIGTERM, "every process"), (signal.SIGUSR1, "one rank")]
)
@pytest.mark.slow
def test_preemption_stops_at_a_step_records_the_trial_exits_0_and_the_search_resumes(tmp_path, sig, target):
    space = write_space(tmp_path, LONG_MICRO)
    command = ["search", str(space), "--nproc", "2", "--trials", "2", "--results", str(tmp_path / "r"), "--no-progress"]
    proc = start_cli(*command)
    wait_for_training(tmp_path / "r" / "micro" / "logs", 0, proc)
    tree = {
        "supervisor": [psutil.Process(proc.pid)],  # SLURM's --signal=B: forwarded by the batch script
        "every process": [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)],
        "one rank": [psutil.Process(max(leftover_ranks(proc.tag)))],
    }[target]  # `moesearch node` forwards so
    for p in tree:
        p.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "preempted by " + (f"{sig.name};" if target != "one rank" else "a signal to the ranks") in stdout
    assert leftover_ranks(proc.tag) == []
    row = results.load_trials(tmp_path / "r", "micro").iloc[0]
    caught_by = "a signal to another rank" if target == "one rank" else sig.name  # rank 0 writes the reason
    assert row["state"] == "PREEMPTED" and row["failure_reason"].startswith(f"preempted: {caught_by} at step ")
    storage = f"sqlite:///{tmp_path / 'r' / 'moesearch.db'}"
    first = optuna.load_study(study_name="micro", storage=storage).trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs["budget"] is False

    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    _, rows = check_study(tmp_path / "r", storage, "micro", trained=2)
    assert list(rows["state"]) == ["PREEMPTED", "COMPLETE", "COMPLETE"]
    assert rows["assignment"][0] in set(rows["assignment"][1:]), "the preempted trial was trained again"


def trial_timeout(space_file) -> list[str]:
    """What a `moesearch node` is given so that its ranks' collective timeout agrees with node 0's."""
    from moesearch.core import space as space_mod

    return ["--trial-timeout", str(space_mod.load(str(space_file)).search.timeout_s)]


@pytest.mark.slow
def test_two_nodes_on_loopback_form_one_group_with_experts_across_both(tmp_path):
    """The default ep_size stays inside a node (1 here); a space that asks for 2 spans both nodes."""
    port = str(free_port())
    group = ["--nproc", "1", "--nnodes", "2", "--master-port", port]
    spanning = (SPACES / "tiny.toml").read_text().replace("[search]\n", "[search]\nep_size = 2\n")
    space = write_space(tmp_path, spanning, "tiny.toml")
    node = start_cli("node", "--node-rank", "1", *group, *trial_timeout(space), env=ONE_THREAD)
    out = run_cli(
        "search", str(space), *group, "--trials", "3", "--results", str(tmp_path), "--no-progress", env=ONE_THREAD
    )
    node_out, node_err = node.communicate(timeout=120)
    print(out.stdout, node_out, sep="\n")  # the closing note quotes this run
    assert out.returncode == 0, out.stderr
    assert node.returncode == 0, node_err
    assert "1 ranks x 2 nodes" in out.stdout
    rows = results.load_trials(tmp_path, "tiny")
    assert len(rows) == 3 and (rows["state"] == "COMPLETE").all()
    assert (rows["world_size"] == 2).all() and (rows["ep_size"] == 2).all(), "expert parallelism spans both nodes"


@pytest.mark.slow
def test_a_node_whose_node_0_never_comes_gives_up(tmp_path):
    out = run_cli(
        "node",
        "--node-rank",
        "1",
        "--nnodes",
        "2",
        "--nproc",
        "1",
        "--master-port",
        str(free_port()),
        "--join-timeout",
        "3",
        timeout=120,
    )
    assert out.returncode == 1
    assert "no group formed twice in a row" in out.stderr and out.stderr.count("rejoining (1 of 100)") == 1


@pytest.mark.parametrize("rejoins", [0, 2])
def test_a_node_rejoins_as_often_as_it_may_and_says_so_truly(monkeypatch, rejoins):
    """Each ended group is rejoined while --rejoins allows; the last says none is left (not "1 of 0")."""
    from moesearch.core.launch import Launch
    from moesearch.supervisor import group_node

    class Ended:
        returncode, pid = 1, 1

    monkeypatch.setattr(group_node.subprocess, "Popen", lambda *args, **kwargs: Ended())
    monkeypatch.setattr(group_node, "_ranks_started", lambda proc: True)  # each formed a group that then ended
    said = []
    assert group_node.run(Launch(1, nnodes=2), 1, rejoins, say=said.append) == 1
    assert said == [f"the group ended with code 1; rejoining ({k} of {rejoins})" for k in range(1, rejoins + 1)] + [
        f"the group ended with code 1; no rejoin left (--rejoins {rejoins})"
    ]


@pytest.mark.slow
def test_a_signal_to_another_node_preempts_the_whole_group(tmp_path):
    """SLURM signals every node; `moesearch node` forwards to its ranks, and the vote reaches node 0."""
    space = write_space(tmp_path, LONG_MICRO)
    group = ["--nproc", "1", "--nnodes", "2", "--master-port", str(free_port())]
    node = start_cli("node", "--node-rank", "1", *group, *trial_timeout(space), env=ONE_THREAD)
    proc = start_cli(
        "search", str(space), *group, "--trials", "2", "--results", str(tmp_path / "r"), "--no-progress", env=ONE_THREAD
    )
    wait_for_training(tmp_path / "r" / "micro" / "logs", 0, proc)
    node.send_signal(signal.SIGUSR1)
    _, node_err = node.communicate(timeout=120)
    stdout, stderr = proc.communicate(timeout=120)
    assert node.returncode == 0, node_err
    assert proc.returncode == 0 and "preempted by a signal to the ranks" in stdout, stderr
    row = results.load_trials(tmp_path / "r", "micro").iloc[0]
    assert row["state"] == "PREEMPTED" and "at step" in row["failure_reason"]
    assert leftover_ranks(proc.tag) == [] and leftover_ranks(node.tag) == []


@pytest.mark.slow
def test_the_deepspeed_launcher_runs_a_group(tmp_path):
    out = run_cli(
        "search",
        "tiny",
        "--launcher",
        "deepspeed",
        "--nproc",
        "2",
        "--master-port",
        str(free_port()),
        "--trials",
        "2",
        "--results",
        str(tmp_path),
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    rows = results.load_trials(tmp_path, "tiny")
    assert (rows["state"] == "COMPLETE").all() and (rows["world_size"] == 2).all()


def test_the_deepspeed_launcher_is_this_interpreter_s_and_is_stopped_with_sigterm_first(tmp_path, monkeypatch):
    """A bare `deepspeed` on PATH may be another environment's; and DeepSpeed's runner stops its ranks on
    other hosts only on SIGINT/SIGTERM, so `kill` terminates it first and SIGKILLs what is left after."""
    import subprocess
    import sys

    from moesearch.core.launch import Launch
    from moesearch.supervisor import group as group_mod

    command = Launch(2, launcher="deepspeed", master_port=29555).command()
    assert command[:3] == [sys.executable, "-m", "deepspeed.launcher.runner"]
    assert Launch(2).command()[0] != "deepspeed"
    seen = tmp_path / "signal"
    runner = subprocess.Popen(  # a stand-in launcher that notes the signal it gets, then exits as the runner does
        [
            sys.executable,
            "-c",
            "import pathlib, signal, sys, time\n"
            f"note = lambda s, f: (pathlib.Path({str(seen)!r}).write_text(str(s)), sys.exit(0))\n"
            "signal.signal(signal.SIGTERM, note)\n"
            "time.sleep(60)",
        ]
    )
    time.sleep(1)
    group = group_mod.WorkerGroup(Launch(2, launcher="deepspeed"), tmp_path)
    group.proc = runner
    group.kill()
    assert seen.read_text() == str(int(signal.SIGTERM)) and runner.returncode == 0


@pytest.mark.slow
def test_ranks_that_would_give_up_a_collective_at_different_times_stop_the_group_saying_what_to_give(tmp_path):
    """Two gloo ranks as two nodes whose `moesearch node` was given different --trial-timeout: the group stops
    at its start, naming node 0's value, rather than losing a node mid-search."""
    import subprocess
    import sys

    from moesearch.core.launch import COLLECTIVE_TIMEOUT_ENV

    script = tmp_path / "rank.py"
    script.write_text(
        "import os\n"
        f"os.environ[{COLLECTIVE_TIMEOUT_ENV!r}] = '2100' if os.environ['RANK'] == '0' else '600'\n"
        "from moesearch.ranks import serve\n"
        "serve.init_rank()\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode != 0
    said = run.stdout + run.stderr
    assert "give every `moesearch node` --trial-timeout 1800, the search.timeout_s node 0 trains with" in said
    assert "(600 s, 2100 s)" in said
