"""Search-space files: TOML validated by pydantic into a `Space`, the one description of a search.

A space says which activations each layer may take, the model and training every trial shares, and
which metrics the study optimises. Field docstrings are the documentation (`moesearch spaces show`).
"""

from __future__ import annotations

import importlib.resources
import itertools
import math
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moesearch.core import design
from moesearch.core.activations import Activation, ffn_params, hidden_width, parts, run
from moesearch.core.assignment import block_of, uniform
from moesearch.core.corpus import VOCAB_SIZE
from moesearch.core.errors import InputError
from moesearch.core.metrics import METRICS, REFERENCE_RULE, not_at_rung

# package data (pyproject.toml), so a wheel install has them too: the repository's search_spaces/, linked in
SHIPPED_DIR = Path(str(importlib.resources.files("moesearch"))) / "search_spaces"
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


class _Section(BaseModel):
    # strict: TOML is typed, so "300" where a number belongs is a mistake, not something to coerce;
    # TOML's inf and nan are numbers too, but no setting here means them (a nan reference, an inf lr)
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


class ModelSpec(_Section):
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


class TrainSpec(_Section):
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


class PruningSpec(_Section):
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


class SearchSpec(_Section):
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


class Size(_Section):
    """One rung of the scale ladder: a larger size of the same model. The keys it sets replace the proxy's.
    A size that sets n_layers maps each layer of the size below to its block of the depth (`assignment.deepen`):
    an assignment means the same thing at every size, layer i standing for the layers in its share."""

    name: str = Field(pattern=rf"^{STUDY_NAME}$")
    """The size's name in reports, and the suffix of the study its trainings go to."""
    n_layers: int | None = Field(None, ge=1)
    """Transformer blocks at this size, a multiple of the size below's (default: the proxy's); each layer below
    stands for its block of this depth (with model.parametrization 'completep' its residual branches scale)."""
    d_model: int | None = Field(None, ge=8)
    """Residual stream width at this size (default: the proxy's model.d_model)."""
    n_heads: int | None = Field(None, ge=1)
    """Attention heads at this size; must divide its d_model (default: the proxy's)."""
    d_ff: int | None = Field(None, ge=8)
    """Ungated FFN hidden width at this size (default: the proxy's)."""
    num_experts: int | None = Field(None, ge=1)
    """Experts per MoE layer at this size (default: the proxy's)."""
    top_k: int | None = Field(None, ge=1)
    """Experts each token is routed to at this size (default: the proxy's)."""
    steps: int | None = Field(None, ge=1)
    """Optimizer steps per training at this size (default: the proxy's train.steps)."""
    warmup_steps: int | None = Field(None, ge=1)
    """Warm-up steps at this size (default: the proxy's)."""
    micro_batch: int | None = Field(None, ge=1)
    """Sequences per rank per step at this size (default: the proxy's)."""
    lr: float | None = Field(None, gt=0)
    """Peak learning rate at this size (default: the proxy's; wider models often want less)."""
    eval_interval: int | None = Field(None, ge=0)
    """val_loss every this many steps at this size, for learning curves (default: the proxy's)."""
    tokens: Literal["fixed", "per_param"] = "fixed"
    """How long this size trains: "fixed", the proxy's steps (or `steps`); "per_param", the proxy's steps (and
    warm-up) times this size's active parameters over the proxy's (the first activation everywhere), so every
    size sees the same tokens per parameter, as compute-optimal scaling does. A comparison at a fixed token
    count and at a compute-optimal one can differ; the records keep what each size trained."""

    @model_validator(mode="after")
    def _one_length(self) -> Size:
        if self.tokens == "per_param" and self.steps is not None:
            raise ValueError(f"steps {self.steps} and tokens 'per_param' both set the length; allowed: one of them")
        return self

    def overrides(self) -> dict[str, dict[str, object]]:
        """The keys this size sets, by the section they replace."""
        sections = {"model": ModelSpec.model_fields, "train": TrainSpec.model_fields}
        set_ = self.model_dump(exclude_none=True, exclude={"name", "tokens"})
        return {section: {k: v for k, v in set_.items() if k in fields} for section, fields in sections.items()}


BASE_SHAPE = ("base_d_model", "base_d_ff", "base_n_heads", "base_n_layers")  # a ladder's sizes take the proxy's
CLIMBS = ("n_layers", "d_model", "d_ff", "num_experts")  # a ladder's sizes never shrink in these, and grow in one
PROXY = "proxy"  # the name of the space's own size on its ladder


class Space(_Section):
    name: str = Field(pattern=rf"^{STUDY_NAME}$")
    """Default study name for searches over this space."""
    description: str = ""
    activations: list[Activation] | None = Field(None, min_length=1, examples=[["gelu", "swiglu"]])
    """Choices for every layer (use this or per_layer)."""
    per_layer: list[list[Activation]] | None = Field(
        None, examples=[[["gelu", "swiglu"], ["gelu", "swiglu"], ["swiglu"], ["gelu", "swiglu"]]]
    )
    """One list of choices per layer, as long as model.n_layers (use this or activations)."""
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    search: SearchSpec = SearchSpec()
    scale: list[Size] = Field(default_factory=list)
    """The scale ladder (`[[scale]]` tables), smallest first: larger sizes of this model, to which `moesearch
    promote` carries a study's answer. Each size is at least the one before in d_model, d_ff and num_experts
    and larger in one."""

    @model_validator(mode="after")
    def _choices(self) -> Space:
        if (self.activations is None) == (self.per_layer is None):
            raise ValueError("give exactly one of 'activations' (all layers) or 'per_layer'")
        if self.per_layer is not None:
            if len(self.per_layer) != self.model.n_layers:
                raise ValueError(
                    f"per_layer has {len(self.per_layer)} lists but model.n_layers is {self.model.n_layers}"
                )
            if not all(self.per_layer):
                raise ValueError("every per_layer list needs at least one activation")
        if self.train.warmup_steps >= self.train.steps:
            raise ValueError(
                f"train.warmup_steps {self.train.warmup_steps} must be below train.steps {self.train.steps}"
            )
        self._check_mixes()
        self._check_rungs()
        self._check_design()
        self._check_builder()
        self._check_scale()
        if not self.train.deployment_eval and (needs := [o for o in self.search.objectives if o in DEPLOYMENT_METRICS]):
            raise ValueError(
                f"search.objectives: {needs[0]!r} is measured only with train.deployment_eval = true (it is false here)"
            )
        tokens = self.train.micro_batch * self.model.seq_len
        if self.model.min_capacity > tokens:
            raise ValueError(
                f"model.min_capacity {self.model.min_capacity} exceeds the {tokens} tokens of a "
                "micro-batch (train.micro_batch x model.seq_len); DeepSpeed's gate refuses that"
            )
        return self

    def _check_builder(self) -> None:
        """A model of one's own: its costs are measured (parameters counted from the module), never computed
        from the shipped blocks' formulas."""
        if self.model.builder == SHIPPED_BUILDER:
            return
        if self.model.parametrization != "standard":
            raise ValueError(
                f"model.parametrization {self.model.parametrization!r}: its readout, attention and branch "
                f"multipliers live in the shipped blocks' forward, not in model.builder {self.model.builder!r}'s; "
                "allowed: 'standard' with a model of your own"
            )
        if "train_flops_per_token" in self.search.objectives:
            raise ValueError(
                f"search.objectives: 'train_flops_per_token' is known only for the shipped blocks, not for "
                f"model.builder {self.model.builder!r}; allowed: params_active or params_total (counted)"
            )
        for name in ("params_total", "params_active"):
            if name in self.search.objectives and name not in self.search.reference:
                raise ValueError(
                    f"reference.{name} is missing: with model.builder {self.model.builder!r} the costliest "
                    "assignment's parameters are counted only once trained, so give the worst value worth counting"
                )
        if any(size.tokens == "per_param" for size in self.scale):
            raise ValueError(
                f"scale: tokens 'per_param' counts the shipped blocks' parameters, not model.builder "
                f"{self.model.builder!r}'s; allowed: tokens 'fixed' (set each size's steps)"
            )

    def _check_design(self) -> None:
        if self.search.design == "none":
            return
        choices = self.layer_choices()
        if design.fit([c for c in choices if len(c) > 1]) is None:
            raise ValueError(design.too_large(choices))
        needed = len({tuple(a) for a in design.runs(choices) + self.uniform_assignments()})
        if self.search.trials < needed:
            raise ValueError(
                f"search.trials {self.search.trials} is below the {needed} trials search.design "
                f"'orthogonal' queues (the baselines and the design's runs); allowed: trials >= "
                f"{needed}, or design = 'none'"
            )

    def _check_scale(self) -> None:
        names = [PROXY]
        below = self.model
        for i, size in enumerate(self.scale):
            where = f"scale.{i} ({size.name})"
            if size.name in names:
                raise ValueError(f"{where}: the name is taken; allowed: a name other than {', '.join(names)}")
            names.append(size.name)
            if size.n_layers is not None:
                self._check_depth(where, size.n_layers, below)
            model = self.at_size(size.name).model
            if not all(getattr(model, k) >= getattr(below, k) for k in CLIMBS) or all(
                getattr(model, k) == getattr(below, k) for k in CLIMBS
            ):
                was = ", ".join(f"{k} {getattr(below, k)}" for k in CLIMBS)
                now = ", ".join(f"{k} {getattr(model, k)}" for k in CLIMBS)
                raise ValueError(
                    f"{where}: {now} does not climb from the size below ({was}); allowed: each of "
                    f"{', '.join(CLIMBS)} at least the size below's, and one of them larger"
                )
            below = model

    def _check_depth(self, where: str, n_layers: int, below: ModelSpec) -> None:
        if n_layers % below.n_layers:
            raise ValueError(
                f"{where}: n_layers {n_layers} is not a multiple of the size below's {below.n_layers}, so its "
                f"layers do not split into blocks; allowed: a multiple of {below.n_layers}"
            )
        if n_layers != below.n_layers and self.model.moe_every != 1:
            raise ValueError(
                f"{where}: n_layers {n_layers} changes the depth, but model.moe_every is {self.model.moe_every}, "
                "so a block would mix dense and MoE layers; allowed: moe_every = 1 on a ladder that grows in depth"
            )

    def sizes(self) -> list[str]:
        """The ladder's sizes, smallest first: the proxy (this space as written), then each [[scale]]."""
        return [PROXY] + [size.name for size in self.scale]

    def with_vocab(self, vocab: int) -> Space:
        """This space with the data's vocabulary as `model.vocab_size`, or its own where larger (padded);
        InputError where its own is smaller."""
        given = self.model.vocab_size
        if given is not None and given < vocab:
            raise InputError(
                f"model.vocab_size: {given} is smaller than the data's vocabulary ({vocab}: its largest token id "
                f"+ 1, or the tokenizer's); allowed: {vocab} or more, or leave it out"
            )
        return self.model_copy(update={"model": self.model.model_copy(update={"vocab_size": given or vocab})})

    def at_size(self, name: str) -> Space:
        """This space at one size of its ladder (with no ladder of its own); InputError for an unknown size."""
        if name == PROXY:
            return self.model_copy(update={"scale": []})
        found = [size for size in self.scale if size.name == name]
        if not found:
            raise InputError(
                f"--size: {name!r} is not a size of space {self.name!r}; allowed: {', '.join(self.sizes())}"
            )
        raw = self.model_dump(exclude={"scale"})
        if self.model.parametrization != "standard":  # every size scales from the proxy's shape
            shape = ("d_model", "d_ff", "n_heads") + (
                ("n_layers",) if self.model.parametrization == "completep" else ()
            )
            raw["model"] |= {f"base_{k}": raw["model"][f"base_{k}"] or raw["model"][k] for k in shape}
        for section, keys in found[0].overrides().items():
            raw[section] |= keys
        if (n := raw["model"]["n_layers"]) != self.model.n_layers:
            if self.per_layer is not None:  # each layer's choices over its block of the depth
                raw["per_layer"] = [raw["per_layer"][block_of(j, n, self.model.n_layers)] for j in range(n)]
            # a deeper size trains the proxy's assignments deepened (`moesearch promote`), never a design of its
            # own, whose runs would mix activations within a block
            raw["search"]["design"] = "none"
        try:
            sized = Space.model_validate(raw)
        except ValidationError as e:
            raise ValueError(f"scale.{self.scale.index(found[0])} ({name}): {_one_line(e)}") from None
        return sized if found[0].tokens == "fixed" else self._per_param(sized, found[0])

    def _per_param(self, sized: Space, size: Size) -> Space:
        """`sized` trained as many tokens per active parameter as the proxy: its steps (and warm-up, unless the
        size sets it) times the ratio of active parameters, of the first activation everywhere."""
        from moesearch.core.costs import costs  # costs reads the model spec: imported where it is needed

        def active(space: Space) -> int:
            first = [choices[0] for choices in space.layer_choices()]
            return costs(space.model, first, space.train.micro_batch).params_active

        ratio = active(sized) / active(self)
        train = {"steps": round(self.train.steps * ratio)}
        if size.warmup_steps is None:
            train["warmup_steps"] = max(1, round(self.train.warmup_steps * ratio))
        raw = sized.model_dump()
        raw["train"] |= train
        return Space.model_validate(raw)

    def _check_mixes(self) -> None:
        """A mix of activations splits an MoE layer's experts by its run (`activations.run`): MoE layers only, the
        run's length dividing the experts."""
        for i, choices in enumerate(self.layer_choices()):
            for choice in (c for c in choices if len(parts(c)) > 1):
                if not self.model.is_moe(i):
                    raise ValueError(
                        f"layer {i} takes mix {choice!r}, but it is a dense layer (model.moe_every "
                        f"{self.model.moe_every}); allowed: mixes in MoE layers only"
                    )
                if self.model.num_experts % len(run(choice)):
                    raise ValueError(
                        f"mix {choice!r}: its run of {len(run(choice))} experts does not divide model.num_experts "
                        f"{self.model.num_experts}; allowed: a mix whose expert counts sum to a divisor of it"
                    )

    def _check_rungs(self) -> None:
        pruning, steps, interval = self.search.pruning, self.train.steps, self.train.eval_interval
        if pruning.method == "none":
            return
        key = "search.pruning.rungs"
        if not pruning.rungs:
            unit = interval or 1
            raise ValueError(
                f"{key} is empty: method {pruning.method!r} needs the steps to stop at, e.g. "
                f"[{max(unit, steps // 9 // unit * unit)}, {max(unit, steps // 3 // unit * unit)}]"
            )
        if any(b <= a for a, b in itertools.pairwise(pruning.rungs)):
            raise ValueError(f"{key} {pruning.rungs} must be strictly increasing")
        if late := [r for r in pruning.rungs if not 1 <= r < steps]:
            raise ValueError(
                f"{key}: rung {late[0]} is not before the last step; allowed: 1 to {steps - 1} (train.steps is {steps})"
            )
        if not interval:
            raise ValueError(
                f"{key}: pruning needs learning curves, but train.eval_interval is 0 (val_loss only "
                "at the last step); set train.eval_interval so that it divides every rung"
            )
        if off := [r for r in pruning.rungs if r % interval]:
            raise ValueError(
                f"{key}: rung {off[0]} is not a multiple of train.eval_interval {interval} (no "
                f"val_loss is measured there); allowed: multiples of {interval} below {steps}"
            )
        if problem := not_at_rung(self.search.objectives):  # else the first rung would have nothing to rank
            raise ValueError(f"search.objectives with search.pruning.method {pruning.method!r}: {problem}")

    def layer_choices(self) -> list[list[str]]:
        """The allowed activations of every layer, in layer order."""
        if self.per_layer is not None:
            return [list(dict.fromkeys(c)) for c in self.per_layer]
        return [list(dict.fromkeys(self.activations))] * self.model.n_layers

    def size(self) -> int:
        """Number of distinct assignments."""
        return math.prod(len(c) for c in self.layer_choices())

    def uniform_assignments(self) -> list[list[str]]:
        """All-X assignments for every X that every layer allows: the baselines."""
        return [list(a) for a in uniform(self.layer_choices())]

    def check_assignment(self, layers: list[str], flag: str = "--layers") -> None:
        """Raise InputError unless `layers` is one activation per layer, each allowed there."""
        choices = self.layer_choices()
        if len(layers) != len(choices):
            raise InputError(f"{flag}: {len(layers)} activations given, the space has {len(choices)} layers")
        for i, (a, allowed) in enumerate(zip(layers, choices, strict=True)):
            if a not in allowed:
                raise InputError(f"{flag}: layer {i} activation {a!r} not allowed here; allowed: {', '.join(allowed)}")

    def ep_size(self, world_size: int, node_ranks: int | None = None) -> int:
        """Expert-parallel size for `world_size` ranks, `node_ranks` of them on each node (default: all on one);
        InputError when it cannot work."""
        experts = self.model.num_experts
        ep = self.search.ep_size or math.gcd(experts, node_ranks or world_size)
        if experts % ep or world_size % ep:
            allowed = ", ".join(str(d) for d in _divisors(math.gcd(experts, world_size)))
            raise InputError(
                f"search.ep_size {ep} must divide both model.num_experts ({experts}) and the rank count "
                f"(--nproc {world_size}); allowed: {allowed}"
            )
        return ep


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def load(path: str | Path) -> Space:
    """Read and validate a space file, or a shipped space by name; raise InputError on any problem."""
    path = resolve(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML: {e}") from None
    try:
        return Space.model_validate(raw)
    except ValidationError as e:
        raise InputError(f"{path}: {_one_line(e)}") from None


def resolve(name_or_path: str | Path) -> Path:
    """A path as given if it exists, else the shipped space of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SHIPPED_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    raise InputError(
        f"SPACE: {str(name_or_path)!r} is neither a file nor a shipped space; shipped: {', '.join(shipped_names())}"
    )


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.toml"))


def _one_line(error: ValidationError) -> str:
    """The first validation error as 'key: problem (got value); allowed: ...'."""
    err = error.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(err["loc"][:-1])
        return f"{key}: unknown key; allowed keys here: {', '.join(allowed)}"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":
        return f"{key}: {message}" if err["loc"] else message
    return f"{key}: {message} (got {err['input']!r})"


def _fields_at(loc: tuple) -> list[str]:
    model: type[BaseModel] = Space
    for part in loc:
        if isinstance(part, int):  # an item of a list of tables, as [[scale]]
            continue
        annotation = model.model_fields[part].annotation
        annotation = next(iter(getattr(annotation, "__args__", ())), annotation)  # list[Size] -> Size
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)
