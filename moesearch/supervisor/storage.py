"""Study storage: open an Optuna storage URL, check one without opening it, mask its password.

Light: optuna and sqlalchemy, imported only to open a storage (the checks answer without them). One storage
per study: SQLite (`sqlite:///file.db`, one machine), Optuna's journal file (`journal:/shared/path.log`, a
few groups on a shared filesystem) or PostgreSQL (`postgresql://user@host/db`, many groups). Opening a
sqlite or journal URL creates its file, so the checks here come first wherever nothing may be written.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING

from moesearch.core.errors import InputError

if TYPE_CHECKING:  # optuna takes a while to import: a bad --storage is answered without it
    import optuna

_SECRETS = [
    (re.compile(r"(://[^/@:]*:)[^@]*@"), r"\1***@"),  # user:password@host
    (re.compile(r"(password=)[^&]*", re.IGNORECASE), r"\1***"),
]  # ?password=... in the query


def redact(url: str) -> str:
    """The storage URL with any password masked, for messages and records; also when the URL is malformed."""
    for pattern, mask in _SECRETS:
        url = pattern.sub(mask, url)
    return url


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite:///, postgresql://, mysql://) or journal:PATH (a file on a shared filesystem)."""
    import optuna

    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
        if url.startswith(("postgresql://", "postgres://")):  # the driver moesearch installs, whatever the default
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return optuna.storages.RDBStorage(url)
    except Exception as e:  # optuna raises several types; all mean the same to the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"--storage: cannot open {redact(url)!r}: {first}; allowed: an Optuna RDB URL "
            f"(sqlite:///file.db, postgresql://user@host/db) or journal:/shared/path.log"
        ) from None


def open_for(settings, explicit: bool) -> optuna.storages.BaseStorage:
    """Open the study storage; the default SQLite file lives in the results folder, created here.

    Records of this study in the results folder must belong to this storage: otherwise two studies
    would share trial numbers, and one would overwrite the other's record.
    """
    from moesearch.core import results

    records = results.has_records(settings.results, settings.study)
    clash = InputError(
        f"--results: {str(settings.results)!r} holds records of a study {settings.study!r} that is "
        f"not in --storage {redact(settings.storage)!r}; give another --results or --study"
    )
    check_url(settings.storage)  # before any folder is made for it
    if records and _new_sqlite_file(settings.storage):
        raise clash  # before opening: that would create the file
    if not explicit:
        settings.results.mkdir(parents=True, exist_ok=True)
    if (file := file_of(settings.storage)) is not None:
        file.parent.mkdir(parents=True, exist_ok=True)  # as --results is: a new study's file may start its folder
    storage = open_storage(settings.storage)
    import optuna

    if records and settings.study not in optuna.get_all_study_names(storage):
        raise clash
    return storage


def check_url(url: str) -> str:
    """The URL, password hidden, if its form is one Optuna can open; InputError otherwise. Opens nothing."""
    if url.startswith(("journal:", "sqlite:///")) and (url.endswith("/") or file_of(url).is_dir()):
        raise InputError(
            f"--storage: {redact(url)!r} names a folder; allowed: a file in it (journal:DIR/study.log, sqlite:///DIR/study.db)"
        )
    if url.startswith("journal:") and url.removeprefix("journal:"):
        return url
    if "://" not in url:
        raise InputError(f"--storage: {redact(url)!r} is not a storage URL; allowed: {_suggest(url)}")
    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg") is None:
        raise InputError(
            f"--storage {redact(url)!r}: the PostgreSQL driver (psycopg) is not installed; install it with "
            "`pip install -e '.[postgres]'`"
        )
    try:
        from sqlalchemy.engine import make_url

        make_url(url)
    except Exception:
        raise InputError(
            f"--storage: {redact(url)!r} is not a storage URL; allowed: sqlite:///file.db, "
            "postgresql://user@host/db or journal:/shared/path.log"
        ) from None
    return redact(url)


def _suggest(url: str) -> str:
    """What to write instead of a storage URL without '://': a path gets its two likely URLs, a
    scheme with too few slashes ('sqlite:/x.db') its own corrected form, never 'journal:sqlite:...'."""
    scheme, sep, rest = url.partition(":")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) and scheme.lower() != "journal":
        if scheme.lower().startswith("sqlite"):
            return f"sqlite:///{rest.lstrip('/')} (three slashes, then the file's path)"
        return f"{scheme}://user@host/db (a database server), sqlite:///file.db or journal:PATH"
    return f"sqlite:///{url} for a SQLite file, journal:{url} for a journal file, or postgresql://user@host/db"


def open_existing(url: str):
    """Open a storage that must exist already: a missing sqlite or journal file is an error, not created."""
    check_exists(url)
    return open_storage(url)


def check_exists(url: str) -> None:
    """A sqlite or journal storage file must be there (opening one would create it); servers are not asked."""
    if (file := file_of(url)) and not file.is_file():
        raise InputError(f"--storage: {url!r} does not exist; allowed: the storage a search wrote to")


def _new_sqlite_file(url: str) -> bool:
    return url.startswith("sqlite:///") and not file_of(url).exists()


def file_of(url: str) -> Path | None:
    """The file behind a sqlite or journal storage URL; None for a database server."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?")[0])
    return Path(url.removeprefix("journal:")) if url.startswith("journal:") else None
