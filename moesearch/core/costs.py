"""Analytic cost of one assignment: parameters and training FLOPs per token (no torch needed).

Forward FLOPs per token, a multiply-add counting 2 (PaLM's and the DeepSpeed flops profiler's convention):
    attention projections   8 d^2                    per layer (Q, K, V, output)
    attention scores+mix    4 T d                    per layer (full T x T, causal mask not discounted)
    dense FFN               2 P_ffn                  (4 d f ungated, 6 d f_g gated)
    MoE FFN                 2 d E + (E C / S) 2 P_expert
                            router, then every expert's buffer of C slots, padded or not:
                            C = max(ceil(k c S / E), m), S tokens per rank per micro-batch,
                            c the training capacity factor, m the minimum capacity
    LM head                 2 d V
Training FLOPs per token = 3 x forward (backward costs twice the forward).

Parameters: total = dense + sum over MoE layers (E P_expert + d E);
active per token = dense + sum over MoE layers (k P_expert + d E).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesearch.core.activations import choice_params
from moesearch.core.sections import ModelSpec


@dataclass(frozen=True)
class Costs:
    params_total: int
    params_active: int
    train_flops_per_token: int | None  # None: a model of one's own (`ranks/builder.counted`)


def expert_capacity(spec: ModelSpec, tokens_per_rank: int) -> int:
    """Slots per expert per rank, as DeepSpeed's top-k gate sizes them (drop_tokens=True).

    DeepSpeed multiplies in float32 (a Python float times a float32 tensor), so we do too: in float64
    the ceiling can land one slot higher for factors that are not exact binary fractions.
    """
    per_expert = np.float32(tokens_per_rank / spec.num_experts) * np.float32(spec.capacity_factor * spec.top_k)
    return max(int(np.ceil(per_expert)), spec.min_capacity)


def costs(spec: ModelSpec, layers: list[str] | tuple[str, ...], micro_batch: int) -> Costs:
    d, E, V = spec.d_model, spec.num_experts, spec.vocab
    S = micro_batch * spec.seq_len
    C = expert_capacity(spec, S)
    positions = spec.seq_len * d if spec.block == "gpt2" else 0  # learned table; rotary ones have no parameters
    shared = V * d + positions + d  # tied embedding/head, positions, final norm
    total = active = shared
    forward = 2 * d * V
    for i, act in enumerate(layers):
        per_part = choice_params(act, d, spec.d_ff, spec.width_policy, spec.width_multiple)
        ffn = per_part[0]
        block = 4 * d * d + 2 * d  # attention projections, two norms
        forward += 8 * d * d + 4 * spec.seq_len * d
        if spec.is_moe(i):
            experts = sum(per_part) * E // len(per_part)  # a mix's run of experts, stretched over E
            # a token's k experts: a mix's mean expert (exact where its parts have one size: width_policy "params")
            total += block + experts + d * E
            active += block + spec.top_k * experts // E + d * E
            forward += 2 * d * E + 2 * experts * C / S
        else:
            total += block + ffn
            active += block + ffn
            forward += 2 * ffn
    return Costs(params_total=total, params_active=active, train_flops_per_token=round(3 * forward))
