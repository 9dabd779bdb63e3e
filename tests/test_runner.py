"""One trial start to record (supervisor/runner.py), with a stand-in worker group: what it prints."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import MICRO, local_settings, write_space

from moesearch.core import space
from moesearch.core.launch import Launch
from moesearch.core.protocol import Done
from moesearch.supervisor import runner
from moesearch.supervisor.group import WorkerGroup
from moesearch.supervisor.settings import Settings


class Replies(WorkerGroup):
    """Answers every trial with `reply` after `steps` steps: (step, train_loss, val_loss or None)."""

    def __init__(self, log_dir, reply, steps=()):
        super().__init__(Launch(1), log_dir)
        self.reply, self.steps = reply, steps

    def run(self, trial, config_json, timeout_s, on_step, on_rung=None):
        for step in self.steps:
            on_step(*step)
        return self.reply


def settings(tmp_path, progress=False) -> Settings:
    return local_settings(space.load(write_space(tmp_path, MICRO)), tmp_path, progress=progress)


def test_experts_left_unquantized_are_recorded_and_warned_about(tmp_path, capsys):
    metrics = {"val_loss": 2.0, "tokens_per_s": 10.0, "quant_gap_int8": 0.001, "quant_uncalibrated_experts": 3}
    outcome = runner.run_trial(
        settings(tmp_path),
        Replies(tmp_path, Done(metrics, [], [])),
        7,
        ["gelu", "swiglu"],
        origin="train",
        replicate_of=None,
        reference={},
    )
    assert outcome.row["quant_uncalibrated_experts"] == 3
    err = capsys.readouterr().err
    assert "warning: trial 7: 3 expert(s) saw no calibration token" in err
    calibrated = runner.run_trial(
        settings(tmp_path),
        Replies(tmp_path, Done({**metrics, "quant_uncalibrated_experts": 0}, [], [])),
        8,
        ["gelu", "swiglu"],
        origin="train",
        replicate_of=None,
        reference={},
    )
    assert calibrated.row["quant_uncalibrated_experts"] == 0 and "warning" not in capsys.readouterr().err


def trial_with_steps(tmp_path, body: str, steps) -> None:
    settings = dataclasses.replace(
        local_settings(space.load(write_space(tmp_path, body)), tmp_path, progress=True), seed=3
    )
    done = Done({"val_loss": 2.0, "tokens_per_s": 10.0}, [], [])
    runner.run_trial(
        settings,
        Replies(tmp_path, done, steps),
        5,
        ["gelu", "swiglu"],
        origin="search",
        replicate_of=None,
        reference={},
    )


def test_without_a_terminal_a_line_per_trial_start_and_per_evaluation(tmp_path, capsys):
    body = MICRO.replace("steps = 6", "steps = 6\neval_interval = 2")
    steps = [(s, 3.0 - s / 10, 2.9 - s / 10 if s % 2 == 0 and s < 6 else None) for s in range(1, 7)]
    trial_with_steps(tmp_path, body, steps)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial 5")]
    assert lines == [
        "trial 5 [gelu,swiglu] started: 6 steps, seed 3",
        "trial 5: step 2/6, train_loss 2.8000, val_loss 2.7000",
        "trial 5: step 4/6, train_loss 2.6000, val_loss 2.5000",
    ]


def test_without_evaluations_a_line_per_quarter_and_none_on_a_terminal(tmp_path, capsys, monkeypatch):
    body = MICRO.replace("steps = 6", "steps = 8")
    steps = [(s, 3.0, None) for s in range(1, 9)]
    trial_with_steps(tmp_path, body, steps)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial 5")]
    assert [line.split(",")[0] for line in lines[1:]] == ["trial 5: step 2/8", "trial 5: step 4/8", "trial 5: step 6/8"]
    monkeypatch.setattr(runner.sys.stderr, "isatty", lambda: True)  # a terminal: the bar shows progress
    trial_with_steps(tmp_path, body, steps)
    assert not [line for line in capsys.readouterr().err.splitlines() if "started" in line or "train_loss" in line]


def test_a_group_idle_past_its_ranks_broadcast_timeout_is_restarted_before_the_next_trial(tmp_path, monkeypatch):
    """The ranks wait for a trial in a broadcast under the collective timeout (the trial's plus a margin): a
    group idle for 3/4 of it is closed and started afresh before it is sent one, outside any trial; one that
    is not is used as it is."""
    from moesearch.core import launch
    from moesearch.core.launch import Launch
    from moesearch.core.protocol import Done
    from moesearch.supervisor import group as group_mod

    group = group_mod.WorkerGroup(Launch(1), tmp_path)
    calls = []

    class Link:  # the rank 0 side: answers every task at once
        def send(self, msg):
            calls.append(type(msg).__name__)

        def poll(self, timeout=None):
            return True

        def recv(self):
            return Done({}, [], [])

        def close(self):
            pass

    def start(timeout_s):
        calls.append("start")
        group.link, group.idle_since = Link(), group_mod.time.monotonic()
        group.idle_restart_s = group_mod.IDLE_RESTART_SHARE * (timeout_s + launch.COLLECTIVE_MARGIN_S)
        (tmp_path / f"group-{group_mod.os.getpid()}-0.log").touch()

    monkeypatch.setattr(group, "_start", start)
    monkeypatch.setattr(group, "close", lambda: (calls.append("close"), setattr(group, "link", None)))
    group.run(0, "{}", 60, lambda *a: None)
    group.run(1, "{}", 60, lambda *a: None)
    assert calls == ["start", "Task", "Task"], "used as it is while fresh"
    group.idle_since -= 0.75 * (60 + launch.COLLECTIVE_MARGIN_S) + 1  # 3/4 of the ranks' collective timeout
    group.run(2, "{}", 60, lambda *a: None)
    assert calls[3:] == ["close", "start", "Task"]


def test_every_rank_gives_up_a_collective_that_outlasts_the_trial(monkeypatch):
    """NCCL's async error handling and the process group's timeout at the trial's plus a margin, for the ranks
    node 0 starts and those `moesearch node` starts: ranks whose peer died free their GPUs instead of hanging."""
    from moesearch.core import launch
    from moesearch.ranks import serve

    env = launch.rank_env(1800)
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "3"
    monkeypatch.setenv(launch.COLLECTIVE_TIMEOUT_ENV, env[launch.COLLECTIVE_TIMEOUT_ENV])
    assert serve.collective_timeout().total_seconds() == 1800 + launch.COLLECTIVE_MARGIN_S
    monkeypatch.delenv(launch.COLLECTIVE_TIMEOUT_ENV)
    assert serve.collective_timeout().total_seconds() == 7200, "ranks started by hand: 2 h"


@pytest.mark.parametrize("nnodes, fails, started", [(1, 1, True), (1, 9, False), (2, 9, True)])
def test_a_group_that_fails_to_start_is_started_again_while_the_failure_may_pass(
    tmp_path, monkeypatch, capsys, nnodes, fails, started
):
    """One node: a few tries within START_RETRY_WINDOW_S, then the search ends (a broken environment). Across
    nodes: for as long as the last group's ranks elsewhere may hold on (the trial's timeout, the margin and a
    join), so nine failed starts in a row are still waited out."""
    from moesearch.core.launch import Launch
    from moesearch.supervisor import group as group_mod

    clock = [0.0]
    monkeypatch.setattr(group_mod.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(group_mod.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    group = group_mod.WorkerGroup(Launch(1, nnodes=nnodes), tmp_path)
    tries = []

    def start(timeout_s):
        tries.append(clock[0])
        clock[0] += 5  # a launcher that exits at once
        if len(tries) <= fails:
            raise group_mod.GroupStartFailure(f"worker group failed to start (exit code 1, log: x)\ntail {len(tries)}")

    monkeypatch.setattr(group, "_start", start)
    if started:
        group._start_retrying(600)
        assert len(tries) == fails + 1
    else:
        with pytest.raises(group_mod.GroupStartFailure, match="tail"):
            group._start_retrying(600)
        assert 2 <= len(tries) <= 3 and clock[0] <= group_mod.START_RETRY_WINDOW_S + 10
    said = capsys.readouterr().err
    assert "worker group failed to start (exit code 1, log: x); trying again in 30 s" in said


def test_a_group_whose_nodes_disagree_on_the_timeout_is_not_started_again(tmp_path, monkeypatch):
    """The ranks' own refusal (`serve._check_timeouts_agree`) names the --trial-timeout to give: retrying
    for the multi-node window would only repeat it."""
    from moesearch.core.launch import TIMEOUTS_DISAGREE, Launch
    from moesearch.supervisor import group as group_mod

    group = group_mod.WorkerGroup(Launch(1, nnodes=2), tmp_path)
    tries = []

    def start(timeout_s):
        tries.append(timeout_s)
        raise group_mod.GroupStartFailure(f"worker group failed to start; output tail:\nthe ranks {TIMEOUTS_DISAGREE}")

    monkeypatch.setattr(group, "_start", start)
    monkeypatch.setattr(group_mod.time, "sleep", lambda s: pytest.fail("waited to try again"))
    with pytest.raises(group_mod.GroupStartFailure, match=TIMEOUTS_DISAGREE):
        group._start_retrying(600)
    assert tries == [600]
