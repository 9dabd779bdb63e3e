"""A space's scale ladder: the larger sizes of its model (`[[scale]]`), to which `moesearch promote` carries
a study's answer. A size replaces some of the proxy's model and training keys; `at_size` gives the space
at one size, and `check` refuses a ladder that does not climb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError, model_validator

from moesearch.core.assignment import block_of
from moesearch.core.errors import InputError
from moesearch.core.sections import STUDY_NAME, ModelSpec, Section, TrainSpec, one_line

if TYPE_CHECKING:  # a Space holds its sizes: its module imports this one
    from moesearch.core.space import Space


class Size(Section):
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


CLIMBS = ("n_layers", "d_model", "d_ff", "num_experts")  # a ladder's sizes never shrink in these, and grow in one
PROXY = "proxy"  # the name of the space's own size on its ladder


def check(space: Space) -> None:
    """Every size climbs from the one below, each name once, each depth a multiple of the one below's."""
    names = [PROXY]
    below = space.model
    for i, size in enumerate(space.scale):
        where = f"scale.{i} ({size.name})"
        if size.name in names:
            raise ValueError(f"{where}: the name is taken; allowed: a name other than {', '.join(names)}")
        names.append(size.name)
        if size.n_layers is not None:
            _check_depth(space, where, size.n_layers, below)
        model = at_size(space, size.name).model
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


def _check_depth(space: Space, where: str, n_layers: int, below: ModelSpec) -> None:
    if n_layers % below.n_layers:
        raise ValueError(
            f"{where}: n_layers {n_layers} is not a multiple of the size below's {below.n_layers}, so its "
            f"layers do not split into blocks; allowed: a multiple of {below.n_layers}"
        )
    if n_layers != below.n_layers and space.model.moe_every != 1:
        raise ValueError(
            f"{where}: n_layers {n_layers} changes the depth, but model.moe_every is {space.model.moe_every}, "
            "so a block would mix dense and MoE layers; allowed: moe_every = 1 on a ladder that grows in depth"
        )


def sizes(space: Space) -> list[str]:
    """The ladder's sizes, smallest first: the proxy (the space as written), then each [[scale]]."""
    return [PROXY] + [size.name for size in space.scale]


def at_size(space: Space, name: str) -> Space:
    """`space` at one size of its ladder (with no ladder of its own); InputError for an unknown size."""
    if name == PROXY:
        return space.model_copy(update={"scale": []})
    found = [size for size in space.scale if size.name == name]
    if not found:
        raise InputError(f"--size: {name!r} is not a size of space {space.name!r}; allowed: {', '.join(sizes(space))}")
    raw = space.model_dump(exclude={"scale"})
    if space.model.parametrization != "standard":  # every size scales from the proxy's shape
        shape = ("d_model", "d_ff", "n_heads") + (("n_layers",) if space.model.parametrization == "completep" else ())
        raw["model"] |= {f"base_{k}": raw["model"][f"base_{k}"] or raw["model"][k] for k in shape}
    for section, keys in found[0].overrides().items():
        raw[section] |= keys
    if (n := raw["model"]["n_layers"]) != space.model.n_layers:
        if space.per_layer is not None:  # each layer's choices over its block of the depth
            raw["per_layer"] = [raw["per_layer"][block_of(j, n, space.model.n_layers)] for j in range(n)]
        # a deeper size trains the proxy's assignments deepened (`moesearch promote`), never a design of its
        # own, whose runs would mix activations within a block
        raw["search"]["design"] = "none"
    try:
        sized = type(space).model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"scale.{space.scale.index(found[0])} ({name}): {one_line(e, type(space))}") from None
    return sized if found[0].tokens == "fixed" else _per_param(space, sized, found[0])


def _per_param(space: Space, sized: Space, size: Size) -> Space:
    """`sized` trained as many tokens per active parameter as the proxy: its steps (and warm-up, unless the
    size sets it) times the ratio of active parameters, of the first activation everywhere."""
    from moesearch.core.costs import costs  # costs reads the model spec: imported where it is needed

    def active(one: Space) -> int:
        first = [choices[0] for choices in one.layer_choices()]
        return costs(one.model, first, one.train.micro_batch).params_active

    ratio = active(sized) / active(space)
    train = {"steps": round(space.train.steps * ratio)}
    if size.warmup_steps is None:
        train["warmup_steps"] = max(1, round(space.train.warmup_steps * ratio))
    raw = sized.model_dump()
    raw["train"] |= train
    return type(space).model_validate(raw)
