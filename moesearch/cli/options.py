"""The flags shared by the training commands (search, train, verify, worker, node); `settings.resolve`
turns them into validated Settings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from moesearch.core.files import DEFAULT_RESULTS
from moesearch.core.launch import LAUNCHERS

if TYPE_CHECKING:  # importing settings loads the space's models and numpy: not for --help or a bad flag
    from moesearch.supervisor.settings import Settings

MONITOR = click.option(
    "--monitor",
    type=click.Choice(["tensorboard", "csv", "wandb"]),
    multiple=True,
    help="Log every trial live through DeepSpeed's monitor (repeat for several): per step the steps table's "
    "curves (loss, aux loss, learning rate, step time, tokens, gradient norm); val_loss at each evaluation; the "
    "objectives at the end; one run per trial under RESULTS/STUDY/monitor/ (wandb: grouped by study, in "
    "WANDB_PROJECT [moesearch]; WANDB_MODE=offline keeps it on disk) [default: none].",
)
DRY_RUN = click.option(
    "--dry-run", is_flag=True, help="Check every input, print the plan and exit: nothing is written or started."
)


class Budget(click.ParamType):
    """A compute budget: optimizer steps ("20000") or device-hours ("2.5h": GPU-hours on GPUs)."""

    name = "STEPS|HOURSh"

    def convert(self, value, param, ctx) -> dict:
        if isinstance(value, dict):
            return value
        text = str(value).strip().lower()
        try:
            budget = {"device_h": float(text[:-1])} if text.endswith("h") else {"steps": int(text)}
        except ValueError:
            budget = None
        if not budget or not math.isfinite(amount := next(iter(budget.values()))) or amount <= 0:
            self.fail(
                f"{value!r} is not a budget; allowed: a positive number of steps (20000) or of device-hours (2.5h)",
                param,
                ctx,
            )
        return budget


BUDGET = click.option(
    "--budget",
    type=Budget(),
    help="Stop once the study's trials (every group's; pruned and failed ones count) have trained this much: "
    "optimizer steps (20000) or device-hours (2.5h, GPU-hours on GPUs); without --trials the budget alone "
    "bounds the search (or the space, once every assignment is evaluated); it stays with the study, for every "
    "group and every later run, until another --budget replaces it [default: the study's, else none].",
)


def group_options(command):
    """The flags that shape a worker group: ranks per node, nodes, rendezvous, launcher."""
    decorators = [
        click.option("--nproc", type=click.IntRange(min=1), help="Ranks per node [default: one per GPU, else 2]."),
        click.option(
            "--nnodes",
            type=click.IntRange(min=1),
            help="Nodes in one worker group; this process runs node 0, `moesearch node` the others "
            "[default: 1, or the hostfile's hosts].",
        ),
        click.option(
            "--master-addr",
            help="Node 0's address as the other nodes reach it (with --nnodes > 1) "
            "[default: 127.0.0.1, or the hostfile's first host].",
        ),
        click.option(
            "--master-port",
            type=click.IntRange(1, 65535),
            help="Rendezvous port on node 0 [default: 29500 across torchrun nodes, else a free port].",
        ),
        click.option(
            "--launcher",
            type=click.Choice(LAUNCHERS),
            default="torchrun",
            show_default=True,
            help="What starts the ranks.",
        ),
        click.option(
            "--hostfile",
            type=click.Path(path_type=Path),
            help="DeepSpeed hostfile ('host slots=N' lines; with --launcher deepspeed). Run on its first host.",
        ),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def run_options(command):
    """The flags of every command that trains a space (search, train, verify)."""
    decorators = [
        click.argument("space", default="default"),
        click.option(
            "--storage",
            help="Optuna storage URL (sqlite:///, postgresql://, journal:PATH) "
            "[default: sqlite file in the results folder].",
        ),
        click.option("--study", "study_name", help="Study name [default: the space's name]."),
        click.option(
            "--results",
            type=click.Path(path_type=Path),
            default=DEFAULT_RESULTS,
            show_default=True,
            help="Folder for Parquet records and logs (shared by every machine of the study).",
        ),
        click.option(
            "--data",
            help="Training text, or token files (.npy arrays, nanoGPT/modded-nanogpt .bin shards): a file, a folder "
            "or a glob [default: the Python standard library's source].",
        ),
        click.option(
            "--tokenizer",
            type=click.Path(dir_okay=False),
            help="A Hugging Face tokenizer.json: the text is trained as its tokens, tokenized once into "
            "RESULTS/tokens/ [default: the text's bytes].",
        ),
        click.option(
            "--seed",
            type=click.IntRange(0, 2**32 - 1),
            default=0,
            show_default=True,
            help="Training seed of every trial (and the sampler's).",
        ),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars."),
        MONITOR,
        DRY_RUN,
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return group_options(command)


def describe(settings: Settings) -> str:
    """The resolved plan in one line, printed before any training starts."""
    from moesearch.supervisor.storage import redact

    launch, space = settings.launch, settings.space
    line = (
        f"study {settings.study!r} in {redact(settings.storage)} | space {space.name} | "
        f"{launch.describe()}, ep_size {space.ep_size(launch.world_size, launch.nproc)} | "
        f"seed {settings.seed} | records in {settings.results}"
    )
    losses = [o for o in space.search.reference if o.startswith(("val_loss", "train_loss"))]
    if space.model.vocab != 256 and losses:  # the shipped spaces' loss references are bytes' losses
        line += (
            f"\nnote: vocabulary {space.model.vocab}, but search.reference sets {', '.join(losses)}, a loss level "
            "that depends on the tokens (the shipped spaces' are for bytes): set one for this data, or the "
            "hypervolume may stay 0"
        )
    return line


def dry_run(settings: Settings, what: str) -> None:
    """Print the plan of a --dry-run and stop the command (exit 0): nothing written. The study is checked as
    the real run checks it (space, text, evaluation, group shape) where the storage is a file that exists
    (SQLite, journal)."""
    from moesearch.supervisor import identity
    from moesearch.supervisor.storage import check_url, file_of, open_storage

    check_url(settings.storage)
    if (file := file_of(settings.storage)) is not None and file.is_file():  # a server is not asked
        identity.check_without_writing(open_storage(settings.storage), settings)
    click.echo(f"plan: {describe(settings)} | {what}")
    raise SystemExit(0)
