"""The sections of a search-space file: the model, its training, the search and its pruning.

Each is a strict pydantic model whose field docstrings are the documentation (`moesearch spaces show`);
`Space` (core/space.py) holds one of each, and each size of a scale ladder (core/scale.py) replaces some of
the model's and the training's keys.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moesearch.core.activations import ffn_params, hidden_width
from moesearch.core.corpus import VOCAB_SIZE
from moesearch.core.metrics import METRICS, REFERENCE_RULE

SHIPPED_BUILDER = "moesearch.ranks.model:transformer"  # `ModelSpec.builder`'s default: GPT-2's and Llama's blocks
STUDY_NAME = r"[A-Za-z0-9_.-]+"  # a study's name is also a folder name under the results folder
DEPLOYMENT_METRICS = (
    "val_loss_int8",
    "val_loss_int8_sym",
    "val_loss_fp8",
    "quant_gap_int8",
    "quant_gap_int8_sym",
    "quant_gap_fp8",
)  # measured only with train.deployment_eval
BASE_SHAPE = ("base_d_model", "base_d_ff", "base_n_heads", "base_n_layers")  # a ladder's sizes take the proxy's


class Section(BaseModel):
    # strict: TOML is typed, so "300" where a number belongs is a mistake, not something to coerce;
    # TOML's inf and nan are numbers too, but no setting here means them (a nan reference, an inf lr)
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


class ModelSpec(Section):
    block: Literal["gpt2", "llama"] = "gpt2"
    """'gpt2': GPT-2's block (LayerNorm, learned positions), where every shipped study's evidence was
    gathered; 'llama': the block of Llama and of Mixtral, DeepSeek-MoE, OLMoE and Qwen-MoE (RMSNorm, rotary
    position embeddings, no position table). Both bias-free, with the same per-layer FFN or MoE."""
    builder: str = Field(SHIPPED_BUILDER, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", examples=["mylab.moe:build"])
    """The function that builds the model, "package.module:function", called on every rank as
    function(spec, layers, ep_size) with this section and the assignment; it returns a module whose `blocks`
    hold block i's FFN, made by `moesearch.ranks.model.ffn_layer`, and whose forward gives (logits, aux loss,
    expert counts): docs/guide/your-model.md. Default: the shipped blocks (`block`). A model of your own is
    part of a study's identity; its parameters are counted from the module, its FLOPs are not known."""
    vocab_size: int | None = Field(None, ge=2, examples=[50304])
    """Tokens the model embeds and predicts. Default: the data's (256 for text read as bytes, a token file's
    largest id + 1, a tokenizer's vocabulary). Larger pads it (nanoGPT's 50304 for GPT-2's 50257: friendlier
    matmul shapes); smaller than the data's is refused."""
    n_layers: int = Field(4, ge=1)
    """Transformer blocks; the assignment has one activation per block."""
    d_model: int = Field(128, ge=8)
    """Residual stream width."""
    n_heads: int = Field(4, ge=1)
    """Attention heads; must divide d_model."""
    seq_len: int = Field(128, ge=8)
    """Tokens per training sequence (bytes, for text read as bytes)."""
    d_ff: int = Field(384, ge=8)
    """Hidden width of an ungated FFN (gated ones get 2/3 of it under width_policy 'params')."""
    width_policy: Literal["params", "width"] = "params"
    """'params': gated FFNs shrink to match parameters (fair quality comparison); 'width': same width, 1.5x cost."""
    width_multiple: int = Field(8, ge=1)
    """Gated widths are rounded to this multiple (hardware-friendly matmul shapes)."""
    moe_every: int = Field(1, ge=1)
    """Every moe_every-th FFN (the last of each group) is a DeepSpeed MoE layer; the others are dense."""
    num_experts: int = Field(4, ge=1)
    """Experts per MoE layer."""
    top_k: int = Field(2, ge=1)
    """Experts each token is routed to."""
    capacity_factor: float = Field(1.25, gt=0)
    """Expert buffer size during training, relative to an even split of k * tokens."""
    eval_capacity_factor: float = Field(2.0, gt=0)
    """Expert buffer size during evaluation (larger: fewer dropped tokens on held-out data)."""
    min_capacity: int = Field(4, ge=0)
    """Smallest expert buffer, whatever the batch."""
    aux_loss_coef: float = Field(0.01, ge=0)
    """Weight of the load-balancing loss (0.01 as in Megatron-DeepSpeed's MoE examples)."""
    parametrization: Literal["standard", "mup", "completep"] = "standard"
    """'standard': GPT-2's (every matrix drawn at std 0.02, one learning rate); 'mup': the maximal-update
    parametrization (Tensor Programs V) relative to the base shape (base_d_model, base_d_ff, base_n_heads):
    activations keep their size and the best learning rate carries as width grows; 'completep': muP and
    CompleteP's depth rules (residual branches x base_n_layers / n_layers), for a ladder that grows in depth
    too. At the base shape all three are the same model; a ladder's sizes scale from the proxy's shape."""
    base_d_model: int | None = Field(None, ge=8, examples=[64])
    """muP's base width: the d_model its learning rate and inits were tuned at (default: this model's own;
    a ladder's sizes take the proxy's)."""
    base_d_ff: int | None = Field(None, ge=8, examples=[192])
    """muP's base FFN width (default: this model's d_ff; a ladder's sizes take the proxy's)."""
    base_n_heads: int | None = Field(None, ge=1, examples=[4])
    """muP's base head count, which with base_d_model sets the base head width (default: this model's)."""
    base_n_layers: int | None = Field(None, ge=1, examples=[4])
    """CompleteP's base depth: the layer count the learning rate was tuned at (default: this model's own; a
    ladder's sizes take the proxy's). Only with parametrization 'completep'."""

    @property
    def vocab(self) -> int:
        """The vocabulary trained with: vocab_size, else bytes' 256 (a space file read alone, and every record
        made before the vocabulary came from the data, when all text was read as bytes)."""
        return self.vocab_size or VOCAB_SIZE

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads {self.n_heads} must divide d_model {self.d_model}")
        if self.block == "llama" and (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"block 'llama' rotates pairs of each head's {self.d_model // self.n_heads} dimensions; allowed: "
                "d_model / n_heads even"
            )
        if self.moe_every > self.n_layers:
            raise ValueError(f"moe_every {self.moe_every} exceeds n_layers {self.n_layers}: no layer would be MoE")
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k {self.top_k} exceeds num_experts {self.num_experts}")
        if self.base_n_layers is not None and self.parametrization != "completep":
            raise ValueError(
                f"base_n_layers {self.base_n_layers} is CompleteP's base depth, but parametrization is "
                f"{self.parametrization!r}; allowed: parametrization = 'completep', or leave base_n_layers out"
            )
        base = {k: getattr(self, k) for k in BASE_SHAPE if getattr(self, k) is not None}
        if base and self.parametrization == "standard":
            key = next(iter(base))
            raise ValueError(
                f"{key} {base[key]} is muP's base shape, but parametrization is 'standard'; "
                "allowed: parametrization = 'mup' or 'completep', or leave the base_* keys out"
            )
        d_model, n_heads = self.base_d_model or self.d_model, self.base_n_heads or self.n_heads
        if d_model % n_heads:
            raise ValueError(f"base_n_heads {n_heads} must divide base_d_model {d_model}")
        if self.width_policy == "params":
            gated = ffn_params("swiglu", 1, hidden_width("swiglu", self.d_ff, "params", self.width_multiple))
            if abs(gated / ffn_params("gelu", 1, self.d_ff) - 1) > 0.01:
                good = 3 * self.width_multiple
                example = good * max(1, round(self.d_ff / good))
                raise ValueError(
                    f"d_ff {self.d_ff} leaves gated FFNs {100 * (gated / (2 * self.d_ff) - 1):+.1f}% off in "
                    f"parameters (limit 1%); use a d_ff divisible by {good}, e.g. {example}"
                )
        return self

    def is_moe(self, layer: int) -> bool:
        return (layer + 1) % self.moe_every == 0

    def width_mults(self) -> tuple[float, float]:
        """muP's width multipliers of the residual stream and of the FFN hidden layer, this shape over the
        base shape: (d_model / base_d_model, d_ff / base_d_ff); (1, 1) under the standard parametrization."""
        if self.parametrization == "standard":
            return 1.0, 1.0
        return self.d_model / (self.base_d_model or self.d_model), self.d_ff / (self.base_d_ff or self.d_ff)

    def depth_mult(self) -> float:
        """CompleteP's depth multiplier, n_layers / base_n_layers; 1 under the other parametrizations."""
        return self.n_layers / (self.base_n_layers or self.n_layers) if self.parametrization == "completep" else 1.0

    def attention_scale(self) -> float | None:
        """The attention scores' scale: muP's 1/d_head, written sqrt(base d_head) / d_head so the base shape
        keeps 1/sqrt(d_head); None (1/sqrt(d_head), the standard) where the head width is the base's."""
        d_head = self.d_model // self.n_heads
        base = (self.base_d_model or self.d_model) // (self.base_n_heads or self.n_heads)
        if self.parametrization == "standard" or d_head == base:
            return None
        return math.sqrt(base) / d_head


class TrainSpec(Section):
    steps: int = Field(300, ge=1)
    """Optimizer steps per trial."""
    warmup_steps: int = Field(30, ge=1)
    """Linear learning-rate warm-up, then cosine decay to min_lr_ratio * lr."""
    micro_batch: int = Field(16, ge=1)
    """Sequences per rank per step; every rank sees the same number of tokens."""
    lr: float = Field(3e-3, gt=0)
    """Peak AdamW learning rate."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Final learning rate as a fraction of lr."""
    weight_decay: float = Field(0.1, ge=0)
    """AdamW weight decay on matrices (not on norms or embeddings' biases)."""
    learned_lr_mult: float = Field(1.0, gt=0)
    """Learning rate of a learnable activation's own parameters (xIELU's slopes, PolyNorm's weights) as a
    multiple of lr. A handful of scalars per FFN: at a proxy's few hundred steps at lr they barely leave their
    init (docs/performance.md section 19), so what a layer 'learned' says little; a larger multiple lets the
    shape move within the proxy's budget. Changes nothing for fixed activations."""
    grad_clip: float = Field(1.0, gt=0)
    """Global gradient-norm clip."""
    precision: Literal["fp32", "bf16"] | None = Field(None, examples=["bf16"])
    """Training precision: 'bf16' (DeepSpeed's bf16 engine, fp32 master weights) or 'fp32'; default: bf16
    on GPUs, fp32 on CPUs. Evaluation and the layer statistics run in the precision the trial trained in."""
    deployment_eval: bool = True
    """After training, evaluate again with 8-bit FFN activations (val_loss_int8 affine, val_loss_int8_sym,
    val_loss_fp8 and their gaps) and count hidden values beyond 6 standard deviations: four more evaluation
    passes and a quarter of one for calibration. Off, those metrics are null (the other outlier statistics stay)."""
    compile: bool = False
    """Run the model through torch.compile (DeepSpeed's `engine.compile()`), so each activation gets fused
    kernels and throughput is what a deployment would see; every trial pays its compilation in its first
    steps (warm-up, left out of step_time_s) and at its first evaluation."""
    zero_stage: Literal[1, 2] = 1
    """ZeRO stage: 1 or 2 (stage 3 does not support DeepSpeed MoE; stage 0 clips MoE gradients wrongly)."""
    eval_sequences: int = Field(64, ge=1)
    """Held-out sequences for val_loss, the same for every trial; must be divisible by the rank count."""
    eval_interval: int = Field(0, ge=0)
    """Also measure val_loss every eval_interval steps, for learning curves (0: only after the last step)."""
    streams: Literal["crn", "global"] = "crn"
    """Random numbers: 'crn' (common random numbers) draws each matrix, each expert, the routing noise and
    the batch order from a stream keyed by the seed and its place, so two assignments that differ in one
    layer are the same model everywhere else at step 0 and their difference is 3-5x less noisy; 'global'
    draws them from one generator, so one layer's shape re-draws the rest (records before schema 4)."""


class PruningSpec(Section):
    method: Literal["none", "mo-asha"] = "none"
    """'mo-asha': at each rung, stop a trial unless its objectives so far rank in the best 1/eta of every
    record the study has at that rung (non-dominated rank, then crowding distance); 'none': train every trial out."""
    rungs: list[int] = Field(default_factory=list)
    """Steps at which a trial may be stopped, increasing, each below train.steps and a multiple of
    train.eval_interval (val_loss is measured there)."""
    eta: int = Field(3, ge=2)
    """Keep the best 1/eta at each rung (3: Hyperband's and ASHA's default reduction factor)."""
    min_records: int = Field(6, ge=1)
    """Records a rung needs (this trial's included) before it stops anything: few peers rank noisily."""


class SearchSpec(Section):
    objectives: dict[str, Literal["minimize", "maximize"]] = Field(
        default_factory=lambda: {"val_loss": "minimize", "tokens_per_s": "maximize"}, min_length=2, max_length=4
    )
    """2-4 metrics to optimise, each with a direction; see `moesearch spaces show` for the metric names."""
    trials: int = Field(8, ge=1)
    """Trained trials when --trials is not given (uniform baselines included)."""
    sampler: Literal["tpe", "nsga2", "gp", "random", "brute"] = "tpe"
    """Optuna sampler proposing assignments ('brute' tries every assignment once: small spaces, replay tables)."""
    design: Literal["none", "orthogonal"] = "none"
    """'orthogonal': after the baselines, queue the runs of the smallest orthogonal array that hosts every
    layer (8 layers of 2 choices: 12 runs), so every layer's effect is estimated with equal precision from
    few trials; then the sampler proposes. 'none': the sampler proposes from the start."""
    replicates: Literal["off", "auto"] = "off"
    """'auto': once the study has its trials, re-train with fresh seeds the trained assignments whose place on
    the expected front is inside noise (probability of being non-dominated between 0.1 and 0.9), the most
    open first, re-fitting the noise model after each, until every one is resolved or replicate_share is
    spent (origin 'verify', outside --trials); 'off': only search.baseline_seeds and `moesearch verify`."""
    replicate_share: float = Field(0.25, ge=0, le=1)
    """With replicates = 'auto': at most this share of the search's trained trials again as replicates."""
    baseline_seeds: int = Field(0, ge=0)
    """Fresh seeds for each uniform baseline, trained by `search` once the study has its trials (origin
    'verify', outside --trials), so its front states a measured seed noise; 0: only `moesearch verify` measures it."""
    timeout_s: float = Field(1800, gt=0)
    """A trial running longer than this is stopped and recorded as failed."""
    ep_size: int | None = Field(None, ge=1, examples=[1])
    """Expert-parallel ranks per MoE layer; default: the largest that divides both num_experts and the ranks of
    one node, so every MoE layer's all-to-all stays inside a node (set it to span nodes)."""
    pruning: PruningSpec = PruningSpec()
    """Early stopping at rungs (steps): trials that rank poorly partway through are stopped, recorded PRUNED."""
    effect_size: dict[str, float] = Field(default_factory=dict, examples=[{"val_loss": 0.01}])
    """The per-layer effect that matters, per objective, in its units (nats for a loss, tokens/s for
    throughput): what the verdict's 'needs about N trials', replicates and promote's seeds are sized to
    resolve. Objectives left out get 0.02 nats for a loss and 2% of its level for the others. Kept with every
    record, so `pareto` reads it; changing it does not make another study."""
    reference: dict[str, float] = Field(default_factory=dict)
    """Hypervolume reference point, per objective; fixed when the study is created. Objectives left out get
    a natural bound: ln 256 for losses (a uniform byte guess), 0 for tokens_per_s, 1.1x the costliest
    assignment for params and FLOPs. Measured costs (times, memory) have none and must be given here."""

    @model_validator(mode="after")
    def _known_metrics(self) -> SearchSpec:
        for name in self.objectives:
            if name not in METRICS:
                raise ValueError(f"unknown objective {name!r}; allowed: {', '.join(METRICS)}")
        for name, value in self.effect_size.items():
            if name not in self.objectives:
                raise ValueError(f"effect_size.{name} is not an objective; allowed: {', '.join(self.objectives)}")
            if value <= 0:
                raise ValueError(f"effect_size.{name} {value} is not an effect; allowed: a number above 0")
        for name in self.reference:
            if name not in self.objectives:
                raise ValueError(f"reference.{name} is not an objective; allowed: {', '.join(self.objectives)}")
        for name in self.objectives:
            if name not in self.reference and name not in REFERENCE_RULE:
                raise ValueError(
                    f"reference.{name} is missing: objective {name!r} has no natural hypervolume "
                    f"reference point, so give the worst value worth counting (in {METRICS[name][0]})"
                )
        return self


def one_line(error: ValidationError, root: type[BaseModel]) -> str:
    """The first validation error of `root` (a space) as 'key: problem (got value); allowed: ...'."""
    err = error.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(root, err["loc"][:-1])
        return f"{key}: unknown key; allowed keys here: {', '.join(allowed)}"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":
        return f"{key}: {message}" if err["loc"] else message
    return f"{key}: {message} (got {err['input']!r})"


def _fields_at(root: type[BaseModel], loc: tuple) -> list[str]:
    model = root
    for part in loc:
        if isinstance(part, int):  # an item of a list of tables, as [[scale]]
            continue
        annotation = model.model_fields[part].annotation
        annotation = next(iter(getattr(annotation, "__args__", ())), annotation)  # list[Size] -> Size
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)
