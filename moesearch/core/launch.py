"""How a worker group's ranks are started: the launcher command for one node of the group.

Light (stdlib only). Node 0 of a group runs the supervisor, and its launcher is started by it
(`group.py`); every other node runs `moesearch node`, which starts the same launcher with its own
node rank. Static rendezvous (`--master-addr`, `--node-rank`) puts global rank 0 on node 0, beside
the supervisor, so rank 0's link to it never leaves the machine.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

LAUNCHERS = ("torchrun", "deepspeed")
SERVE_MODULE = "moesearch.ranks.serve"
# rank 0 finds the supervisor's link through these (`supervisor.group` sets them, `ranks.serve` reads them)
ADDRESS_ENV, AUTHKEY_ENV = "MOESEARCH_SUPERVISOR", "MOESEARCH_AUTHKEY"
COLLECTIVE_TIMEOUT_ENV = "MOESEARCH_COLLECTIVE_TIMEOUT_S"  # read by every rank (`ranks/serve.py`)
COLLECTIVE_MARGIN_S = 300  # a collective may outlast the trial's timeout by this much before its rank gives up
TIMEOUTS_DISAGREE = "would give up a collective after different times"  # ranks' words; the supervisor's cue


def rank_env(trial_timeout_s: float) -> dict[str, str]:
    """What every rank of a group needs in its environment, on every node: a collective that fails or outlasts
    the trial tears its rank down (NCCL's async error handling, and the process group's timeout set to the
    trial's plus a margin), so ranks whose peer died free their GPUs and rejoin instead of hanging for hours."""
    return {
        # 3: tear the process down on a collective's error or timeout, without ncclCommAbort (which may itself
        # hang on a dead peer); torch's own default from 2.2, stated for the versions and launchers that differ
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "3",
        COLLECTIVE_TIMEOUT_ENV: f"{trial_timeout_s + COLLECTIVE_MARGIN_S:g}",
    }


@dataclass(frozen=True)
class Launch:
    """The shape of a worker group and how its ranks start."""

    nproc: int
    """Ranks per node (one per GPU on a GPU node)."""
    nnodes: int = 1
    """Nodes in the group; node 0 hosts the supervisor and global rank 0."""
    master_addr: str = "127.0.0.1"
    """Node 0's address, reachable from every node of the group."""
    master_port: int | None = None
    """The rendezvous port on node 0; None: 29500 (torchrun's) across nodes, else a free one at each start."""
    launcher: str = "torchrun"
    """torchrun, or the DeepSpeed launcher (`deepspeed`, which reaches other hosts through a hostfile)."""
    hostfile: Path | None = None
    """A DeepSpeed hostfile ("host slots=N" lines); its first host runs the supervisor."""
    join_timeout_s: int = 600
    """How long a node waits for the others to join the group (torchrun's static rendezvous default)."""
    gpus: tuple[str, ...] = ()
    """This node's GPUs leased to the group, by UUID (`supervisor/devices.py`); empty: its ranks run on CPU."""

    def visible(self) -> dict[str, str]:
        """The launcher's environment for exactly the leased GPUs (none leased: unchanged)."""
        return {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)} if self.gpus else {}

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    def command(self, node_rank: int = 0) -> list[str]:
        """The launcher command line that starts this node's ranks of the group."""
        if self.launcher == "deepspeed":  # one command on node 0 starts every host of the hostfile and tells the port
            hosts = ["--hostfile", str(self.hostfile)] if self.hostfile else []
            # this interpreter's DeepSpeed, not a `deepspeed` first on PATH (its hosts run the same path)
            return [
                sys.executable,
                "-m",
                "deepspeed.launcher.runner",
                *hosts,
                f"--num_nodes={self.nnodes}",
                f"--num_gpus={self.nproc}",
                f"--master_addr={self.master_addr}",
                f"--master_port={self.master_port or _free_port()}",
                "--no_local_rank",
                "--module",
                SERVE_MODULE,
            ]
        if self.nnodes == 1:
            rendezvous = ["--standalone"]  # a free port of its own: groups on one machine never clash
        else:  # every node must name the same port
            rendezvous = [
                f"--nnodes={self.nnodes}",
                f"--node-rank={node_rank}",
                f"--master-addr={self.master_addr}",
                f"--master-port={self.master_port or 29500}",
                f"--rdzv-conf=timeout={self.join_timeout_s}",
            ]
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *rendezvous,
            f"--nproc-per-node={self.nproc}",
            "-m",
            SERVE_MODULE,
        ]

    def describe(self) -> str:
        port = self.master_port or 29500
        nodes = f" x {self.nnodes} nodes (rendezvous {self.master_addr}:{port})" if self.nnodes > 1 else ""
        gpus = f" on {len(self.gpus)} leased GPUs" if self.gpus else ""
        return f"{self.nproc} ranks{nodes} by {self.launcher}{gpus}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
