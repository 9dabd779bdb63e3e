"""The Optuna side: open storage, create or resume a study bound to one space, and read what it knows.

Light: optuna only. Trials carry user attributes that make the study self-describing:
  assignment  "gelu,swiglu,..."      seed     the training seed
  trained     the group trained it   duplicate_of   the trial whose result answered this one
  budget      counts toward --trials (not interrupted or verify trials)   failure_reason
  origin      search, train or verify (a seed replicate: `verify`, or `search` for baseline_seeds)
  worker      the worker group running it: its supervisor, "host:pid:start" (`TrialAttr.GROUP`)
  heartbeat   the group's last sign of life (`liveness`)   compute  the steps and device-seconds it trained
  rungs       its objectives at each rung it reached (`rungs`)   rung_peers  the records each rung ranked it against
The study itself carries what a joining worker group needs: the space it was created for, the seed,
the data and its sha256, the target number of trials, and the hypervolume reference point.
"""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler, GPSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from moesearch.core import design
from moesearch.core.assignment import Assignment, layer_name
from moesearch.core.errors import InputError
from moesearch.core.space import Space
from moesearch.core.trial import Origin, StudyAttr, TrialAttr
from moesearch.supervisor import decide, liveness, optuna_compat

optuna.logging.set_verbosity(optuna.logging.WARNING)  # moesearch reports trials itself


_SAMPLER_FACTORIES = {  # name -> factory(seed)
    # constant_liar: trials running in other worker groups count as bad, so groups spread out
    "tpe": lambda seed: TPESampler(seed=seed, multivariate=True, constant_liar=True),
    "nsga2": lambda seed: NSGAIISampler(seed=seed),
    "gp": lambda seed: GPSampler(seed=seed),
    "random": lambda seed: RandomSampler(seed=seed),
    "brute": lambda seed: optuna_compat.Exhaustive(seed=seed),
}
SAMPLERS = tuple(_SAMPLER_FACTORIES)
EXACT = "exact"  # StudyAttr.EVALUATION of a study whose every evaluation routes without gate noise


def make_sampler(kind: str, seed: int) -> BaseSampler:
    """An Optuna sampler by the name a space's `search.sampler` uses."""
    with warnings.catch_warnings():  # GP and brute force are marked experimental; moesearch tests them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _SAMPLER_FACTORIES[kind](seed)


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    space: Space,
    seed: int,
    data: str | None = None,
    data_sha256: str | None = None,
    results: str | None = None,
    queue: bool = True,
    shape: dict[str, int] | None = None,
) -> optuna.Study:
    """Create the study, or resume it if it exists and was created for the same space.

    queue: a new study's first proposals are the baselines (and the design's runs); a study no sampler
    proposes for (`promote`'s) queues nothing.
    shape: the training group's (`Settings.shape`): the first fixes the study's, and a group of another
    shape is refused (InputError), since its trainings would differ in batch, not activation.

    Creating it fixes the hypervolume reference point (stored with the study, and in every record) and
    what `moesearch worker` groups joining it train with: the space, seed and data.
    """
    from moesearch.supervisor.reference import reference_point

    directions = list(space.search.objectives.values())
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=directions,
        sampler=make_sampler(space.search.sampler, seed),
        load_if_exists=True,
    )
    recorded = study.user_attrs.get(StudyAttr.SPACE)
    if recorded is not None:
        check_same_text(study, data, data_sha256)
    if recorded is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2; dashboards label their axes by it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(space.search.objectives))
        study.set_user_attr(StudyAttr.SPACE, _identity(space))
        study.set_user_attr(StudyAttr.EVALUATION, EXACT)
        study.set_user_attr(StudyAttr.REFERENCE_POINT, reference_point(space))
        for baseline in decide.baselines(space.layer_choices()) if queue else []:  # always in the study, and first
            study.enqueue_trial(baseline.params(), skip_if_exists=True)
        if queue and space.search.design != "none":  # then the main-effects design, before the sampler proposes
            for run in design.runs(space.layer_choices()):
                study.enqueue_trial(Assignment(run).params(), skip_if_exists=True)
    else:  # keys added since read as their defaults
        check_identity(storage, name, space)
    _check_evaluation(study)
    if study.user_attrs.get(StudyAttr.EVALUATION) != EXACT:
        study.set_user_attr(StudyAttr.EVALUATION, EXACT)
    if shape is not None:
        _check_shape(study, shape)
        if study.user_attrs.get(StudyAttr.SHAPE) != shape:  # the first group that trains fixes it
            study.set_user_attr(StudyAttr.SHAPE, shape)
    if StudyAttr.RUN not in study.user_attrs:  # new, or made by an older moesearch: what joining worker groups need
        study.set_user_attr(StudyAttr.RUN, {"seed": seed, "data": data, "data_sha256": data_sha256, "results": results})
    return study


def _check_evaluation(study: optuna.Study) -> None:
    """Refuse to train into a study whose trainings were evaluated with DeepSpeed's routing noise (before
    schema 5, every evaluation sampled top-2's second expert): new ones evaluate exactly, and a study
    mixing the two compares evaluation noise, not activations. Running trials count: their records may land."""
    if study.user_attrs.get(StudyAttr.EVALUATION) == EXACT:
        return
    if old := trained(study, budget_only=False) + study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        raise InputError(
            f"--study {study.study_name!r}: its {len(old)} trainings were evaluated with DeepSpeed's routing "
            "noise (moesearch before results schema 5) and new ones are evaluated exactly, so they are not "
            "comparable; give a new --study name (pareto, plot and report still read this one)"
        )


def _check_shape(study: optuna.Study, shape: dict[str, int]) -> None:
    """InputError where the study's group shape is another and a group of it has trained or is training:
    a shape no training was made with (a first group that failed to start) gives way to this one."""
    fixed = study.user_attrs.get(StudyAttr.SHAPE)
    if fixed is None or fixed == shape:
        return
    if not trained(study, budget_only=False) and not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return
    said = ", ".join(f"{k} {v}" for k, v in shape.items())
    was = ", ".join(f"{k} {v}" for k, v in fixed.items())
    raise InputError(
        f"--nproc/--nnodes: this group would train with {said}, but study {study.study_name!r} trains "
        f"with {was}, and trainings of other shapes differ in batch, not activation; allowed: "
        f"{fixed['ranks']} ranks in all (--nproc x --nnodes), or a new --study"
    )


def check_without_writing(storage: optuna.storages.BaseStorage, settings) -> None:
    """Every refusal `open_for` would make, made without writing (a --dry-run): the study's space, its text,
    its evaluation and its group shape."""
    check_identity(storage, settings.study, settings.space)
    if settings.study not in optuna.get_all_study_names(storage):
        return
    study = optuna.load_study(study_name=settings.study, storage=storage)
    check_same_text(study, settings.data, settings.data_sha256)
    _check_evaluation(study)
    _check_shape(study, settings.shape)


def check_identity(storage: optuna.storages.BaseStorage, name: str, space: Space) -> None:
    """What `open_study` refuses, checked without writing (a --dry-run): InputError if study `name` exists in
    `storage` and was created for another space, naming each differing setting."""
    if name not in optuna.get_all_study_names(storage):
        return
    study = optuna.load_study(study_name=name, storage=storage)
    if StudyAttr.SPACE in study.user_attrs and (
        changed := _differences(_identity(stored_space(study)), _identity(space))
    ):
        recorded = study.user_attrs[StudyAttr.SPACE].get("name")
        raise InputError(
            f"--study {name!r}: this study was created for a different space ({recorded!r}): "
            f"{'; '.join(changed)}; give a new --study name, or the space as it was"
        )


def _differences(old: dict, new: dict, where: str = "") -> list[str]:
    """Each setting that differs between two identities, 'model.d_model 64 -> 128', in key order."""
    found = []
    for key in sorted(old.keys() | new.keys()):
        a, b, at = old.get(key), new.get(key), f"{where}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{at}.")
        elif a != b:
            found.append(f"{at} {a!r} -> {b!r}")
    return found


def _identity(space: Space) -> dict:
    """What makes a study's trials comparable: the space without its scale ladder (sizes to promote to
    may be added to a space after its search) and the effect that matters (how the answer is read)."""
    return space.model_dump(mode="json", exclude={"scale": True, "search": {"effect_size"}})


def open_for(storage: optuna.storages.BaseStorage, settings) -> optuna.Study:
    """`open_study` with one invocation's settings (`search`, `train`): its study, space, seed, text, results."""
    return open_study(
        storage,
        settings.study,
        settings.space,
        settings.seed,
        settings.data,
        settings.data_sha256,
        str(settings.results),
        shape=settings.shape,
    )


def check_same_text(study: optuna.Study, data: str | None, data_sha256: str | None) -> None:
    """InputError unless `data_sha256` is the study's training text (None: nothing to check).

    val_loss on another text is another quantity: one study, one text. Says which --data the study
    was made with, so the user can give it again.
    """
    made = study.user_attrs.get(StudyAttr.RUN, {})
    if data_sha256 is None or made.get("data_sha256") in (None, data_sha256):
        return
    given = data or "not given (the standard library's source)"
    theirs = made.get("data") or "not given (the standard library's source)"
    raise InputError(
        f"--data: {given} (sha256 {data_sha256[:12]}) is not the training text of study "
        f"{study.study_name!r}, made with --data {theirs} (sha256 {made['data_sha256'][:12]}); "
        "allowed: that text, or a new --study"
    )


def stored_space(study: optuna.Study) -> Space:
    """The space the study was created with, as this version reads it; InputError (one line) where a key
    was renamed or removed since, or a check made stricter."""
    import pydantic

    try:
        return Space.model_validate(study.user_attrs[StudyAttr.SPACE])
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        raise InputError(
            f"--study {study.study_name!r}: the space stored with it does not validate in moesearch "
            f"{_version()} ({'.'.join(map(str, first['loc']))}: {first['msg']}); allowed: the moesearch "
            "version that created it, or a new --study name"
        ) from None


def _version() -> str:
    from importlib.metadata import version

    return version("moesearch")


def load_existing(storage: optuna.storages.BaseStorage, name: str, to_join: bool = True) -> optuna.Study:
    """A study made by moesearch: with `to_join`, by `moesearch search`, which sets the trial target a
    worker group joins to reach (`moesearch train` alone does not); InputError otherwise."""
    names = optuna.get_all_study_names(storage)
    if name not in names:
        raise InputError(
            f"--study: no study {name!r} in --storage; studies there: {', '.join(names) or '(none)'}; "
            "create it with `moesearch search SPACE --storage ... --study ...` first"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    if StudyAttr.RUN not in study.user_attrs:
        raise InputError(
            f"--study {name!r}: not made by moesearch of this version (it has no space, seed or data to "
            "join with); run `moesearch search` on it once"
        )
    if to_join and StudyAttr.TRIALS not in study.user_attrs:
        raise InputError(
            f"--study {name!r}: it has no trial target to join (made by `moesearch train` alone); "
            "run `moesearch search` on it once to set one"
        )
    return study


def group_seed() -> int:
    """A sampler seed of this group's own: groups seeded alike would propose alike and collide."""
    return secrets.randbits(32)


def trained(study: optuna.Study, budget_only: bool = True) -> list[FrozenTrial]:
    """Finished trials that the worker group actually trained (by default: those counting toward --trials)."""
    return trained_among(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)), budget_only
    )


def trained_among(trials: list[FrozenTrial], budget_only: bool) -> list[FrozenTrial]:
    """The finished trials of `trials` that a worker group trained (by the same rule as `trained`)."""
    return [
        t
        for t in trials
        if t.state.is_finished()
        and t.user_attrs.get(TrialAttr.TRAINED)
        and (t.user_attrs.get(TrialAttr.BUDGET, True) or not budget_only)
    ]


@dataclass(frozen=True)
class Snapshot:
    """What the study knows now, from one read: what a search loop (of any group) decides on."""

    done: int
    """Finished trials that count toward --trials."""
    running: dict[int, FrozenTrial]
    """RUNNING trials that will count if they finish (verify trials never do), by number."""
    waiting: list[int]
    """Numbers of queued trials (baselines, retries): the next asks take them, lowest first."""
    known: dict[str, tuple[int, list[float] | None]]
    """assignment -> (trial number, objective values; None: pruned), decided with this seed (verify included)."""
    failed: dict[str, int]
    """assignment -> trial number, failed with this seed in a way that repeats (`decide.remembered`): diverged,
    out of memory, a shape error (other crashes and timeouts may be the machine's: not here)."""
    spent: dict[str, float]
    """Compute every trial trained so far (any state, any group): {"steps": ..., "device_s": ...}."""


def snapshot(study: optuna.Study, seed: int) -> Snapshot:
    trials = study.get_trials(deepcopy=False)
    finished = trained_among(trials, budget_only=False)
    return Snapshot(
        done=sum(1 for t in finished if t.user_attrs.get(TrialAttr.BUDGET, True)),
        running={
            t.number: t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get(TrialAttr.BUDGET, True)
        },
        waiting=[t.number for t in trials if t.state == TrialState.WAITING],
        known={
            t.user_attrs[TrialAttr.ASSIGNMENT]: (t.number, t.values)
            for t in finished
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.user_attrs.get(TrialAttr.SEED) == seed
        },
        failed={
            t.user_attrs[TrialAttr.ASSIGNMENT]: t.number
            for t in finished
            if t.state == TrialState.FAIL
            and decide.remembered(t.user_attrs.get(TrialAttr.FAILURE_REASON, ""))
            and t.user_attrs.get(TrialAttr.SEED) == seed
        },
        spent=spent(trials),
    )


def spent(trials: list[FrozenTrial]) -> dict[str, float]:
    """The compute `trials` trained, from their `compute` attributes (what --budget counts)."""
    counted = [t.user_attrs[TrialAttr.COMPUTE] for t in trials if TrialAttr.COMPUTE in t.user_attrs]
    return {"steps": sum(c["steps"] for c in counted), "device_s": sum(c["device_s"] for c in counted)}


def set_compute(trial: optuna.Trial, steps: int, device_s: float) -> None:
    """Record what a trial trained (pruned and failed ones too), before it is told."""
    trial.set_user_attr(TrialAttr.COMPUTE, {"steps": steps, "device_s": device_s})


def replicate_of(study: optuna.Study, assignment: str, seed: int) -> int | None:
    """The first completed trial of `assignment` trained with a seed other than `seed`, if any."""
    return next(
        (
            t.number
            for t in trained(study, budget_only=False)
            if t.state == TrialState.COMPLETE
            and t.user_attrs[TrialAttr.ASSIGNMENT] == assignment
            and t.user_attrs.get(TrialAttr.SEED) != seed
        ),
        None,
    )


def is_running(study: optuna.Study, number: int) -> bool:
    """Still RUNNING: not settled by another group's recovery while this one trained it."""
    return _frozen(study, number).state == TrialState.RUNNING


def reference_point(study: optuna.Study) -> dict[str, float]:
    """The hypervolume reference point fixed when the study was created."""
    return study.user_attrs[StudyAttr.REFERENCE_POINT]


def tell_result(
    study: optuna.Study,
    trial: optuna.Trial,
    values: list[float] | None,
    failure_reason: str | None,
    preempted: bool = False,
    pruned: bool = False,
) -> None:
    """Tell a trained trial's result (None: it failed or was pruned, for `failure_reason`); its record is
    already written.

    A pruned trial is PRUNED in Optuna too (TPE counts it among the poor trials). A preempted trial is
    no result: it fails outside the budget, and a search trial goes back in the queue to be trained again.
    """
    if values is not None:
        study.tell(trial, values)
    elif pruned:
        trial.set_user_attr(TrialAttr.FAILURE_REASON, failure_reason)
        study.tell(trial, state=TrialState.PRUNED)
    elif preempted:
        retry = trial.user_attrs.get(TrialAttr.ORIGIN) == Origin.SEARCH
        fail_outside_budget(study, _frozen(study, trial.number), failure_reason, requeue=retry)
    else:
        trial.set_user_attr(TrialAttr.FAILURE_REASON, failure_reason)
        study.tell(trial, state=TrialState.FAIL)


def abandon(study: optuna.Study, trial: optuna.Trial, error: BaseException, retry: bool = False) -> None:
    """Fail a trial that produced no result, outside the budget; a baseline (or any, with retry) is queued again."""
    frozen = _frozen(study, trial.number)
    if frozen.state != TrialState.RUNNING:
        return  # told before the error
    reason = "interrupted by the user" if isinstance(error, KeyboardInterrupt) else (str(error) or repr(error))
    fail_outside_budget(study, frozen, reason, requeue=retry or optuna_compat.was_queued(frozen))


def fail_outside_budget(study: optuna.Study, frozen: FrozenTrial, reason: str, requeue: bool) -> bool:
    """Fail a RUNNING trial that gave no result, so it does not count toward --trials.

    requeue: its assignment goes back in the queue (a baseline, a preempted or lost search trial).
    Returns False if another process finished the trial first (then nothing is queued twice).
    """
    trial = optuna_compat.handle(study, frozen)
    try:
        trial.set_user_attr(TrialAttr.BUDGET, False)
        trial.set_user_attr(TrialAttr.FAILURE_REASON, reason)
        study.tell(frozen.number, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
        return False
    if requeue and (params := optuna_compat.queued_params(frozen) or frozen.params):
        study.enqueue_trial(params)
    return True


def _frozen(study: optuna.Study, number: int) -> FrozenTrial:
    return optuna_compat.trial(study, number)


def reserve(study: optuna.Study, space: Space, layers: list[str], seed: int, origin: str) -> optuna.Trial:
    """A RUNNING trial for an assignment chosen outside the sampler (`train`, `verify`).

    Its number exists before training, so these trials follow the search's order: train, write the
    record under that number, then tell. Verify trials re-measure known assignments: they do not
    count toward a search's --trials.
    """
    token = secrets.token_hex(8)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=Assignment(layers).params(),
            distributions={layer_name(i): CategoricalDistribution(c) for i, c in enumerate(space.layer_choices())},
            user_attrs={
                TrialAttr.ASSIGNMENT: Assignment(layers).text,
                TrialAttr.SEED: seed,
                TrialAttr.TRAINED: True,
                TrialAttr.TOKEN: token,
                TrialAttr.ORIGIN: origin,
                TrialAttr.GROUP: liveness.me(),
                **({TrialAttr.BUDGET: False} if origin == Origin.VERIFY else {}),
            },
        )
    )
    # add_trial returns nothing: find ours by its token (other processes may be adding trials too)
    ours = next(t for t in reversed(study.get_trials(deepcopy=False)) if t.user_attrs.get(TrialAttr.TOKEN) == token)
    return optuna_compat.handle(study, ours)
