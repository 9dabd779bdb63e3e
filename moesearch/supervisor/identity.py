"""Whether a study's trainings are comparable with this run's: its space, text, evaluation and group shape.

Each check refuses in one line (InputError) naming what differs; `check_without_writing` makes them all
for a --dry-run. Light: optuna only.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from moesearch.core.errors import InputError
from moesearch.core.space import Space
from moesearch.core.trial import StudyAttr
from moesearch.supervisor.accounting import trained

EXACT = "exact"  # StudyAttr.EVALUATION of a study whose every evaluation routes without gate noise


def check_evaluation(study: optuna.Study) -> None:
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


def check_shape(study: optuna.Study, shape: dict[str, int]) -> None:
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
    check_same_text(study, settings.data, settings.data_sha256, settings.tokenizer)
    check_evaluation(study)
    check_shape(study, settings.shape)


def check_identity(storage: optuna.storages.BaseStorage, name: str, space: Space) -> None:
    """What `open_study` refuses, checked without writing (a --dry-run): InputError if study `name` exists in
    `storage` and was created for another space, naming each differing setting."""
    if name not in optuna.get_all_study_names(storage):
        return
    study = optuna.load_study(study_name=name, storage=storage)
    if StudyAttr.SPACE in study.user_attrs and (
        changed := _differences(identity_of(stored_space(study)), identity_of(space))
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


def identity_of(space: Space) -> dict:
    """What makes a study's trials comparable: the space without its scale ladder (sizes to promote to
    may be added to a space after its search) and the effect that matters (how the answer is read). The
    vocabulary is the one trained with: a space stored before it came from the data trained on bytes."""
    found = space.model_dump(mode="json", exclude={"scale": True, "search": {"effect_size"}})
    found["model"]["vocab_size"] = space.model.vocab
    return found


def check_same_text(
    study: optuna.Study, data: str | None, data_sha256: str | None, tokenizer: str | None = None
) -> None:
    """InputError unless `data_sha256` is the study's training text (None: nothing to check).

    val_loss on another text is another quantity: one study, one text. Says which --data (and --tokenizer)
    the study was made with, so the user can give it again.
    """
    made = study.user_attrs.get(StudyAttr.RUN, {})
    if data_sha256 is None or made.get("data_sha256") in (None, data_sha256):
        return
    given = (data or "not given (the standard library's source)") + (f" --tokenizer {tokenizer}" if tokenizer else "")
    theirs = (made.get("data") or "not given (the standard library's source)") + (
        f" --tokenizer {made['tokenizer']}" if made.get("tokenizer") else ""
    )
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
