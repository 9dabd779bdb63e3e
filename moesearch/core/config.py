"""RunConfig: everything one trial needs, built from the space and the trial's assignment.

It crosses from the supervisor to every rank as JSON and is stored whole with each trial's record.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from moesearch.core.assignment import Assignment
from moesearch.core.sections import ModelSpec, TrainSpec
from moesearch.core.space import Space


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSpec
    train: TrainSpec
    layers: tuple[str, ...]
    """One activation per transformer block."""
    seed: int
    """Seeds initialisation, routing noise and batch order; the same on every rank."""
    data: str | None
    """The user's corpus (file, folder or glob); None: the Python standard library's source."""
    ep_size: int
    """Expert-parallel ranks per MoE layer."""
    rungs: tuple[int, ...] = ()
    """Steps at which rank 0 asks the supervisor whether to go on (search.pruning); empty: train to the end."""
    monitor: tuple[str, ...] = ()
    """DeepSpeed monitors to log the trial to, live ("tensorboard", "csv", "wandb"); empty: none."""
    monitor_dir: str | None = None
    """Where the monitors write, one run per trial."""
    monitor_group: str | None = None
    """What groups the trial's runs in the monitors that group (wandb: the study)."""

    @classmethod
    def build(
        cls,
        space: Space,
        layers: list[str],
        seed: int,
        data: str | None,
        world_size: int,
        node_ranks: int | None = None,
        rungs: bool = False,
        monitor: tuple[str, ...] = (),
        monitor_dir: str | None = None,
        monitor_group: str | None = None,
    ) -> RunConfig:
        """node_ranks: ranks on each node (default: all on one), which bound the default ep_size.
        rungs: rank 0 reports the trial at the space's rungs (search.pruning), where it may be stopped."""
        pruning = space.search.pruning
        return cls(
            model=space.model,
            train=space.train,
            layers=tuple(layers),
            seed=seed,
            data=data,
            ep_size=space.ep_size(world_size, node_ranks),
            rungs=tuple(pruning.rungs) if rungs and pruning.method != "none" else (),
            monitor=monitor,
            monitor_dir=monitor_dir,
            monitor_group=monitor_group,
        )

    @property
    def assignment(self) -> str:
        """The assignment as one string, the form --layers takes: 'gelu,swiglu,...'."""
        return Assignment(self.layers).text
