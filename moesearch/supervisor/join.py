"""The rules for joining an existing study as one more worker group (`moesearch worker`).

A joining group trains with the study's own space, seed, training text and results folder, all
stored in the study by the `search` that created it, so any number of groups on any number of
machines can run the same command. Light: optuna, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from moesearch.core.errors import InputError
from moesearch.core.trial import StudyAttr
from moesearch.supervisor import identity, samplers, studies
from moesearch.supervisor import storage as storage_mod
from moesearch.supervisor.settings import DEFAULT_RESULTS, Settings, resolve


@dataclass(frozen=True)
class Joined:
    settings: Settings
    study: optuna.Study
    notes: list[str]  # what the user should know before the group starts


def join(storage: str, study_name: str, results: Path | None, trials: int | None, progress: bool, **group) -> Joined:
    """Open the study and resolve this group's settings from it; InputError when it cannot join."""
    opened = storage_mod.open_existing(storage)
    study = studies.load_existing(opened, study_name)
    space = identity.stored_space(study)
    run = study.user_attrs[StudyAttr.RUN]
    studys = Path(run.get("results") or DEFAULT_RESULTS)
    settings = resolve(
        space,
        storage,
        study_name,
        results or studys,
        run["data"],
        run["seed"],
        progress,
        tokenizer=run.get("tokenizer"),
        **group,
    )
    notes = []
    if settings.results != studys.resolve():
        notes.append(
            f"note: records go to {settings.results}; the study's search wrote to {studys} (the same folder "
            "on a shared filesystem under another path is fine; another folder splits the study's records)"
        )
    if settings.data_sha256 != run["data_sha256"]:  # the same path, other contents on this machine
        raise InputError(
            f"--study {study_name!r}: the training text here ({run['data'] or 'the standard library'}, "
            f"sha256 {settings.data_sha256[:12]}) differs from the study's ({run['data_sha256'][:12]}); "
            "allowed: the same text on every machine"
        )
    storage_mod.open_for(settings, explicit=True)  # the records under --results must belong to this storage
    study = studies.open_study(opened, study_name, space, samplers.group_seed(), shape=settings.shape)
    target = study.user_attrs[StudyAttr.TRIALS]
    if trials and trials > target:  # raise only: a stale, lower value in a job script would stop every group
        study.set_user_attr(StudyAttr.TRIALS, trials)
    elif trials and trials < target:
        notes.append(
            f"note: --trials {trials} is below the study's target {target}, which stays; "
            "`moesearch search --trials N` sets a lower one"
        )
    return Joined(settings, study, notes)
