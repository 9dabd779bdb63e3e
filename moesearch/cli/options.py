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
from moesearch.launch import LAUNCHERS, Launch
from moesearch.settings import Settings
from moesearch.space import STUDY_NAME, Space

DEFAULT_RESULTS = Path("results")
DRY_RUN = click.option("--dry-run", is_flag=True, help="Check every input, print the plan and exit: nothing is written or started.")


def group_options(command):
    """The flags that shape a worker group: ranks per node, nodes, rendezvous, launcher."""
    decorators = [
        click.option("--nproc", type=click.IntRange(min=1), help="Ranks per node [default: one per GPU, else 2]."),
        click.option("--nnodes", type=click.IntRange(min=1),
                     help="Nodes in one worker group; this process runs node 0, `moesearch node` the others "
                          "[default: 1, or the hostfile's hosts]."),
        click.option("--master-addr", help="Node 0's address as the other nodes reach it (with --nnodes > 1) "
                                           "[default: 127.0.0.1, or the hostfile's first host]."),
        click.option("--master-port", type=click.IntRange(1, 65535),
                     help="Rendezvous port on node 0 [default: 29500 across torchrun nodes, else a free port]."),
        click.option("--launcher", type=click.Choice(LAUNCHERS), default="torchrun", show_default=True,
                     help="What starts the ranks."),
        click.option("--hostfile", type=click.Path(path_type=Path),
                     help="DeepSpeed hostfile ('host slots=N' lines; with --launcher deepspeed). Run on its first host."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def run_options(command):
    """The flags of every command that trains a space (search, train, verify)."""
    decorators = [
        click.argument("space", default="default"),
        click.option("--storage", help="Optuna storage URL (sqlite:///, postgresql://, journal:PATH) [default: sqlite file in the results folder]."),
        click.option("--study", "study_name", help="Study name [default: the space's name]."),
        click.option("--results", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True,
                     help="Folder for Parquet records and logs (shared by every machine of the study)."),
        click.option("--data", help="Training text: a file, a folder or a glob [default: the Python standard library's source]."),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Training seed of every trial (and the sampler's)."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
        DRY_RUN,
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return group_options(command)


def resolve(space: str | Space, storage: str | None, study_name: str | None, results: Path, data: str | None,
            seed: int, progress: bool, dry_run: bool = False, **group) -> Settings:
    """Validate every input; returns Settings or raises InputError naming the culprit."""
    spec = space_mod.load(space) if isinstance(space, str) else space
    launch = resolve_launch(**group)
    spec.ep_size(launch.world_size)
    if spec.train.eval_sequences % launch.world_size:
        raise InputError(f"--nproc {launch.nproc}: {launch.world_size} ranks in all must divide train.eval_sequences "
                         f"({spec.train.eval_sequences}) so every rank evaluates the same held-out tokens")
    data = os.path.abspath(data) if data else None  # recorded with the study: workers start elsewhere
    text = corpus.load(data)
    text.check_fits(spec.model.seq_len)
    results = results.resolve()
    _check_writable(results)
    if study_name is not None and not re.fullmatch(STUDY_NAME, study_name):
        raise InputError(f"--study: {study_name!r} is not a plain name; allowed: letters, digits, '_', '.', '-'")
    return Settings(space=spec, study=study_name or spec.name, storage=storage or f"sqlite:///{results / 'moesearch.db'}",
                    results=results, launch=launch, seed=seed, data=data, data_sha256=text.sha256, progress=progress)


def resolve_launch(nproc: int | None, nnodes: int | None, master_addr: str | None, master_port: int | None, launcher: str,
                   hostfile: Path | None) -> Launch:
    """The worker group's shape from its flags; InputError for combinations that cannot start.

    With a hostfile, nodes, ranks per node and node 0's address default to its hosts, its first
    host's slots and its first host.
    """
    hosts: list[tuple[str, int]] = []
    if hostfile is not None:
        if launcher != "deepspeed":
            raise InputError(f"--hostfile {str(hostfile)!r}: only with --launcher deepspeed (torchrun takes --nnodes "
                             "and --master-addr, one `moesearch node` per other node)")
        hosts = _hosts(hostfile)
        if nnodes and nnodes > len(hosts):
            raise InputError(f"--nnodes {nnodes}: --hostfile {str(hostfile)!r} names only {len(hosts)} hosts")
    elif launcher == "deepspeed" and nnodes and nnodes > 1:
        raise InputError(f"--nnodes {nnodes}: --launcher deepspeed reaches other nodes through --hostfile; give one")
    return Launch(nproc=nproc or (hosts[0][1] if hosts else _default_nproc()), nnodes=nnodes or max(len(hosts), 1),
                  master_addr=master_addr or (hosts[0][0] if hosts else "127.0.0.1"), master_port=master_port,
                  launcher=launcher, hostfile=hostfile.resolve() if hostfile else None)


def _hosts(hostfile: Path) -> list[tuple[str, int]]:
    """(host, slots) per line of a DeepSpeed hostfile."""
    if not hostfile.is_file():
        raise InputError(f"--hostfile: {str(hostfile)!r} is not a file")
    lines = [line.split("#")[0].strip() for line in hostfile.read_text().splitlines()]
    hosts = []
    for line in filter(None, lines):
        if not (match := re.fullmatch(r"(\S+)\s+slots=([1-9]\d*)", line)):
            raise InputError(f"--hostfile {str(hostfile)!r}: bad line {line!r}; allowed: 'hostname slots=N' lines, N >= 1")
        if any(host == match[1] for host, _ in hosts):
            raise InputError(f"--hostfile {str(hostfile)!r}: {match[1]!r} is named twice; allowed: each host once")
        hosts.append((match[1], int(match[2])))
    if not hosts:
        raise InputError(f"--hostfile {str(hostfile)!r}: names no host; allowed: 'hostname slots=N' lines")
    return hosts


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
            f"{settings.launch.describe()}, ep_size {settings.space.ep_size(settings.launch.world_size)} | "
            f"seed {settings.seed} | records in {settings.results}")


def dry_run(settings: Settings, what: str) -> None:
    """Print the plan of a --dry-run and stop the command (exit 0): nothing was opened or written."""
    check_storage_url(settings.storage)
    click.echo(f"plan: {describe(settings)} | {what}")
    raise SystemExit(0)


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


def check_storage_url(url: str) -> str:
    """The URL, password hidden, if its form is one Optuna can open; InputError otherwise. Opens nothing."""
    from moesearch.study import redact

    if url.startswith("journal:") and url.removeprefix("journal:"):
        return url
    if "://" not in url:
        raise InputError(f"--storage: {redact(url)!r} is not a storage URL; allowed: {_suggest(url)}")
    try:
        from sqlalchemy.engine import make_url

        make_url(url)
    except Exception:
        raise InputError(f"--storage: {redact(url)!r} is not a storage URL; allowed: sqlite:///file.db, "
                         "postgresql://user@host/db or journal:/shared/path.log") from None
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


def open_existing_storage(url: str):
    """Open a storage that must exist already: a missing sqlite or journal file is an error, not created."""
    from moesearch import study

    check_exists(url)
    return study.open_storage(url)


def check_exists(url: str) -> None:
    """A sqlite or journal storage file must be there (opening one would create it); servers are not asked."""
    if (file := _storage_file(url)) and not file.is_file():
        raise InputError(f"--storage: {url!r} does not exist; allowed: the storage a search wrote to")


def _new_sqlite_file(url: str) -> bool:
    return url.startswith("sqlite:///") and not _storage_file(url).exists()


def _storage_file(url: str) -> Path | None:
    """The file behind a sqlite or journal storage URL; None for a database server."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?")[0])
    return Path(url.removeprefix("journal:")) if url.startswith("journal:") else None
