"""Options shared by `search` and `train`, and their resolution into validated runner Settings.

Everything is checked before anything is written: a bad space, flag, data path, results folder or
storage URL stops the command with one line and exit code 2, leaving no file behind.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from moesearch import corpus
from moesearch import space as space_mod
from moesearch.errors import InputError
from moesearch.settings import Settings
from moesearch.space import STUDY_NAME

DEFAULT_RESULTS = Path("results")


def run_options(command):
    """The flags of every command that trains."""
    decorators = [
        click.argument("space", default="default"),
        click.option("--nproc", type=click.IntRange(min=1), help="Ranks in the worker group [default: one per GPU, else 2]."),
        click.option("--storage", help="Optuna storage URL (sqlite:///, postgresql://, journal:PATH) [default: sqlite file in the results folder]."),
        click.option("--study", "study_name", help="Study name [default: the space's name]."),
        click.option("--results", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True,
                     help="Folder for Parquet records and logs."),
        click.option("--data", help="Training text: a file, a folder or a glob [default: the Python standard library's source]."),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Training seed of every trial (and the sampler's)."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def resolve(space: str, nproc: int | None, storage: str | None, study_name: str | None, results: Path,
            data: str | None, seed: int, progress: bool) -> Settings:
    """Validate every input; returns Settings or raises InputError naming the culprit."""
    spec = space_mod.load(space)
    nproc = nproc or _default_nproc()
    spec.ep_size(nproc)
    if spec.train.eval_sequences % nproc:
        raise InputError(f"--nproc {nproc}: must divide train.eval_sequences ({spec.train.eval_sequences}) "
                         "so every rank evaluates the same held-out tokens")
    text = corpus.load(data)
    text.check_fits(spec.model.seq_len)
    results = results.resolve()
    _check_writable(results)
    if study_name is not None and not re.fullmatch(STUDY_NAME, study_name):
        raise InputError(f"--study: {study_name!r} is not a plain name; allowed: letters, digits, '_', '.', '-'")
    return Settings(space=spec, study=study_name or spec.name, storage=storage or f"sqlite:///{results / 'moesearch.db'}",
                    results=results, nproc=nproc, seed=seed, data=data, data_sha256=text.sha256, progress=progress)


def _default_nproc() -> int:
    import torch  # only here: --help and the analysis commands stay fast

    return torch.cuda.device_count() or 2


def _check_writable(folder: Path) -> None:
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--results: {str(folder)!r} cannot be written ({existing} is not a writable folder)")


def describe(settings: Settings) -> str:
    """The resolved plan in one line, printed before any training starts."""
    from moesearch.study import redact

    return (f"study {settings.study!r} in {redact(settings.storage)} | space {settings.space.name} | "
            f"{settings.nproc} ranks, ep_size {settings.space.ep_size(settings.nproc)} | seed {settings.seed} | "
            f"records in {settings.results}")


def open_storage(settings: Settings, explicit: bool):
    """Open the study storage; the default SQLite file lives in the results folder, created here.

    Records of this study in the results folder must belong to this storage: otherwise two studies
    would share trial numbers, and one would overwrite the other's record.
    """
    import optuna

    from moesearch import results, study

    records = any(results.trials_dir(settings.results, settings.study).glob("trial-*.parquet"))
    clash = InputError(f"--results: {str(settings.results)!r} holds records of a study {settings.study!r} that is "
                       f"not in --storage {study.redact(settings.storage)!r}; give another --results or --study")
    if records and _new_sqlite_file(settings.storage):
        raise clash  # before opening: that would create the file
    if not explicit:
        settings.results.mkdir(parents=True, exist_ok=True)
    storage = study.open_storage(settings.storage)
    if records and settings.study not in optuna.get_all_study_names(storage):
        raise clash
    return storage


def _new_sqlite_file(url: str) -> bool:
    return url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///").split("?")[0]).exists()
