"""The hypervolume reference point of a space, fixed before its search starts (light: no torch).

Hypervolume only compares fronts measured against the same point, so the point comes from the space
alone: an explicit `search.reference`, else a natural bound of each objective (metrics.REFERENCE_RULE).
"""

from __future__ import annotations

import math
import statistics

from moesearch.core.activations import choice_params
from moesearch.core.costs import costs
from moesearch.core.metrics import REFERENCE_RULE
from moesearch.core.space import Space

_MARGIN = 1.1  # the costliest assignment still adds volume
GAP_REFERENCE = 1.0  # nats/token: a quantization gap this large leaves nothing worth deploying


def reference_point(space: Space) -> dict[str, float]:
    """objective -> reference value, in the order of the space's objectives."""
    given = space.search.reference
    return {name: given[name] if name in given else _natural(space, name) for name in space.search.objectives}


def _natural(space: Space, metric: str) -> float:
    rule = REFERENCE_RULE[metric]
    if rule == "uniform":
        return math.log(space.model.vocab)
    if rule == "zero":
        return 0.0
    if rule == "gap":
        return GAP_REFERENCE
    return _MARGIN * getattr(costs(space.model, costliest(space), space.train.micro_batch), metric)


def costliest(space: Space) -> list[str]:
    """Per layer the activation with the most FFN parameters: costs add up per layer, so this maximises them."""
    m = space.model
    return [
        max(c, key=lambda a: statistics.mean(choice_params(a, m.d_model, m.d_ff, m.width_policy, m.width_multiple)))
        for c in space.layer_choices()
    ]
