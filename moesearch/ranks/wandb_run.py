"""A trial's Weights & Biases run (`--monitor wandb`), on rank 0.

Not DeepSpeed's WandbMonitor: the engine logs its own `Train/Samples/*` scalars to every monitor at the
sample count, and wandb drops any row whose step is below one already logged, so the trial's per-step
curves would be lost behind them; nor does that monitor name, configure or finish a run. Here: one run per
trial, named like every monitor's (`train.run_name`), grouped by study, under RESULTS/STUDY/monitor/wandb;
its config the trial's assignment (and each layer's activation) and run config; its history the scalars the
trial writes to its monitors at the training step (the steps table's curves, val_loss at each evaluation);
its summary the trial's final metrics and outcome. wandb is imported only here, only when asked for (the
[wandb] extra); `WANDB_MODE=offline` keeps runs on disk (`wandb sync` uploads them later).
"""

from __future__ import annotations

import itertools
import os

from moesearch.core.config import RunConfig
from moesearch.core.trial import State

PROJECT = "moesearch"  # the W&B project unless WANDB_PROJECT names another
_run = None  # the open run: at most one, between `start` and `finish`


def start(cfg: RunConfig, trial: int, name: str) -> None:
    """Open the trial's run; a run that cannot start (the network, a revoked key) is said in the group's log
    and the trial trains untracked: a tracker's trouble is not the trial's result."""
    global _run
    import wandb

    layers = {f"layer_{i}": a for i, a in enumerate(cfg.layers)}
    os.makedirs(cfg.monitor_dir or ".", exist_ok=True)
    try:
        _run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT),
            group=cfg.monitor_group,
            name=name,
            dir=cfg.monitor_dir,  # wandb writes into its wandb/ folder there, beside the other monitors'
            config={"trial": trial, "assignment": cfg.assignment, **layers, **cfg.model_dump(mode="json")},
            settings=wandb.Settings(silent=True, console="off"),  # the rank's output goes to the group's log
            reinit="create_new",  # a run of its own, whatever else this process has open
        )
    except Exception as e:  # wandb raises several types; each means the same here
        print(f"moesearch: --monitor wandb: trial {trial} trains without its W&B run: {e}", flush=True)
        _run = None


def log(events: list[tuple[str, float, int]]) -> None:
    """The scalars at their steps, one history row per step; the final metrics go to the summary instead."""
    if _run is None:
        return
    kept = [e for e in events if not e[0].startswith("Final/")]
    for step, group in itertools.groupby(kept, key=lambda e: e[2]):
        _run.log({label: value for label, value, _ in group}, step=step)


def finish(summary: dict) -> None:
    """The run's summary (final metrics, the outcome), then the run closed."""
    global _run
    if _run is not None:
        _run.summary.update(summary)
        _run.finish(exit_code=0 if summary.get("state") == State.COMPLETE else 1)  # W&B marks a failed run
        _run = None
