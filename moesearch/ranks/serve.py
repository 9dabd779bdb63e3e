"""The worker group: every rank runs this, started by torchrun; it trains trial after trial.

Rank 0 holds the link to the supervising process (`group.py`): it receives each trial's RunConfig,
broadcasts it to the other ranks, and sends back progress and metrics. The process group stays up
across trials (re-initialising an engine costs 0.05-0.4 s here; a relaunch about 7 s). A failure
that every rank reaches together (TrialFailed) is reported and the group goes on; anything else
ends this process, torchrun tears the group down, and the supervisor starts a fresh one.

    python -m torch.distributed.run --nproc-per-node 2 -m moesearch.ranks.serve   (the supervisor does this)
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from multiprocessing.connection import Client, Connection

from moesearch.core import preempt
from moesearch.core.launch import (
    ADDRESS_ENV,
    AUTHKEY_ENV,
    COLLECTIVE_MARGIN_S,
    COLLECTIVE_TIMEOUT_ENV,
    TIMEOUTS_DISAGREE,
)
from moesearch.core.protocol import Done, Failed, Pruned, Ready, Rung, Shutdown, Step, Stop, Task, Verdict


def init_rank() -> None:
    """Join the process group torchrun started, on the GPU if there is one (gloo on CPUs)."""
    if "DS_ACCELERATOR" not in os.environ:
        import torch  # here, not at the top: only to ask whether a GPU is there

        os.environ["DS_ACCELERATOR"] = "cuda" if torch.cuda.is_available() else "cpu"
    warnings.filterwarnings("ignore", category=UserWarning, module="deepspeed")
    import deepspeed

    from moesearch.ranks.deepspeed_compat import skip_inference_comm_op

    skip_inference_comm_op()  # saves a ~30 s JIT build (and the need for a compiler)
    deepspeed.init_distributed(timeout=collective_timeout())  # also how long idle ranks wait for a trial
    _pin_device()
    _check_timeouts_agree()


def _check_timeouts_agree() -> None:
    """Every rank must give up a collective after the same time: a node whose ranks gave up sooner would leave
    the group while node 0 still counts it alive, and one that held on longer would outlast node 0's retries.
    Across nodes each `moesearch node` sets its own (--trial-timeout); a mismatch stops the group at once,
    saying what to give."""
    import torch.distributed as dist

    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, collective_timeout().total_seconds())
    if len(set(everyone)) > 1:
        node0 = everyone[0] - COLLECTIVE_MARGIN_S
        raise SystemExit(
            f"moesearch: the group's ranks {TIMEOUTS_DISAGREE} "
            f"({', '.join(f'{t:g} s' for t in sorted(set(everyone)))}): give every `moesearch node` "
            f"--trial-timeout {node0:g}, the search.timeout_s node 0 trains with"
        )


def collective_timeout() -> timedelta:
    """The process group's timeout, from the supervisor (`core/launch.rank_env`): the trial's plus a margin;
    2 h for ranks started by hand."""
    return timedelta(seconds=float(os.environ.get(COLLECTIVE_TIMEOUT_ENV, 7200)))


def main() -> None:
    import torch.distributed as dist

    init_rank()
    preempt.install()  # SLURM may signal every rank directly; they stop together at a step boundary
    link = _connect() if dist.get_rank() == 0 else None
    if link:
        link.send(Ready(_hardware()))
    _serve(link)


def _serve(link: Connection | None) -> None:
    import torch.distributed as dist

    from moesearch.core import corpus as corpus_mod
    from moesearch.core.config import RunConfig
    from moesearch.ranks.train import TrialFailed, TrialPruned, train_trial

    corpora: dict[str | None, corpus_mod.Corpus] = {}
    while isinstance(task := _next_task(link), Task):
        cfg = RunConfig.model_validate_json(task.config)
        if link:  # a header in the group's log, so a failure's tail says which trial it was
            print(f"moesearch: trial {task.trial} [{cfg.assignment}]", flush=True)
        if cfg.data not in corpora:
            corpora[cfg.data] = corpus_mod.load(cfg.data, counted=False)  # the supervisor counted it
        on_step = (lambda step, loss, val_loss: link.send(Step(step, loss, val_loss))) if link else None
        ask_rung = (lambda step, metrics: _ask(link, Rung(step, metrics))) if link else None
        try:
            reply: Done | Failed | Pruned = train_trial(
                cfg, corpora[cfg.data], on_step, lambda: _stop_asked(link), ask_rung, trial=task.trial
            )
        except TrialFailed as e:
            reply = Failed(str(e), e.steps, e.preempted)
        except TrialPruned as e:
            reply = Pruned(str(e), e.step, e.metrics, e.steps)
        if link:
            link.send(reply)
        if isinstance(reply, Failed) and reply.preempted:
            break  # the job is going away: the supervisor records the trial and exits
    dist.barrier()


_stops: list[Stop] = []  # a Stop that came while rank 0 waited for a Verdict, for the next step boundary


def _stop_asked(link: Connection | None) -> str | None:
    """A signal caught by this rank, or (rank 0) the supervisor's Stop, which only comes mid-trial."""
    if link and (_stops or link.poll()):
        stop: Stop = _stops.pop() if _stops else link.recv()
        return stop.signal
    return preempt.requested()


def _ask(link: Connection, rung: Rung) -> Verdict:
    """Rank 0 sends the rung's metrics and waits for the supervisor's verdict (the other ranks wait in
    the all-reduce that carries it)."""
    link.send(rung)
    while isinstance(msg := link.recv(), Stop):
        _stops.append(msg)
    return msg


def _next_task(link: Connection | None) -> Task | Shutdown:
    """Rank 0 receives the next task and every rank gets a copy."""
    import torch.distributed as dist

    box = [_recv_task(link) if link else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _recv_task(link: Connection) -> Task | Shutdown:
    """The next task; a Stop that came after the trial's last step is stale (the trial had ended)."""
    _stops.clear()
    while isinstance(msg := link.recv(), Stop):
        pass
    return msg


def _connect() -> Connection:
    host, port = os.environ[ADDRESS_ENV].rsplit(":", 1)
    return Client((host, int(port)), authkey=bytes.fromhex(os.environ[AUTHKEY_ENV]))


def _pin_device() -> None:
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cuda":
        get_accelerator().set_device(int(os.environ.get("LOCAL_RANK", 0)))


def _hardware() -> dict:
    import torch
    import torch.distributed as dist
    from deepspeed.accelerator import get_accelerator

    gpu = get_accelerator().device_name() == "cuda"
    return {
        "device_kind": torch.cuda.get_device_name() if gpu else "cpu",
        "device_count": torch.cuda.device_count() if gpu else 1,
        "world_size": dist.get_world_size(),
    }


if __name__ == "__main__":
    main()
