"""What a trial measures: the names that objectives may use, each with its unit and meaning."""

from __future__ import annotations

import math

# name -> (unit, meaning). Every one is a column of the trials table and may be a search objective.
METRICS: dict[str, tuple[str, str]] = {
    "val_loss": ("nats/token", "cross-entropy on the fixed held-out batches, the same for every trial"),
    "train_loss": ("nats/token", "mean cross-entropy over the last 10% of training steps, across ranks"),
    "tokens_per_s": ("tokens/s", "training tokens per second over all ranks, from the median step time"),
    "step_time_s": ("s", "median optimizer-step time after warm-up (first 10% of steps)"),
    "params_total": ("params", "all parameters, every expert counted"),
    "params_active": ("params", "parameters one token passes through (top-k experts)"),
    "train_flops_per_token": ("FLOPs", "analytic training FLOPs per token, capacity-padded experts"),
    "peak_memory_mb": ("MiB", "peak memory of the busiest rank (GPU: allocator peak; CPU: sampled RSS)"),
    "train_time_s": ("s", "wall time of the training loop, periodic evaluations included"),
    "val_loss_int8": (
        "nats/token",
        "val_loss with the FFN activations fake-quantized to per-tensor affine INT8 "
        "(zero point and scale from the calibrated min and max)",
    ),
    "val_loss_int8_sym": (
        "nats/token",
        "the same with symmetric INT8 (zero point 0, codes [-127, 127], scale max|x|/127)",
    ),
    "val_loss_fp8": ("nats/token", "val_loss with the FFN activations fake-quantized to FP8 E4M3 (per-tensor scales)"),
    "quant_gap_int8": (
        "nats/token",
        "val_loss_int8 minus val_loss: what 8-bit integer activations cost (affine: fair to one-sided activations)",
    ),
    "quant_gap_int8_sym": ("nats/token", "val_loss_int8_sym minus val_loss: what symmetric INT8 activations cost"),
    "quant_gap_fp8": ("nats/token", "val_loss_fp8 minus val_loss: what FP8 activations cost"),
    "max_grad_norm": ("norm", "largest global gradient norm before clipping over the trained steps"),
    "clipped_share": ("fraction", "share of trained steps whose gradient norm exceeded train.grad_clip"),
    "loss_spikes": (
        "steps",
        "steps whose training loss jumps above its recent level (`moesearch/supervisor/stability.py`)",
    ),
}


INTEGER_METRICS = frozenset({"params_total", "params_active", "train_flops_per_token", "loss_spikes"})  # counts
# Analytic costs: the same for every training of an assignment, so no noise model fits them
ANALYTIC = frozenset({"params_total", "params_active", "train_flops_per_token"})

# What a rung of [search.pruning] measures (ranks/train.py sends these): losses and times so far, and the
# analytic costs. The rest (8-bit losses, gradient statistics, spikes) exist only after the last step.
# Here, in the core, because the space's validation and the supervisor's rung policy (`decide`) share it.
AT_RUNG = frozenset(
    {
        "val_loss",
        "train_loss",
        "tokens_per_s",
        "step_time_s",
        "train_time_s",
        "peak_memory_mb",
        "params_total",
        "params_active",
        "train_flops_per_token",
    }
)


def not_at_rung(objectives) -> str | None:
    """Why these objectives cannot be ranked at a rung (one line), or None when every one is measured there."""
    if late := [o for o in objectives if o not in AT_RUNG]:
        return (
            f"objective {late[0]!r} is measured only after the last step, so no rung can rank it; "
            f"objectives allowed with pruning: {', '.join(m for m in METRICS if m in AT_RUNG)}"
        )
    return None


def fmt(value: float) -> str:
    """A metric for people: four significant digits, thousands separated, no exponent."""
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def fmt_pm(mean: float, sd: float) -> str:
    """'2.0340 ± 0.0079': the spread to two significant digits, the mean to the same decimal place.

    The one form of a value with its spread; no spread (NaN: one seed) or none at all (0) prints the value alone.
    """
    if not math.isfinite(sd) or sd <= 0:
        return fmt(mean)
    decimals = 1 - math.floor(math.log10(sd))
    if decimals > 0:
        return f"{mean:,.{decimals}f} ± {sd:,.{decimals}f}"
    step = 10**-decimals  # round both to the spread's second significant digit: 23,700 ± 1,200
    return f"{round(mean / step) * step:,.0f} ± {round(sd / step) * step:,.0f}"


# How an objective's hypervolume reference point is fixed before a search when the space gives none:
# "uniform": ln 256, the loss of guessing bytes uniformly; "zero": nothing is worse than 0;
# "gap": 1 nat, a quantized model a whole nat per byte worse than itself is no deployment at all;
# "costliest": 1.1x the analytic cost of the costliest assignment. Measured costs have no such bound.
REFERENCE_RULE: dict[str, str] = {
    "val_loss": "uniform",
    "train_loss": "uniform",
    "tokens_per_s": "zero",
    "val_loss_int8": "uniform",
    "val_loss_int8_sym": "uniform",
    "val_loss_fp8": "uniform",
    "quant_gap_int8": "gap",
    "quant_gap_int8_sym": "gap",
    "quant_gap_fp8": "gap",
    "params_total": "costliest",
    "params_active": "costliest",
    "train_flops_per_token": "costliest",
}
