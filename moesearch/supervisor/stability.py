"""Training stability of one trial, from its steps rows: the gradient norm's peak, how often clipping
acted, and loss spikes. Computed by the supervisor for every trial with steps, a diverged one too
(up to the step where it failed). Light: stdlib only.
"""

from __future__ import annotations

import statistics

SPIKE_WINDOW = 20  # steps of recent history a step's loss is compared with
SPIKE_MADS = 6.0  # a spike is this many median absolute deviations above the recent median ...
SPIKE_MIN_NATS = 0.1  # ... and at least this far above it (batch noise of a quiet run stays below)


def stability(steps: list[dict], grad_clip: float) -> dict:
    """max_grad_norm, clipped_share and loss_spikes of the trained steps (None where no step has a norm)."""
    norms = [row["grad_norm"] for row in steps if row.get("grad_norm") is not None]
    losses = [row["train_loss"] for row in steps]
    return {
        "max_grad_norm": max(norms) if norms else None,
        "clipped_share": sum(n > grad_clip for n in norms) / len(norms) if norms else None,
        "loss_spikes": spikes(losses) if steps else None,
    }


def spikes(losses: list[float]) -> int:
    """Steps whose training loss exceeds the median of the SPIKE_WINDOW steps before it by more than
    SPIKE_MADS median absolute deviations and by at least SPIKE_MIN_NATS (the first window counts none)."""
    count = 0
    for i in range(SPIKE_WINDOW, len(losses)):
        recent = losses[i - SPIKE_WINDOW : i]
        median = statistics.median(recent)
        mad = statistics.median(abs(x - median) for x in recent)
        count += losses[i] - median > max(SPIKE_MADS * mad, SPIKE_MIN_NATS)
    return count
