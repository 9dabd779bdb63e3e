"""Liveness and recovery, on every storage backend: a dead group's trial is settled exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import optuna
import pandas as pd
import psutil
import pytest
from conftest import BACKENDS, MICRO, local_settings, storage_url, unique_study, write_space
from optuna.trial import TrialState

from moesearch.core import results, space
from moesearch.core.launch import Launch
from moesearch.core.trial import TrialAttr
from moesearch.supervisor import accounting, liveness, optuna_compat, recovery, studies, telling
from moesearch.supervisor import storage as storage_mod

TINY = space.load("tiny")
OBJECTIVES = TINY.search.objectives  # val_loss (min), tokens_per_s (max)


def dead_group() -> str:
    """The group id of a process of this machine that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    group = liveness.name(psutil.Process(proc.pid))
    proc.wait()
    return group


def running_trial(study: optuna.Study, layers: list[str], group: str) -> optuna.Trial:
    """A search trial of `layers` RUNNING in the worker group whose supervisor is `group`."""
    trial = telling.reserve(study, TINY, layers, seed=0, origin="search")
    trial.set_user_attr(TrialAttr.GROUP, group)
    return trial


def record(study: str, number: int, layers: list[str], state: str) -> results.Record:
    now = datetime.now(UTC)
    return results.make_record(
        study=study,
        trial=number,
        origin="search",
        layers=layers,
        state=state,
        failure_reason=None if state == "COMPLETE" else f"{state.lower()}: for the test",
        objectives=OBJECTIVES,
        reference_point={},
        metrics={"val_loss": 4.5, "tokens_per_s": 1000.0} if state == "COMPLETE" else {},
        steps=[],
        layer_rows=[],
        config_json="{}",
        seed=0,
        replicate_of=None,
        data_sha256="ab",
        hardware={},
        ep_size=1,
        random_streams="crn",
        started_at=now,
        finished_at=now,
    )


@pytest.fixture(params=BACKENDS)
def study(request, tmp_path) -> optuna.Study:
    storage = storage_mod.open_storage(storage_url(request.param, tmp_path))
    return studies.open_study(storage, unique_study("recovery"), TINY, seed=0)


def test_a_trial_recorded_but_not_told_is_told_from_its_record(study, tmp_path):
    """The supervisor died between writing the record and telling Optuna: the record is the result."""
    trial = running_trial(study, ["gelu", "gelu"], dead_group())
    results.write_trial(tmp_path, record(study.study_name, trial.number, ["gelu", "gelu"], "COMPLETE"))
    lines = recovery.recover(study, tmp_path)
    assert lines == [f"trial {trial.number}: told from its record (COMPLETE); its supervisor died before telling"]
    told = study.trials[trial.number]
    assert told.state == TrialState.COMPLETE and told.values == [4.5, 1000.0]
    assert accounting.snapshot(study, 0).done == 1, "it counts toward --trials"
    assert recovery.recover(study, tmp_path) == [], "settled once"


def test_a_recorded_failure_is_told_as_a_failure_that_counts(study, tmp_path):
    trial = running_trial(study, ["swiglu", "gelu"], dead_group())
    results.write_trial(tmp_path, record(study.study_name, trial.number, ["swiglu", "gelu"], "FAIL"))
    recovery.recover(study, tmp_path)
    told = study.trials[trial.number]
    assert told.state == TrialState.FAIL and told.user_attrs["failure_reason"] == "fail: for the test"
    assert accounting.snapshot(study, 0).done == 1


@pytest.mark.parametrize("state", [None, "PREEMPTED"])
def test_a_lost_or_preempted_trial_fails_outside_the_budget_and_is_queued_again(study, tmp_path, state):
    trial = running_trial(study, ["swiglu", "relu2"], dead_group())
    if state:
        results.write_trial(tmp_path, record(study.study_name, trial.number, ["swiglu", "relu2"], state))
    [line] = recovery.recover(study, tmp_path)
    assert line.endswith("; queued again") and ("lost: its supervisor" in line) == (state is None)
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["budget"] is False
    assert accounting.snapshot(study, 0).done == 0
    queued = [optuna_compat.queued_params(t) for t in study.get_trials(states=(TrialState.WAITING,))]
    assert queued.count({"layer_00": "swiglu", "layer_01": "relu2"}) == 1
    assert recovery.recover(study, tmp_path) == [], "queued once"


def test_a_truncated_record_is_kept_aside_and_its_trial_settled_as_lost(study, tmp_path):
    """A node lost mid-write (before records were fsynced) left half a trials file: recovery names it, moves
    it aside, settles the trial as lost and queues it again, and goes on to the next trial."""
    trial = running_trial(study, ["relu2", "gelu"], dead_group())
    path = results.write_trial(tmp_path, record(study.study_name, trial.number, ["relu2", "gelu"], "COMPLETE"))
    path.write_bytes(path.read_bytes()[:200])
    other = running_trial(study, ["gelu", "relu2"], dead_group())
    results.write_trial(tmp_path, record(study.study_name, other.number, ["gelu", "relu2"], "COMPLETE"))
    lines = recovery.recover(study, tmp_path)
    assert lines[0].startswith(f"trial {trial.number}: its record {path} could not be read (")
    assert f"kept aside as {path.name}.unreadable; lost: its supervisor" in lines[0]
    assert lines[0].endswith("; queued again")
    assert not path.exists() and path.with_name(path.name + ".unreadable").exists()
    assert study.trials[trial.number].state == TrialState.FAIL
    assert study.trials[other.number].state == TrialState.COMPLETE, "the next trial is settled too"


def test_a_second_settle_from_a_stale_view_is_refused_and_queues_nothing(study, tmp_path):
    """The losing side of a race, made deterministic: both saw the trial RUNNING, one settles it first."""
    trial = running_trial(study, ["relu2", "swiglu"], dead_group())
    stale = study.trials[trial.number]  # both saw it RUNNING
    first, second = (recovery._settle(study, tmp_path, stale) for _ in range(2))
    assert first is not None and second is None
    queued = [optuna_compat.queued_params(t) for t in study.get_trials(states=(TrialState.WAITING,))]
    assert queued.count({"layer_00": "relu2", "layer_01": "swiglu"}) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_recovering_at_once_settle_a_dead_trial_once(backend, tmp_path):
    """Two real processes run recovery on one study at the same instant: one settles, none queues twice."""
    url = storage_url(backend, tmp_path)
    name = unique_study("race")
    study = studies.open_study(storage_mod.open_storage(url), name, TINY, seed=0)
    trial = running_trial(study, ["relu2", "swiglu"], dead_group())
    start = time.time() + 5  # both are imported and connected by then
    code = (
        "import time, optuna; from moesearch.supervisor import recovery, storage; "
        f"study = optuna.load_study(study_name={name!r}, storage=storage.open_storage({url!r})); "
        f"time.sleep(max(0.0, {start} - time.time())); print(len(recovery.recover(study, {str(tmp_path)!r})))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    settled = [int(p.communicate(timeout=120)[0].split()[-1]) for p in procs]
    assert sorted(settled) == [0, 1], "exactly one process settled it"
    assert study.trials[trial.number].state == TrialState.FAIL
    queued = [optuna_compat.queued_params(t) for t in study.get_trials(states=(TrialState.WAITING,))]
    assert queued.count({"layer_00": "relu2", "layer_01": "swiglu"}) == 1


def test_a_dead_pid_in_another_pid_namespace_of_this_host_is_judged_by_its_heartbeat(study):
    """Containers sharing the host's name (host networking) each have their own pids."""
    host, pid, started, _ = dead_group().split(":")
    trial = running_trial(study, ["gelu", "relu2"], f"{host}:{pid}:{started}:other-boot-4026531836")
    trial.set_user_attr("heartbeat", time.time())
    assert not liveness.is_dead(study.trials[trial.number])
    assert liveness.is_dead(study.trials[trial.number], now=time.time() + liveness.GRACE_S + 1)


def test_live_trials_are_left_alone(study, tmp_path):
    mine = running_trial(study, ["gelu", "relu2"], liveness.me())
    other_host = running_trial(study, ["relu2", "gelu"], "elsewhere:1:1.00")
    other_host.set_user_attr("heartbeat", time.time())
    assert recovery.recover(study, tmp_path) == []
    states = [study.trials[t.number].state for t in (mine, other_host)]
    assert states == [TrialState.RUNNING, TrialState.RUNNING]


def test_another_machine_s_trial_is_dead_once_its_heartbeat_is_older_than_the_grace_period(study):
    trial = running_trial(study, ["gelu", "swiglu"], "elsewhere:1:1.00")
    beat = time.time()
    trial.set_user_attr("heartbeat", beat)
    frozen = study.trials[trial.number]
    assert not liveness.is_dead(frozen, now=beat + liveness.GRACE_S - 1)
    assert liveness.is_dead(frozen, now=beat + liveness.GRACE_S + 1)


def test_the_heartbeat_is_written_while_a_trial_runs(study, monkeypatch):
    monkeypatch.setattr(liveness, "HEARTBEAT_S", 0.05)
    trial = running_trial(study, ["gelu", "gelu"], liveness.me())
    with liveness.beating(study, trial.number):
        time.sleep(0.3)
        first = study.trials[trial.number].user_attrs["heartbeat"]
        time.sleep(0.3)
        assert study.trials[trial.number].user_attrs["heartbeat"] > first


def test_status_counts_trials_by_state_and_names_the_dead_group_s_trials(study, tmp_path):
    from moesearch.supervisor import status

    live = running_trial(study, ["gelu", "relu2"], liveness.me())
    dead = running_trial(study, ["relu2", "gelu"], dead_group())
    done = running_trial(study, ["swiglu", "gelu"], liveness.me())
    accounting.set_compute(done, steps=30, device_s=12.0)
    study.tell(done.number, [4.5, 1000.0])
    older = running_trial(study, ["gelu", "swiglu"], liveness.me())  # as told by a moesearch that kept no compute
    study.tell(older.number, [4.6, 900.0])  # dominated: worse loss, fewer tokens/s
    now = status.of(study)
    assert (now.complete, now.failed, now.running, now.stale) == (2, 0, 2, [dead.number])
    assert now.groups == [":".join(liveness.me().split(":")[:2])] and now.front == 1 and now.waiting == 3
    shown = status.text(study.study_name, "here", now)
    assert f"{dead.number} belong to dead groups" in shown
    assert "compute: 30 steps" in shown and "(1 trained trials made before moesearch recorded compute" in shown
    recovery.recover(study, tmp_path)
    after = status.of(study)
    assert after.stale == [] and after.outside_budget == 1 and after.running == 1, "the dead one settled"
    assert study.trials[live.number].state == TrialState.RUNNING, "the live group's trial untouched"


def test_a_trial_settled_by_another_group_while_it_ran_is_dropped_not_recorded(study, tmp_path, monkeypatch):
    """A group that stalled past the grace period finishes a trial someone else already settled."""
    from moesearch.supervisor import runner

    def trained_while_settled_elsewhere(settings, group, number, layers, **_):
        frozen = study.trials[number]
        assert telling.fail_outside_budget(study, frozen, "lost: for the test", requeue=True)  # the other group
        return runner.Outcome(record(study.study_name, number, layers, "COMPLETE"))

    monkeypatch.setattr(runner, "run_trial", trained_while_settled_elsewhere)
    settings = local_settings(TINY, tmp_path, study.study_name)
    assert runner.run_named(settings, study, None, ["gelu", "swiglu"], origin="train") is None
    [trial] = [t for t in study.trials if t.user_attrs.get("origin") == "train"]
    assert trial.state == TrialState.FAIL and trial.user_attrs["failure_reason"] == "lost: for the test"
    assert not results.trial_file(tmp_path, study.study_name, trial.number).exists(), "the record agrees with Optuna"


def trains_to_complete(monkeypatch, study: optuna.Study) -> None:
    """Every trial the runner trains completes at once (val_loss 4.5, 1000 tokens/s), with no worker group."""
    from moesearch.supervisor import runner

    monkeypatch.setattr(
        runner,
        "run_trial",
        lambda settings, group, number, layers, **_: runner.Outcome(
            record(study.study_name, number, layers, "COMPLETE")
        ),
    )


def test_the_record_is_written_and_told_under_the_lock_every_recovery_takes(study, tmp_path, monkeypatch):
    """Another group's recovery (the trial's heartbeat looked stale) that started just as the record was
    written read "no record", failed the trial as lost and queued it again; then the tell raised
    UpdateFinishedTrialError and killed the search. It now waits for the lock the writer holds."""
    import fcntl

    from moesearch.supervisor import runner

    trains_to_complete(monkeypatch, study)
    write = results.write_trial

    def write_while_another_group_tries_to_recover(*args):
        with open(tmp_path / study.study_name / ".recovery.lock", "a") as other:  # as recovery.one_at_a_time opens it
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: another group's recovery waits here
        write(*args)

    monkeypatch.setattr(results, "write_trial", write_while_another_group_tries_to_recover)
    settings = local_settings(TINY, tmp_path, study.study_name)
    waiting = len(study.get_trials(states=(TrialState.WAITING,)))
    assert runner.run_named(settings, study, None, ["gelu", "swiglu"], origin="search") is not None
    monkeypatch.setattr(liveness, "is_dead", lambda frozen: True)  # to the other group, every trial looks dead
    assert recovery.recover(study, tmp_path) == [], "once it has the lock, nothing is left to settle"
    [trial] = [t for t in study.trials if t.user_attrs.get("origin") == "search"]
    assert trial.state == TrialState.COMPLETE and trial.values == [4.5, 1000.0]
    assert len(study.get_trials(states=(TrialState.WAITING,))) == waiting, "nothing queued to train again"


@pytest.mark.parametrize("answers_later", [True, False])
def test_an_error_telling_a_recorded_trial_leaves_the_record_the_truth(study, tmp_path, monkeypatch, answers_later):
    """The record is written, then telling the study fails (database locked, Ctrl-C): the trial is told
    as recorded, now or by the next recovery, never failed and queued to train again (twice recorded)."""
    from moesearch.supervisor import runner

    trains_to_complete(monkeypatch, study)
    tell = accounting.set_compute

    def locked(*args, **kwargs):
        if not answers_later:  # the study stays unreachable for the handler's try too
            monkeypatch.setattr(accounting, "set_compute", locked)
        else:
            monkeypatch.setattr(accounting, "set_compute", tell)
        raise RuntimeError("database is locked")

    monkeypatch.setattr(accounting, "set_compute", locked)
    settings = local_settings(TINY, tmp_path, study.study_name)
    waiting = len(study.get_trials(states=(TrialState.WAITING,)))
    with pytest.raises(RuntimeError, match="locked"):
        runner.run_named(settings, study, None, ["gelu", "swiglu"], origin="train")
    [trial] = [t for t in study.trials if t.user_attrs.get("origin") == "train"]
    assert len(study.get_trials(states=(TrialState.WAITING,))) == waiting, "nothing queued to train again"
    if answers_later:
        assert trial.state == TrialState.COMPLETE and trial.values == [4.5, 1000.0], "told as recorded at once"
    else:
        assert trial.state == TrialState.RUNNING, "left for recovery, which tells it from its record"
        monkeypatch.setattr(accounting, "set_compute", tell)
        monkeypatch.setattr(liveness, "is_dead", lambda frozen: True)  # its heartbeat has stopped
        assert recovery.recover(study, tmp_path) == [
            f"trial {trial.number}: told from its record (COMPLETE); its supervisor died before telling"
        ]
        assert study.trials[trial.number].state == TrialState.COMPLETE


def test_a_retry_is_not_ranked_against_its_own_preempted_attempt(study):
    from moesearch.supervisor import rungs

    objectives = {"val_loss": "minimize", "tokens_per_s": "maximize"}
    first = len(study.trials)  # after the queued baselines
    for number, (state, budget) in enumerate(
        [(TrialState.COMPLETE, True), (TrialState.FAIL, False), (TrialState.FAIL, True), (TrialState.PRUNED, True)]
    ):
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=[2.0, 100.0] if state == TrialState.COMPLETE else None,
                user_attrs={
                    "rungs": {"10": {"val_loss": 2.0 + number, "tokens_per_s": 100.0}},
                    "budget": budget,
                    "origin": "search",
                    "seed": 0,
                },
            )
        )
    seen = rungs.records_at(study, 10, objectives, but=first, seed=0)  # the first is the one asking
    assert sorted(v for v, _ in seen.values()) == [4.0, 5.0], (seen, "the preempted attempt (budget false) is left out")
    assert rungs.records_at(study, 20, objectives, but=first, seed=0) == {}


def test_a_trial_settled_elsewhere_between_a_rung_s_two_writes_goes_on(study, monkeypatch):
    """Another group's recovery settles the trial after its rung record is stored, before its peers are:
    the rung lets it go on (its result is dropped after), as when settled before the first write."""
    from moesearch.supervisor import rungs

    pruned = TINY.model_copy(
        update={
            "search": TINY.search.model_copy(
                update={"pruning": TINY.search.pruning.model_copy(update={"method": "mo-asha", "rungs": [10]})}
            )
        }
    )
    trial = running_trial(study, ["gelu", "swiglu"], dead_group())
    on_rung = rungs.judge(study, trial, pruned, may_stop=True)
    real = rungs.records_at

    def settled_meanwhile(*args, **kwargs):
        assert telling.fail_outside_budget(study, study.trials[trial.number], "lost: for the test", requeue=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(rungs, "records_at", settled_meanwhile)
    verdict = on_rung(10, {"val_loss": 5.0, "tokens_per_s": 100.0})
    assert verdict.keep and verdict.reason == "settled by another group while it ran"


def test_a_rung_ranks_only_the_search_trials_of_the_asking_trial_s_seed(study):
    """A verify replicate, a `train` trial and another seed's search (search --seed 1 on this study) are no peers."""
    from moesearch.supervisor import rungs

    objectives = {"val_loss": "minimize", "tokens_per_s": "maximize"}
    for loss, origin, seed in [
        (2.0, "search", 0),
        (2.1, "verify", 0),
        (2.2, "train", 0),
        (2.3, "search", 1),
        (2.4, "search", 0),
    ]:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                values=[loss, 100.0],
                user_attrs={"rungs": {"10": {"val_loss": loss, "tokens_per_s": 100.0}}, "origin": origin, "seed": seed},
            )
        )
    assert sorted(v for v, _ in rungs.records_at(study, 10, objectives, but=-1, seed=0).values()) == [2.0, 2.4]
    assert [v for v, _ in rungs.records_at(study, 10, objectives, but=-1, seed=1).values()] == [2.3]


def test_a_storage_error_at_a_rung_fails_that_trial_with_its_record_and_the_caller_goes_on(tmp_path, monkeypatch):
    """The study unreachable while the ranks wait for a verdict: the group is stopped, the trial is
    recorded FAIL with the error, and the search's call returns instead of raising."""
    from moesearch.core.protocol import Done, Rung
    from moesearch.supervisor import runner
    from moesearch.supervisor.group import WorkerGroup

    pruned = space.load(
        write_space(
            tmp_path,
            MICRO.replace("eval_sequences = 8", "eval_sequences = 8\neval_interval = 2")
            + '[search.pruning]\nmethod = "mo-asha"\nrungs = [2]\n',
        )
    )

    class OneRung(WorkerGroup):  # answers the first rung as the real group does, then would finish
        def __init__(self):
            super().__init__(Launch(1), tmp_path)
            self.killed = False

        def run(self, trial, config_json, timeout_s, on_step, on_rung=None):
            self._verdict(on_rung, Rung(2, {"val_loss": 3.0, "tokens_per_s": 10.0}))
            return Done({"val_loss": 2.0, "tokens_per_s": 10.0}, [], [])

        def kill(self):
            self.killed = True

    real = optuna.trial.Trial.set_user_attr

    def unreachable_for_rungs(self, key, value):
        if key == "rungs":
            raise optuna.exceptions.StorageInternalError("could not connect to server\nmore detail")
        real(self, key, value)

    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", unreachable_for_rungs)
    study = studies.open_study(storage_mod.open_storage(f"sqlite:///{tmp_path / 's.db'}"), "s", pruned, seed=0)
    settings = local_settings(pruned, tmp_path, study.study_name)
    group = OneRung()
    outcome = runner.run_named(settings, study, group, ["gelu", "swiglu"], origin="train")
    says = "storage error at rung 2: StorageInternalError: could not connect to server"
    assert group.killed and outcome.row["state"] == "FAIL" and outcome.row["failure_reason"] == says
    [trial] = [t for t in study.trials if t.user_attrs.get("origin") == "train"]
    assert trial.state == TrialState.FAIL and trial.user_attrs["failure_reason"] == says
    assert results.trial_file(tmp_path, "s", trial.number).exists(), "recorded like any failure"


@pytest.mark.parametrize("command", ["promote", "verify"])
def test_a_trial_left_running_by_a_dead_promote_or_verify_is_settled_when_the_command_runs_again(
    study, tmp_path, command
):
    """promote and verify plan from the records, so their next run trains what is missing; the dead run's
    trial must not stay RUNNING in the study (status showed it as running for good)."""
    from moesearch.supervisor import promote, replicates

    recorded = telling.reserve(study, TINY, ["gelu", "swiglu"], seed=0, origin=command)
    lost = telling.reserve(study, TINY, ["swiglu", "gelu"], seed=0, origin=command)
    for trial in (recorded, lost):
        trial.set_user_attr(TrialAttr.GROUP, dead_group())
    results.write_trial(tmp_path, record(study.study_name, recorded.number, ["gelu", "swiglu"], "COMPLETE"))
    settings = local_settings(TINY, tmp_path, study.study_name)
    queued = study.get_trials(states=(TrialState.WAITING,))  # the baselines open_study queued
    heard = []
    if command == "promote":
        promotion = promote.Promotion("w2", "below", pd.DataFrame(), settings, planned=[])
        promote.promote(promotion, study._storage, [], seeds=1, max_seeds=1, say=heard.append)
    else:
        replicates.verify(settings, study._storage, 0, planned=heard.append)
    assert study.trials[recorded.number].state == TrialState.COMPLETE, "told from its record"
    assert study.trials[lost.number].state == TrialState.FAIL
    assert study.get_trials(states=(TrialState.WAITING,)) == queued, "not queued: the plan retrains it"
