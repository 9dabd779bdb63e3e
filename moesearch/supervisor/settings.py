"""Settings: what every trial of one `search`, `train`, `verify` or `worker` invocation shares, and
their resolution from the command's inputs.

Everything is checked before anything is written: a bad space, flag, data path, results folder or
group shape raises InputError naming the flag, and the command exits 2 leaving no file behind.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from moesearch.core import corpus
from moesearch.core import space as space_mod
from moesearch.core.errors import InputError
from moesearch.core.files import DEFAULT_RESULTS  # noqa: F401 - re-exported: the default of every --results
from moesearch.core.launch import Launch
from moesearch.core.sections import STUDY_NAME
from moesearch.core.space import Space
from moesearch.supervisor import devices


@dataclass(frozen=True)
class Settings:
    """What every trial of one invocation shares (resolved and validated by the CLI)."""

    space: Space
    study: str
    storage: str
    results: Path
    launch: Launch
    seed: int
    data: str | None
    data_sha256: str | None  # of what the ranks read: text or token files, or --tokenizer's (None: not yet made)
    progress: bool = True
    monitor: tuple[str, ...] = ()  # DeepSpeed monitors every trial logs to live: "tensorboard", "csv", "wandb"
    tokenizer: str | None = None  # the text is trained as this tokenizer's tokens
    tokens: str | None = None  # where those tokens are (`core/tokenize.py`)

    @property
    def read(self) -> str | None:
        """What the ranks read: the tokenized text's token file, else --data (None: the default text)."""
        return self.tokens or self.data

    @property
    def shape(self) -> dict[str, int]:
        """What a group's shape changes in a training: its ranks (tokens per step are micro_batch x seq_len x
        ranks) and the expert layout. A study compares trainings of one shape only (`study.open_study`)."""
        world = self.launch.world_size
        return {
            "ranks": world,
            "ep_size": self.space.ep_size(world, self.launch.nproc),
            "tokens_per_step": self.space.train.micro_batch * self.space.model.seq_len * world,
        }

    @property
    def monitor_dir(self) -> Path:
        """One run per trial under here: results/<study>/monitor/<kind>/trial-NNNNNN_<assignment>_seed<S>."""
        return self.results / self.study / "monitor"


def resolve(
    space: str | Space,
    storage: str | None,
    study_name: str | None,
    results: Path,
    data: str | None,
    seed: int,
    progress: bool,
    dry_run: bool = False,
    monitor: tuple[str, ...] = (),
    tokenizer: str | None = None,
    **group,
) -> Settings:
    """Validate every input; returns Settings or raises InputError naming the culprit."""
    spec = space_mod.load(space) if isinstance(space, str) else space
    if spec.model.builder != space_mod.SHIPPED_BUILDER:  # a model of one's own: found here, not on every rank
        from moesearch.core.builders import BuilderError, load  # imports the model's module (torch)

        try:
            load(spec.model.builder)
        except BuilderError as e:
            raise InputError(str(e)) from None
    launch = resolve_launch(**group)
    spec.ep_size(launch.world_size, launch.nproc)
    if spec.train.eval_sequences % launch.world_size:
        raise InputError(
            f"--nproc {launch.nproc}: {launch.world_size} ranks in all must divide train.eval_sequences "
            f"({spec.train.eval_sequences}) so every rank evaluates the same held-out tokens"
        )
    data = os.path.abspath(data) if data else None  # recorded with the study: workers start elsewhere
    results = results.resolve()
    _check_writable(results)
    if study_name is not None and not re.fullmatch(STUDY_NAME, study_name):
        raise InputError(f"--study: {study_name!r} is not a plain name; allowed: letters, digits, '_', '.', '-'")
    monitor = _check_monitor(monitor)
    tokens, vocab = None, None
    if tokenizer:  # last: tokenizing a large text takes a while, and every other input is checked by then
        from moesearch.core import tokenize

        tokenizer = os.path.abspath(tokenizer)
        if data and any(corpus.token_file(p) for p in corpus.files(data)):
            raise InputError(f"--tokenizer: --data {data} holds token files already; allowed: text with a tokenizer")
        loaded = tokenize.load(tokenizer)
        vocab = loaded.vocab
        spec.with_vocab(vocab)  # a refusal writes no tokens
        tokens = str(tokenize.tokenized(data, loaded, results / "tokens", dry_run=dry_run))
    if tokens and not Path(tokens).is_file():  # a --dry-run does not tokenize: the text is checked instead
        text, sha256 = corpus.load(data), None
    else:
        text = corpus.load(tokens or data)
        sha256 = text.sha256
    text.check_fits(spec.model.seq_len)
    spec = spec.with_vocab(max(text.vocab_size, vocab or 0))
    return Settings(
        space=spec,
        study=study_name or spec.name,
        storage=storage or f"sqlite:///{results / 'moesearch.db'}",
        results=results,
        launch=launch,
        seed=seed,
        data=data,
        data_sha256=sha256,
        progress=progress,
        monitor=monitor,
        tokenizer=tokenizer,
        tokens=tokens,
    )


MONITORS = ("tensorboard", "csv", "wandb")
_EXTRAS = {"tensorboard": "monitor", "wandb": "wandb"}  # the package each monitor needs, from this extra


def _check_monitor(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The monitors asked for, each available here; InputError naming --monitor otherwise."""
    import importlib.util

    for kind in kinds:
        if kind in _EXTRAS and importlib.util.find_spec(kind) is None:
            raise InputError(
                f"--monitor {kind}: the {kind} package is not installed; install it with "
                f"`pip install -e '.[{_EXTRAS[kind]}]'`, or use --monitor csv"
            )
        if kind == "wandb" and not _wandb_can_log():
            raise InputError(
                "--monitor wandb: not logged in to Weights & Biases (no WANDB_API_KEY, no `wandb login`); allowed: "
                "log in, or WANDB_MODE=offline to keep the runs on disk (`wandb sync` uploads them later)"
            )
    return tuple(dict.fromkeys(kinds))


def _wandb_can_log() -> bool:
    """Whether a rank's run can start without asking: offline or disabled, a key or identity token given, or a
    key stored by `wandb login` (in ~/.netrc, for WANDB_BASE_URL's host, with its port or without). The ranks
    have no terminal to ask on."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return True
    if os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        found = netrc.netrc(os.environ.get("NETRC"))
    except (OSError, netrc.NetrcParseError):
        return False
    return any(found.authenticators(host) is not None for host in {url.netloc, url.hostname} if host)


def resolve_launch(
    nproc: int | None,
    nnodes: int | None,
    master_addr: str | None,
    master_port: int | None,
    launcher: str,
    hostfile: Path | None,
) -> Launch:
    """The worker group's shape from its flags; InputError for combinations that cannot start.

    With a hostfile, nodes, ranks per node and node 0's address default to its hosts, its first
    host's slots and its first host.
    """
    hosts: list[tuple[str, int]] = []
    if hostfile is not None:
        if launcher != "deepspeed":
            raise InputError(
                f"--hostfile {str(hostfile)!r}: only with --launcher deepspeed (torchrun takes --nnodes "
                "and --master-addr, one `moesearch node` per other node)"
            )
        hosts = _hosts(hostfile)
        if nnodes and nnodes > len(hosts):
            raise InputError(f"--nnodes {nnodes}: --hostfile {str(hostfile)!r} names only {len(hosts)} hosts")
    elif launcher == "deepspeed" and nnodes and nnodes > 1:
        raise InputError(f"--nnodes {nnodes}: --launcher deepspeed reaches other nodes through --hostfile; give one")
    gpus = _visible_gpus()
    if gpus and launcher == "deepspeed" and os.environ.get("CUDA_VISIBLE_DEVICES"):
        raise InputError(  # its runner drops the variable and takes devices 0 .. --num_gpus-1
            f"--launcher deepspeed: CUDA_VISIBLE_DEVICES is set ({os.environ['CUDA_VISIBLE_DEVICES']}), which "
            "the DeepSpeed launcher ignores (it uses devices 0 and up); allowed: unset it, or --launcher torchrun"
        )
    nproc = nproc or (hosts[0][1] if hosts else len(gpus) or 2)  # one rank per GPU, else two gloo ranks
    # Each group its own GPUs. The DeepSpeed launcher picks devices itself (0 .. --num_gpus-1): its group
    # holds the whole node.
    leased = devices.reserve(gpus, len(gpus) if launcher == "deepspeed" else nproc)
    return Launch(
        nproc=nproc,
        nnodes=nnodes or max(len(hosts), 1),
        master_addr=master_addr or (hosts[0][0] if hosts else "127.0.0.1"),
        master_port=master_port,
        launcher=launcher,
        hostfile=hostfile.resolve() if hostfile else None,
        gpus=leased.gpus if launcher == "torchrun" else (),
    )


def _hosts(hostfile: Path) -> list[tuple[str, int]]:
    """(host, slots) per line of a DeepSpeed hostfile."""
    if not hostfile.is_file():
        raise InputError(f"--hostfile: {str(hostfile)!r} is not a file")
    lines = [line.split("#")[0].strip() for line in hostfile.read_text().splitlines()]
    hosts = []
    for line in filter(None, lines):
        if not (match := re.fullmatch(r"(\S+)\s+slots=([1-9]\d*)", line)):
            raise InputError(
                f"--hostfile {str(hostfile)!r}: bad line {line!r}; allowed: 'hostname slots=N' lines, N >= 1"
            )
        if any(host == match[1] for host, _ in hosts):
            raise InputError(f"--hostfile {str(hostfile)!r}: {match[1]!r} is named twice; allowed: each host once")
        hosts.append((match[1], int(match[2])))
    if not hosts:
        raise InputError(f"--hostfile {str(hostfile)!r}: names no host; allowed: 'hostname slots=N' lines")
    return hosts


def _visible_gpus() -> tuple[str, ...]:
    """This process's visible GPUs by UUID (CUDA_VISIBLE_DEVICES names devices by it too); none where the
    ranks will not use them (DS_ACCELERATOR set to another accelerator: the CPU tests on a GPU machine)."""
    if os.environ.get("DS_ACCELERATOR", "cuda") != "cuda" or shutil.which("nvidia-smi") is None:
        return ()  # no NVIDIA driver here: torch need not be imported to say so
    import torch  # only here, and the one torch import outside the ranks (.importlinter says why)

    return tuple(_uuid(torch.cuda.get_device_properties(i), i) for i in range(torch.cuda.device_count()))


def _uuid(props, index: int) -> str:
    """'GPU-<uuid>' as CUDA_VISIBLE_DEVICES takes it, 'MIG-<uuid>' for a MIG instance (whose name CUDA gives
    as '<GPU> MIG <profile>'); the index where this torch does not report one."""
    uuid = getattr(props, "uuid", None)
    if uuid is None:
        return str(index)
    return f"{'MIG' if ' MIG ' in f'{props.name} ' else 'GPU'}-{uuid}"


def _check_writable(folder: Path) -> None:
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--results: {str(folder)!r} cannot be written ({existing} is not a writable folder)")
