"""Train one RunConfig on every rank of an initialised process group, with a real DeepSpeed engine.

Every rank calls `train_trial` with the same config; it returns the same result on every rank
(reduced across ranks): the trial's metrics, one row per step and one row per layer, as plain Python
values so that no tensor keeps the engine alive between trials.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import deepspeed
import psutil
import torch
import torch.distributed as dist
import torch.nn.functional as F
from deepspeed.accelerator import get_accelerator
from torch import nn

from moesearch.core.activations import hidden_width, parts
from moesearch.core.config import RunConfig
from moesearch.core.corpus import Corpus, Part
from moesearch.core.protocol import Done, Verdict
from moesearch.core.trial import DIVERGED, State
from moesearch.ranks import builder, faults, learned, routing, streams, wandb_run
from moesearch.ranks.model import exact_routing, init_weights, mix_experts
from moesearch.ranks.parametrization import param_groups
from moesearch.ranks.probes import HiddenStats, TailShare
from moesearch.ranks.quantize import FORMATS, Calibration, FakeQuant

OnStep = Callable[[int, float, float | None], None]  # steps done, train loss, val_loss measured at this step
ShouldStop = Callable[[], str | None]  # the reason to stop now (a signal's name), or None
AskRung = Callable[[int, dict], Verdict]  # rank 0: the supervisor's verdict on the trial's metrics at a rung


class TrialFailed(Exception):
    """A failure every rank reached together (e.g. a non-finite loss); the group stays usable.

    `steps` holds the rows logged before the failure, so a diverged run still has its learning curve.
    """

    def __init__(self, reason: str, steps: list[dict] | None = None, preempted: bool = False):
        super().__init__(reason)
        self.steps = steps or []
        self.preempted = preempted  # stopped by a signal, not by the trial's own fault: retried later


class TrialPruned(Exception):
    """Every rank stops together at a rung: the supervisor's verdict (rank 0 knows its reason)."""

    def __init__(self, reason: str, step: int, metrics: dict, steps: list[dict]):
        super().__init__(reason)
        self.step, self.metrics, self.steps = step, metrics, steps


class Batches:
    """Random training windows (different per rank, same count) and fixed held-out windows."""

    def __init__(self, corpus: Corpus, cfg: RunConfig, rank: int, world: int, device: torch.device):
        # views of the memory-mapped text (core/corpus.Part): each window is cut, then widened, as it is used
        self.train_data, self.val_data = corpus.train, corpus.val
        self.seq_len, self.micro_batch, self.device = cfg.model.seq_len, cfg.train.micro_batch, device
        self.generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank)
        n_eval = cfg.train.eval_sequences  # divisible by `world`: the CLI checks --nproc against it
        # Evenly spaced windows over the held-out text, the same for every trial; rank r takes every world-th.
        starts = torch.linspace(0, len(self.val_data) - self.seq_len - 1, n_eval).long()
        self.eval_starts = starts[rank::world]
        # A quarter as many calibration windows (at least one per rank): max |x| settles fast, and each is a pass
        n_calibration = max(world, n_eval // 4 // world * world)
        calibration = torch.linspace(0, len(self.train_data) - self.seq_len - 1, n_calibration).long()
        self.calibration_starts = calibration[rank::world]

    def _windows(self, data: Part, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xy = torch.from_numpy(data.windows(starts.numpy(), self.seq_len + 1)).long().to(self.device, non_blocking=True)
        return xy[:, :-1], xy[:, 1:]

    def next_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.train_data) - self.seq_len - 1, (self.micro_batch,), generator=self.generator)
        return self._windows(self.train_data, starts)

    def eval_batches(self):
        for chunk in self.eval_starts.split(self.micro_batch):  # the same chunk sizes on every rank
            yield self._windows(self.val_data, chunk)

    def calibration_batches(self):
        """Fixed windows of the training text, a quarter as many as the evaluation's: quantization scales
        are calibrated here, never on the windows they are evaluated on."""
        for chunk in self.calibration_starts.split(self.micro_batch):
            yield self._windows(self.train_data, chunk)


def ds_config(cfg: RunConfig, bf16: bool, run_name: str = "trial") -> dict:
    t = cfg.train
    zero = {"stage": t.zero_stage, "reduce_scatter": True}  # required with MoE under ZeRO-1/2
    if t.zero_stage == 2:
        zero["contiguous_gradients"] = True
    # DeepSpeed's own monitors, rank 0 only: one run per trial, named so runs sort by trial number
    monitors = {
        f"{'csv_monitor' if kind == 'csv' else kind}": {
            "enabled": True,
            "job_name": run_name,
            "output_path": f"{cfg.monitor_dir}/{kind}",
        }
        for kind in cfg.monitor
        if kind != "wandb"  # moesearch's own (ranks/wandb_run.py says why)
    }
    return {
        **monitors,
        "train_micro_batch_size_per_gpu": t.micro_batch,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": t.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        # torch_adam: DeepSpeed would otherwise JIT-build its fused Adam.
        "optimizer": {"type": "AdamW", "params": {"lr": t.lr, "betas": [0.9, 0.95], "torch_adam": True}},
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": t.steps,
                "warmup_num_steps": t.warmup_steps,
                "warmup_type": "linear",
                "warmup_min_ratio": 0.0,
                "cos_min_ratio": t.min_lr_ratio,
            },
        },
        "steps_per_print": 1 << 30,  # moesearch reports progress itself
        "wall_clock_breakdown": False,
    }


def run_name(trial: int, cfg: RunConfig) -> str:
    """A trial's run in TensorBoard: 'trial-000012_gelu-swiglu-gelu-gelu_seed0', sorting by trial number (a
    mix's count, gelu*3+swiglu, as gelux3+swiglu: no glob character in a folder's name)."""
    return f"trial-{trial:06d}_{'-'.join(cfg.layers).replace('*', 'x')}_seed{cfg.seed}"


def build_model(cfg: RunConfig, rank: int) -> nn.Module:
    """This rank's model at step 0 (the space's builder): the same dense weights on every rank, its own share
    of the experts."""
    torch.manual_seed(cfg.seed)  # 'global' streams draw everything from here: the same on every rank
    model = builder.build(cfg.model, cfg.layers, cfg.ep_size)
    # DeepSpeed's expert-parallel groups are runs of consecutive ranks (its groups exist only after
    # deepspeed.initialize, and re-initialising then would miss ZeRO's fp32 master copy).
    first = (rank % cfg.ep_size) * (cfg.model.num_experts // cfg.ep_size)
    mix_experts(model, cfg.model, cfg.layers, first)
    init_weights(model, cfg.model, cfg.seed, first, cfg.train.streams)
    return model


def build_engine(cfg: RunConfig, rank: int, bf16: bool = False, run_name: str = "trial"):
    """The DeepSpeed engine of this rank's model at step 0, its optimizer groups as the parametrization says."""
    model = build_model(cfg, rank)
    engine, *_ = deepspeed.initialize(
        model=model,
        model_parameters=param_groups(
            model, cfg.model, cfg.train.lr, cfg.train.weight_decay, cfg.train.learned_lr_mult
        ),
        config=ds_config(cfg, bf16=bf16, run_name=run_name),
    )
    return engine


def train_trial(
    cfg: RunConfig,
    corpus: Corpus,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
    ask_rung: AskRung | None = None,
    trial: int = 0,
) -> Done:
    """Build, train and evaluate one model; every rank must call this with the same `cfg`.

    `should_stop` is asked after every step on every rank; if any rank says yes, all raise TrialFailed
    (preempted) together at that step boundary. At each of `cfg.rungs`, rank 0 asks `ask_rung` with
    the metrics so far; if the verdict is to stop, every rank raises TrialPruned.

    Returns the reply rank 0 sends: metrics {name: value}, a row per step and a row per layer.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    accel = get_accelerator()
    on_gpu = accel.device_name() == "cuda"
    local_experts = cfg.model.num_experts // cfg.ep_size
    precision = cfg.train.precision or ("bf16" if on_gpu else "fp32")
    engine = build_engine(cfg, rank, bf16=precision == "bf16", run_name=run_name(trial, cfg))
    if tracked := "wandb" in cfg.monitor and rank == 0:
        wandb_run.start(cfg, trial, run_name(trial, cfg))
    outcome = {"state": State.FAIL, "reason": "crashed"}  # the W&B run's summary, whatever ends the trial
    if cfg.train.compile:
        engine.compile()  # inductor: C++/OpenMP kernels on CPU, Triton on GPU; DeepSpeed's MoE dispatch stays eager
    if (
        cfg.train.streams == "crn"
    ):  # routing noise (DeepSpeed draws it from the global generator) as a stream of its own
        torch.manual_seed(streams.seed_of(cfg.seed, "routing"))
    steps: list[dict] = []
    try:
        batches = Batches(corpus, cfg, rank, world, engine.device)
        metrics, share_LE, evals = _train(
            engine, cfg, batches, steps, on_step, should_stop or (lambda: None), ask_rung, on_gpu
        )
        slots = ((rank % cfg.ep_size) * local_experts, cfg.model.num_experts)
        # the final evaluation also measures the hidden activations
        with _eager(cfg.train.compile), HiddenStats(engine.module, *slots) as probe:
            metrics["val_loss"] = steps[-1]["val_loss"] = _evaluate_routed(engine, batches, cfg, evals, cfg.train.steps)
        hidden = probe.reduce(engine.device)
        if cfg.train.deployment_eval:
            with _eager(cfg.train.compile), TailShare(engine.module, probe.mean_std(), *slots) as tails:  # again
                _evaluate(engine, batches)
            hidden = [h | t for h, t in zip(hidden, tails.reduce(engine.device), strict=True)]
            with _eager(cfg.train.compile):
                metrics.update(_quantized(engine, batches, metrics["val_loss"], slots))
        layers = _layer_rows(cfg, share_LE, evals, hidden, learned.rows(engine.module, cfg, slots[0], engine.device))
        final = {**_with_costs(metrics, cfg, world, engine.module), "precision": precision}
        _monitor(
            engine,
            [
                (f"Final/{name}", value, cfg.train.steps)
                for name, value in final.items()
                if isinstance(value, float | int)
            ],
        )
        outcome = {**final, "state": State.COMPLETE}
    except (TrialFailed, TrialPruned) as e:
        e.steps = steps
        state = State.PREEMPTED if getattr(e, "preempted", False) else State.FAIL
        outcome = {
            "state": state if isinstance(e, TrialFailed) else State.PRUNED,
            "reason": str(e),
            "steps": len(steps),
        }
        raise
    finally:
        if tracked:
            wandb_run.finish(outcome)
        engine.destroy()
        del engine
        gc.collect()
    return Done(final, steps, layers)


def _with_costs(metrics: dict, cfg: RunConfig, world: int, model: nn.Module) -> dict:
    """The measured metrics with throughput and the model's costs added (`builder.counted`)."""
    tokens_per_step = cfg.train.micro_batch * cfg.model.seq_len * world
    return {
        **metrics,
        "tokens_per_s": tokens_per_step / metrics["step_time_s"],
        **vars(builder.counted(model, cfg.model, cfg.layers, cfg.train.micro_batch)),
    }


def _train(
    engine,
    cfg: RunConfig,
    batches: Batches,
    log: list[dict],
    on_step: OnStep | None,
    should_stop: ShouldStop,
    ask_rung: AskRung | None,
    on_gpu: bool,
) -> tuple[dict, torch.Tensor, dict[int, torch.Tensor]]:
    """The training loop; appends one row per step to `log`. Returns metrics, the expert load shares over
    training and those on the held-out tokens at each evaluation so far {step: shares}."""
    steps, interval = cfg.train.steps, cfg.train.eval_interval
    warmup = min(max(2, steps // 10), steps - 1)  # the first steps pay for allocation and thread start-up
    tail = max(1, steps // 10)
    tokens_per_step = cfg.train.micro_batch * cfg.model.seq_len * dist.get_world_size()
    fault = faults.planned(cfg.assignment)
    loads, evals = routing.Loads(), {}
    peak_rss, me = 0, psutil.Process()
    loop_start = time.perf_counter()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    engine.train()
    for step in range(steps):
        step_start = time.perf_counter()
        lr = engine.get_lr()[0]  # the rate this step applies (the scheduler moves on in engine.step)
        x_BT, y_BT = batches.next_train()
        logits_BTV, aux, counts = engine(x_BT)
        ce = F.cross_entropy(logits_BTV.float().flatten(0, 1), y_BT.reshape(-1))
        if fault:
            ce = fault.apply(ce, step)
        loss = ce + cfg.model.aux_loss_coef * aux
        engine.backward(loss)
        engine.step()
        loads.add(counts)
        # One all-reduce per step: it also synchronises every rank, so the step is over when it returns,
        # and it carries each rank's stop vote, so a signal that reached any rank stops all of them here.
        stop = should_stop()
        mean_ce, mean_aux, votes = (
            _all_reduce(
                torch.stack([ce.detach(), aux.detach().float(), ce.new_tensor(float(stop is not None))]), engine.device
            )
            / dist.get_world_size()
        ).tolist()
        del logits_BTV, aux, counts, ce, loss  # no graph may outlive the step
        if not math.isfinite(mean_ce):
            raise TrialFailed(f"{DIVERGED}: non-finite loss at step {step}")
        if votes > 0:
            raise TrialFailed(
                f"preempted: {stop or 'a signal to another rank'} at step {step + 1} of {steps}", preempted=True
            )
        norm = engine.get_global_grad_norm()  # before clipping; the same on every rank
        log.append(
            {
                "step": step + 1,
                "tokens": (step + 1) * tokens_per_step,
                "train_loss": mean_ce,
                "aux_loss": mean_aux,
                "lr": lr,
                "step_time_s": time.perf_counter() - step_start,
                "val_loss": None,
                "grad_norm": None if norm is None else float(norm),
            }
        )
        peak_rss = max(peak_rss, me.memory_info().rss)
        _monitor(engine, [(f"Train/{k}", v, step + 1) for k, v in log[-1].items() if k in _CURVES and v is not None])
        if interval and (step + 1) % interval == 0 and step + 1 < steps:  # the last step's comes after the loop
            log[-1]["val_loss"] = _evaluate_routed(engine, batches, cfg, evals, step + 1)
        if on_step:  # after the evaluation, so the supervisor can print it
            on_step(step + 1, mean_ce, log[-1]["val_loss"])
        if step + 1 in cfg.rungs:
            so_far = {
                **_measured(log, min(warmup, step), tail, loop_start, peak_rss, on_gpu, engine.device),
                "val_loss": log[-1]["val_loss"],
            }
            _rung(step + 1, _with_costs(so_far, cfg, dist.get_world_size(), engine.module), ask_rung, engine.device)
    return (
        _measured(log, warmup, tail, loop_start, peak_rss, on_gpu, engine.device),
        loads.shares(lambda t: _all_reduce(t, engine.device)),
        evals,
    )


_CURVES = ("tokens", "train_loss", "aux_loss", "lr", "step_time_s", "grad_norm")  # the steps table's, as Train/*


def _measured(
    log: list[dict], warmup: int, tail: int, loop_start: float, peak_rss: int, on_gpu: bool, device: torch.device
) -> dict:
    """The metrics measured over the steps in `log` (every rank calls this: the memory peak is reduced)."""
    tail = min(tail, len(log))
    return {
        "train_loss": sum(row["train_loss"] for row in log[-tail:]) / tail,
        "step_time_s": statistics.median(row["step_time_s"] for row in log[warmup:]),  # robust to a busy neighbour
        "train_time_s": time.perf_counter() - loop_start,
        "peak_memory_mb": _all_reduce(torch.tensor([_peak_memory(peak_rss, on_gpu)]), device, dist.ReduceOp.MAX).item()
        / 2**20,
    }


def _rung(step: int, metrics: dict, ask_rung: AskRung | None, device: torch.device) -> None:
    """Rank 0 asks the supervisor; its verdict reaches every rank; all stop together if it says so."""
    verdict = ask_rung(step, metrics) if ask_rung else None
    keep = _all_reduce(torch.tensor([float(verdict is None or verdict.keep)]), device, dist.ReduceOp.MIN).item()
    if not keep:
        raise TrialPruned(verdict.reason if verdict else f"pruned at rung {step}", step, metrics, [])


def _width(choice: str, m) -> int | None:
    """The hidden width of a layer's FFNs; None for a mix whose parts have different ones."""
    widths = {hidden_width(a, m.d_ff, m.width_policy, m.width_multiple) for a in parts(choice)}
    return widths.pop() if len(widths) == 1 else None


def _layer_rows(
    cfg: RunConfig, share_LE: torch.Tensor, evals: dict[int, torch.Tensor], hidden: list[dict], learned: list[dict]
) -> list[dict]:
    """One row per block: its activation, routing (MoE blocks), hidden-activation statistics and what a
    learnable activation learned."""
    return [
        {
            "layer": layer,
            "activation": activation,
            "moe": cfg.model.is_moe(layer),
            "hidden_width": _width(activation, cfg.model),
            **routed,
            **hidden[layer],
            **learned[layer],
        }
        for (layer, activation), routed in zip(
            enumerate(cfg.layers), routing.columns(cfg, share_LE, evals), strict=True
        )
    ]


@torch.no_grad()
def _quantized(engine, batches: Batches, full: float, slots: tuple[int, int]) -> dict:
    """val_loss with the FFN activations fake-quantized to each format, its gap to `full`, and how many experts
    stayed in full precision for want of a calibration token."""
    with _evaluating(engine), Calibration(engine.module, *slots) as calibration:
        for x_BT, _ in batches.calibration_batches():
            engine(x_BT)
    calibration.reduce(engine.device)
    found = {"quant_uncalibrated_experts": calibration.uncalibrated}
    for fmt in FORMATS:
        with FakeQuant(calibration, fmt):
            found[f"val_loss_{fmt}"] = _evaluate(engine, batches, strict=False)
        found[f"quant_gap_{fmt}"] = found[f"val_loss_{fmt}"] - full
    return found


def _evaluate_routed(engine, batches: Batches, cfg: RunConfig, evals: dict[int, torch.Tensor], step: int) -> float:
    """val_loss at `step`, with where the routers sent the held-out tokens (into `evals`); both to the monitors."""
    held = routing.Loads()
    loss = _evaluate(engine, batches, loads=held)
    evals[step] = held.shares(lambda t: _all_reduce(t, engine.device))
    _monitor(engine, [("Eval/val_loss", loss, step), *routing.events(cfg, step, evals[step])])
    return loss


@torch.no_grad()
def _evaluate(engine, batches: Batches, strict: bool = True, loads: routing.Loads | None = None) -> float:
    total = torch.zeros(2, dtype=torch.float64)  # summed loss, token count
    with _evaluating(engine):
        for x_BT, y_BT in batches.eval_batches():
            logits_BTV, _, counts = engine(x_BT)
            if loads is not None:
                loads.add(counts)
            ce = F.cross_entropy(logits_BTV.float().flatten(0, 1), y_BT.reshape(-1), reduction="sum")
            total += torch.tensor([ce.item(), y_BT.numel()], dtype=torch.float64)
    total = _all_reduce(total, engine.device)
    loss = (total[0] / total[1]).item()
    if strict and not math.isfinite(loss):  # a quantized evaluation may lose everything; training may not
        raise TrialFailed(f"{DIVERGED}: non-finite validation loss")
    return loss


@contextmanager
def _evaluating(engine) -> Iterator[None]:
    """Evaluation mode with exact routing (no gate noise), back to training after."""
    engine.eval()
    try:
        with exact_routing(engine.module):
            yield
    finally:
        engine.train()


@contextmanager
def _eager(compiled: bool) -> Iterator[None]:
    """A compiled model runs uncompiled inside: hooks registered after `engine.compile()` (probes, calibration,
    fake quantization) are not in the compiled graph, and Dynamo does not guard on them
    (`skip_nnmodule_hook_guards`), so a compiled pass would skip them silently (an 8-bit gap of exactly 0)."""
    if not compiled:
        yield
        return
    with torch.compiler.set_stance("force_eager"):  # torch >= 2.6, as train.compile requires
        yield


def _monitor(engine, events: list[tuple[str, float, int]]) -> None:
    """Scalars to the trial's live monitors (TensorBoard, CSV: DeepSpeed writes on rank 0 and flushes; W&B)."""
    if engine.monitor.enabled:
        engine.monitor.write_events(events)
    wandb_run.log(events)


def _all_reduce(t: torch.Tensor, device: torch.device, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """All-reduce through the engine's device (NCCL needs GPU tensors), back on the CPU."""
    t = t.to(device)
    dist.all_reduce(t, op=op)
    return t.cpu()


def _peak_memory(peak_rss: int, on_gpu: bool) -> float:
    """Bytes. GPU: the allocator's peak this trial; CPU: the sampled RSS peak."""
    return float(torch.cuda.max_memory_allocated()) if on_gpu else float(peak_rss)
