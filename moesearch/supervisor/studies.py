"""The Optuna side: create or resume a study bound to one space, or load one to join.

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

import warnings

import optuna

from moesearch.core import design
from moesearch.core.assignment import Assignment
from moesearch.core.errors import InputError
from moesearch.core.space import Space
from moesearch.core.trial import StudyAttr
from moesearch.supervisor import decide, identity
from moesearch.supervisor.samplers import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)  # moesearch reports trials itself


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
    tokenizer: str | None = None,
) -> optuna.Study:
    """Create the study, or resume it if it exists and was created for the same space.

    queue: a new study's first proposals are the baselines (and the design's runs); a study no sampler
    proposes for (`promote`'s) queues nothing.
    shape: the training group's (`Settings.shape`): the first fixes the study's, and a group of another
    shape is refused (InputError), since its trainings would differ in batch, not activation.

    Creating it fixes the hypervolume reference point (stored with the study, and in every record) and
    what `moesearch worker` groups joining it train with: the space, seed, data and tokenizer.
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
        identity.check_same_text(study, data, data_sha256, tokenizer)
    if recorded is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2; dashboards label their axes by it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(space.search.objectives))
        study.set_user_attr(StudyAttr.SPACE, identity.identity_of(space))
        study.set_user_attr(StudyAttr.EVALUATION, identity.EXACT)
        study.set_user_attr(StudyAttr.REFERENCE_POINT, reference_point(space))
        for baseline in decide.baselines(space.layer_choices()) if queue else []:  # always in the study, and first
            study.enqueue_trial(baseline.params(), skip_if_exists=True)
        if queue and space.search.design != "none":  # then the main-effects design, before the sampler proposes
            for run in design.runs(space.layer_choices()):
                study.enqueue_trial(Assignment(run).params(), skip_if_exists=True)
    else:  # keys added since read as their defaults
        identity.check_identity(storage, name, space)
    identity.check_evaluation(study)
    if study.user_attrs.get(StudyAttr.EVALUATION) != identity.EXACT:
        study.set_user_attr(StudyAttr.EVALUATION, identity.EXACT)
    if shape is not None:
        identity.check_shape(study, shape)
        if study.user_attrs.get(StudyAttr.SHAPE) != shape:  # the first group that trains fixes it
            study.set_user_attr(StudyAttr.SHAPE, shape)
    if StudyAttr.RUN not in study.user_attrs:  # new, or made by an older moesearch: what joining worker groups need
        run = {"seed": seed, "data": data, "data_sha256": data_sha256, "results": results, "tokenizer": tokenizer}
        study.set_user_attr(StudyAttr.RUN, run)
    return study


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
        tokenizer=settings.tokenizer,
    )


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
