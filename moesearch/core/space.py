"""Search-space files: TOML validated by pydantic into a `Space`, the one description of a search.

A space says which activations each layer may take (here), the model and training every trial shares and
which metrics the study optimises (its sections, core/sections.py), and the larger sizes its answer is
carried to (core/scale.py). Field docstrings are the documentation (`moesearch spaces show`).
"""

from __future__ import annotations

import importlib.resources
import itertools
import math
import tomllib
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from moesearch.core import design
from moesearch.core import scale as scale_ladder  # the module; `Space.scale` is its sizes
from moesearch.core.activations import Activation, parts, run
from moesearch.core.assignment import uniform
from moesearch.core.errors import InputError
from moesearch.core.metrics import not_at_rung
from moesearch.core.scale import Size
from moesearch.core.sections import (
    DEPLOYMENT_METRICS,
    SHIPPED_BUILDER,
    STUDY_NAME,
    ModelSpec,
    SearchSpec,
    Section,
    TrainSpec,
    one_line,
)

# package data (pyproject.toml), so a wheel install has them too: the repository's search_spaces/, linked in
SHIPPED_DIR = Path(str(importlib.resources.files("moesearch"))) / "search_spaces"


class Space(Section):
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
        scale_ladder.check(self)
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

    def sizes(self) -> list[str]:
        """The ladder's sizes, smallest first: the proxy (this space as written), then each [[scale]]."""
        return scale_ladder.sizes(self)

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
        return scale_ladder.at_size(self, name)

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
        raise InputError(f"{path}: {one_line(e, Space)}") from None


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
