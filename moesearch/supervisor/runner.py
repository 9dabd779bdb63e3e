"""One trial, start to record: build its RunConfig, train it on the group, make its Parquet record.

Shared by `search` (trials the sampler asks for), `train` (one assignment the user names) and
`verify` (seed replicates of the front and the baselines).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import optuna
from tqdm.auto import tqdm

from moesearch.core import preempt, results
from moesearch.core.assignment import Assignment
from moesearch.core.config import RunConfig
from moesearch.core.metrics import fmt
from moesearch.core.protocol import Done, Failed, Pruned, Reply, Verdict
from moesearch.core.trial import Origin, State
from moesearch.supervisor import accounting, decide, liveness, recovery, rungs, telling
from moesearch.supervisor.group import GroupFailure, GroupStartFailure, WorkerGroup
from moesearch.supervisor.settings import Settings
from moesearch.supervisor.stability import stability


@dataclass(frozen=True)
class Outcome:
    record: results.Record  # the trial's Parquet rows, for the caller to write
    steps_seen: int = 0  # steps rank 0 reported, rows or not (a crashed or hung group leaves none)

    @property
    def row(self) -> dict:
        return self.record.trial

    @property
    def ok(self) -> bool:
        return self.row["state"] == State.COMPLETE

    @property
    def preempted(self) -> bool:
        """Stopped by SIGTERM/SIGUSR1: no result, retried later (outside the budget)."""
        return self.row["state"] == State.PREEMPTED

    @property
    def pruned(self) -> bool:
        return self.row["state"] == State.PRUNED

    @property
    def steps_trained(self) -> int:
        """What the trial cost in optimizer steps, failed ones included: what --budget counts."""
        return max(len(self.record.steps), self.steps_seen)

    def values(self, objectives: dict[str, str]) -> list[float]:
        return [self.row[o] for o in objectives]


def run_trial(
    settings: Settings,
    group: WorkerGroup,
    number: int,
    layers: list[str],
    *,
    origin: str,
    replicate_of: int | None,
    reference: dict[str, float],
    on_rung: Callable[[int, dict], Verdict] | None = None,
) -> Outcome:
    """Train `layers` as trial `number`; the outcome holds its record (complete, pruned or failed), not yet written.

    on_rung: records the trial at the space's rungs and decides whether it goes on (None: no rungs).

    GroupStartFailure and KeyboardInterrupt propagate (after the group is stopped): neither is the
    trial's result, and the caller decides what the study makes of them.
    """
    cfg = RunConfig.build(
        settings.space,
        layers,
        settings.seed,
        settings.read,
        settings.launch.world_size,
        settings.launch.nproc,
        rungs=on_rung is not None,
        monitor=settings.monitor,
        monitor_dir=str(settings.monitor_dir),
        monitor_group=settings.study if settings.monitor else None,
    )
    config_json = cfg.model_dump_json()
    started, seen = datetime.now(UTC), 0
    bar = tqdm(
        total=cfg.train.steps,
        desc=f"trial {number}",
        unit="step",
        leave=False,
        disable=None if settings.progress else True,
        dynamic_ncols=True,
    )  # None: off unless a tty
    lines = Lines(number, cfg.train.steps, cfg.train.eval_interval) if not sys.stderr.isatty() else None
    if lines:
        lines.start(Assignment(layers).text, settings.seed)

    def on_step(step: int, loss: float, val_loss: float | None = None) -> None:
        nonlocal seen
        seen += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if lines:
            lines.step(step, loss, val_loss)

    try:
        reply = group.run(number, config_json, settings.space.search.timeout_s, on_step, on_rung)
    except GroupStartFailure:
        raise
    except GroupFailure as e:  # a signal may have taken the group down before it could reply
        reply = Failed(
            _preempted_reason(e) if preempt.requested() else decide.repeating(str(e)),
            preempted=preempt.requested() is not None,
        )
    except rungs.RungStorageError as e:  # the group was stopped (the ranks waited for a verdict): the trial fails
        reply = Failed(str(e))
    except KeyboardInterrupt:
        group.kill()
        raise
    finally:
        bar.close()
    record = results.make_record(
        study=settings.study,
        trial=number,
        origin=origin,
        layers=layers,
        state=_state(reply),
        failure_reason=None if isinstance(reply, Done) else reply.reason,
        objectives=settings.space.search.objectives,
        reference_point=reference,
        effect_size=settings.space.search.effect_size,
        metrics={
            **({} if isinstance(reply, Failed) else reply.metrics),
            **stability(reply.steps, settings.space.train.grad_clip),
        },
        steps=reply.steps,
        layer_rows=reply.layers if isinstance(reply, Done) else [],
        config_json=config_json,
        seed=settings.seed,
        replicate_of=replicate_of,
        data_sha256=settings.data_sha256,
        hardware=group.hardware,
        ep_size=cfg.ep_size,
        random_streams=cfg.train.streams,
        started_at=started,
        finished_at=datetime.now(UTC),
    )
    if warning := uncalibrated_warning(record.trial):
        tqdm.write(warning, file=sys.stderr)
    return Outcome(record, seen)


def uncalibrated_warning(row: dict) -> str | None:
    """A line when experts stayed unquantized in the 8-bit evaluations: the gaps then understate the cost."""
    if not row.get("quant_uncalibrated_experts"):
        return None
    return (
        f"warning: trial {row['trial']}: {row['quant_uncalibrated_experts']} expert(s) saw no calibration token "
        "and stayed in full precision in the 8-bit evaluations, so its quant_gap_* understate the cost"
    )


class Lines:
    """Progress as plain lines on stderr, for output to a file or pipe (a cluster job's log), where the bar
    is off: one line when a trial starts, one at each evaluation (train.eval_interval); a trial without
    periodic evaluations gets one at each quarter of its steps instead, so a log never stays silent long."""

    def __init__(self, number: int, steps: int, eval_interval: int):
        self.number, self.steps = number, steps
        self.every = 0 if eval_interval else max(1, steps // 4)

    def start(self, assignment: str, seed: int) -> None:
        self._say(f"trial {self.number} [{assignment}] started: {self.steps} steps, seed {seed}")

    def step(self, step: int, loss: float, val_loss: float | None) -> None:
        if val_loss is not None:
            self._say(f"trial {self.number}: step {step}/{self.steps}, train_loss {loss:.4f}, val_loss {val_loss:.4f}")
        elif self.every and step % self.every == 0 and step < self.steps:
            self._say(f"trial {self.number}: step {step}/{self.steps}, train_loss {loss:.4f}")

    @staticmethod
    def _say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def _state(reply: Reply) -> State:
    if isinstance(reply, Done):
        return State.COMPLETE
    if isinstance(reply, Pruned):
        return State.PRUNED
    return State.PREEMPTED if reply.preempted else State.FAIL


def _preempted_reason(error: GroupFailure) -> str:
    return f"preempted: {preempt.requested()}; the group stopped before its reply ({str(error).splitlines()[0]})"


def run_named(
    settings: Settings, study: optuna.Study, group: WorkerGroup, layers: list[str], origin: str
) -> Outcome | None:
    """Train an assignment chosen outside the sampler (`train`, `verify`) as one trial of the study.

    The Optuna trial exists first (RUNNING), as in the search; an interruption fails it outside the
    budget instead of leaving it RUNNING.
    """
    trial = telling.reserve(study, settings.space, layers, settings.seed, origin)
    try:
        return record_and_tell(settings, study, trial, group, layers, origin)
    except BaseException as e:
        if not recovery.tell_if_recorded(study, settings.results, trial.number):
            telling.abandon(study, trial, e)
        raise


def record_and_tell(
    settings: Settings, study: optuna.Study, trial: optuna.Trial, group: WorkerGroup, layers: list[str], origin: str
) -> Outcome | None:
    """Train our RUNNING `trial` with its heartbeat on, write its record, then tell the study.

    The record comes first, so a told trial always has one (`recovery` tells a record left untold).
    None: another group settled the trial while it ran (`dropped`); nothing is written or told.
    """
    with liveness.beating(study, trial.number):
        outcome = run_trial(
            settings,
            group,
            trial.number,
            layers,
            origin=origin,
            replicate_of=telling.replicate_of(study, Assignment(layers).text, settings.seed),
            reference=telling.reference_point(study),
            on_rung=rungs.judge(study, trial, settings.space, _prunable(settings, layers, origin))
            if settings.space.search.pruning.method != "none"
            else None,
        )
        # Under recovery's lock: another group's recovery reads "no record" and fails the trial as lost, or
        # finds it told; never "no record" just before this one writes it (a record Optuna calls lost).
        # The heartbeat stays on while this waits for the lock, so a long wait does not look dead.
        with recovery.one_at_a_time(settings.results, study.study_name):
            if not telling.is_running(study, trial.number):
                dropped(trial.number)
                return None
            results.write_trial(settings.results, outcome.record)
            compute_s = outcome.row["wall_time_s"] * (outcome.row["world_size"] or 1)
            accounting.set_compute(trial, outcome.steps_trained, compute_s)
            values = outcome.values(settings.space.search.objectives) if outcome.ok else None
            telling.tell_result(
                study, trial, values, outcome.row["failure_reason"], preempted=outcome.preempted, pruned=outcome.pruned
            )
    return outcome


def _prunable(settings: Settings, layers: list[str], origin: str) -> bool:
    """Search proposals may be stopped at rungs; the baselines (every front's reference) and replicates may not."""
    return origin == Origin.SEARCH and list(layers) not in settings.space.uniform_assignments()


def dropped(number: int) -> None:
    """Another group judged this trial's group dead (a stall past the heartbeat's grace) and settled it:
    the result is not written, and the record and the study keep agreeing."""
    tqdm.write(
        f"trial {number}: settled by another group while it ran (no heartbeat for {liveness.GRACE_S:g} s); "
        "its result is dropped"
    )


def summary(outcome: Outcome, objectives: dict[str, str]) -> str:
    """One line per finished trial, for the log above the progress bars."""
    row = outcome.row
    if outcome.pruned:
        return f"trial {row['trial']} [{row['assignment']}] PRUNED: {row['failure_reason']}"
    if not outcome.ok:  # PREEMPTED or FAILED, as the record's state says
        state = State.PREEMPTED if outcome.preempted else "FAILED"  # as people say it
        return f"trial {row['trial']} [{row['assignment']}] {state}: {row['failure_reason'].splitlines()[0]}"
    shown = ", ".join(f"{o}={fmt(row[o])}" for o in objectives)
    return f"trial {row['trial']} [{row['assignment']}] {shown} ({row['wall_time_s']:.1f} s)"
