"""A decoder-only transformer whose FFNs are DeepSpeed MoE layers, one activation per layer.

The per-layer activation is data: `layers[i]` names block i's activation, and an MoE block simply gets
an expert module of that activation. The model knows nothing of engines or process groups; `ep_size`
is a number handed to `deepspeed.moe.layer.MoE`, which sets up its own expert-parallel group.
Two blocks (`ModelSpec.block`): GPT-2's (LayerNorm, a learned position table) and Llama's (RMSNorm,
rotary positions); the rest is shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from deepspeed.moe.layer import MoE
from torch import nn

from moesearch.core.activations import REGISTRY, hidden_width, is_gated, of_experts, parts
from moesearch.core.sections import ModelSpec
from moesearch.ranks import learnable, parametrization
from moesearch.ranks.streams import generator

# The torch function of each nonlinearity the registry names (`ActivationSpec.nonlinearity`); a class is a
# learnable one, made anew for every FFN (`ranks/learnable.py`).
NONLINEARITIES = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "relu2": lambda x: F.relu(x).square(),
    "xielu": learnable.XIELU,
    "polynorm": learnable.PolyNorm,
}


class FFN(nn.Module):
    """Bias-free feed-forward: act(x W_in) W_out, or act(x W) * (x V) W_out when gated (W, V fused)."""

    def __init__(self, d_model: int, hidden: int, activation: str):
        super().__init__()
        self.activation = activation
        self.gated = is_gated(activation)
        self.smooth = REGISTRY[activation].smooth  # read by the quantized evaluation only
        found = NONLINEARITIES[REGISTRY[activation].nonlinearity]
        self.nonlinearity = found() if isinstance(found, type) else found  # a module: its parameters are the FFN's
        self.w_in = nn.Linear(d_model, hidden * (2 if self.gated else 1), bias=False)
        self.w_out = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x_TD: torch.Tensor) -> torch.Tensor:
        h_TF = self.w_in(x_TD)
        if self.gated:
            a_TF, gate_TF = h_TF.chunk(2, dim=-1)
            h_TF = self.nonlinearity(a_TF) * gate_TF
        else:
            h_TF = self.nonlinearity(h_TF)
        return self.w_out(h_TF)

    def reset_parameters(self, generator: torch.Generator | None, spec: ModelSpec) -> None:
        parametrization.draw(self.w_in.weight, "w_in.weight", spec, generator)
        parametrization.draw(self.w_out.weight, "w_out.weight", spec, generator)


class Rotary(nn.Module):
    """Rotary position embeddings (RoFormer; Llama's base 10,000): each head's dimension pairs (i, i + d/2)
    rotated by the position times a frequency, so a query-key product sees only their distance."""

    def __init__(self, d_head: int, seq_len: int, base: float = 10_000.0):
        super().__init__()
        freqs_F = base ** -(torch.arange(d_head // 2, dtype=torch.float32) / (d_head // 2))
        angles_TF = torch.arange(seq_len, dtype=torch.float32)[:, None] * freqs_F[None]
        self.register_buffer("cos_TF", angles_TF.cos(), persistent=False)  # derived, not state: not checkpointed
        self.register_buffer("sin_TF", angles_TF.sin(), persistent=False)

    def forward(self, x_BHTd: torch.Tensor) -> torch.Tensor:
        T = x_BHTd.shape[2]
        cos, sin = self.cos_TF[:T].to(x_BHTd.dtype), self.sin_TF[:T].to(x_BHTd.dtype)
        a, b = x_BHTd.chunk(2, dim=-1)
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.n_heads = spec.n_heads
        self.scale = spec.attention_scale()  # None: 1/sqrt(d_head); muP: 1/d_head
        self.qkv = nn.Linear(spec.d_model, 3 * spec.d_model, bias=False)
        self.out = nn.Linear(spec.d_model, spec.d_model, bias=False)
        self.rotary = Rotary(spec.d_model // spec.n_heads, spec.seq_len) if spec.block == "llama" else None

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in self.qkv(x_BTD).split(D, -1))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y_BHTd = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.out(y_BHTd.transpose(1, 2).reshape(B, T, D))


def ffn_layer(spec: ModelSpec, activation: str, moe: bool, ep_size: int) -> FFN | MoE:
    """moesearch's FFN factory, the one part of a model the search varies: a bias-free FFN of `activation`
    at the width the space's width policy gives it, or a DeepSpeed MoE layer of such experts (top-k gating,
    aux loss, expert parallelism over `ep_size` ranks). Every builder (`model.builder`) makes block i's
    FFN with it, `ffn_layer(spec, layers[i], spec.is_moe(i), ep_size)`."""
    first = parts(activation)[0]  # a mix's experts are made by `mix_experts`, once the rank's share is known
    ffn = FFN(spec.d_model, hidden_width(first, spec.d_ff, spec.width_policy, spec.width_multiple), first)
    if not moe:
        return ffn
    return MoE(
        hidden_size=spec.d_model,
        expert=ffn,
        num_experts=spec.num_experts,
        ep_size=ep_size,
        k=spec.top_k,
        capacity_factor=spec.capacity_factor,
        eval_capacity_factor=spec.eval_capacity_factor,
        min_capacity=spec.min_capacity,
        drop_tokens=True,  # fixed-size buffers: no per-step shape exchange
    )


def norm(spec: ModelSpec) -> nn.Module:
    """The block's normalisation: LayerNorm without bias (GPT-2's, as nanoGPT), or RMSNorm (Llama's)."""
    return nn.LayerNorm(spec.d_model, bias=False) if spec.block == "gpt2" else nn.RMSNorm(spec.d_model)


class Block(nn.Module):
    def __init__(self, spec: ModelSpec, activation: str, moe: bool, ep_size: int):
        super().__init__()
        self.norm1 = norm(spec)
        self.attn = Attention(spec)
        self.norm2 = norm(spec)
        self.branch_mult = 1 / spec.depth_mult()  # CompleteP's 1 / m_L on each residual branch; 1 otherwise
        self.ffn = ffn_layer(spec, activation, moe, ep_size)

    def forward(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns the block output, its aux (load-balancing) loss, and tokens routed per expert (None if dense)."""
        x_BTD = x_BTD + self.branch_mult * self.attn(self.norm1(x_BTD))
        h_BTD = self.norm2(x_BTD)
        if isinstance(self.ffn, MoE):
            y_BTD, l_aux, counts_E = self.ffn(h_BTD)
            return x_BTD + self.branch_mult * y_BTD, l_aux, counts_E
        return x_BTD + self.branch_mult * self.ffn(h_BTD), x_BTD.new_zeros(()), None


class Transformer(nn.Module):
    def __init__(self, spec: ModelSpec, layers: list[str] | tuple[str, ...], ep_size: int):
        super().__init__()
        self.embed = nn.Embedding(spec.vocab, spec.d_model)
        self.pos = nn.Embedding(spec.seq_len, spec.d_model) if spec.block == "gpt2" else None  # llama: rotary
        self.blocks = nn.ModuleList(Block(spec, act, spec.is_moe(i), ep_size) for i, act in enumerate(layers))
        self.norm = norm(spec)
        self.readout_mult = 1 / spec.width_mults()[0]  # muP's 1/m on the logits; 1 under the standard

    def forward(self, idx_BT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Logits, the summed aux loss of every MoE layer, and per-MoE-layer expert token counts."""
        x_BTD = self.embed(idx_BT)
        if self.pos is not None:
            x_BTD = x_BTD + self.pos(torch.arange(idx_BT.shape[1], device=idx_BT.device))
        aux, counts = x_BTD.new_zeros(()), []
        for block in self.blocks:
            x_BTD, l_aux, counts_E = block(x_BTD)
            aux = aux + l_aux
            if counts_E is not None:
                counts.append(counts_E)
        logits_BTV = self.norm(x_BTD) @ self.embed.weight.T  # tied input/output embedding
        if self.readout_mult != 1:
            logits_BTV = logits_BTV * self.readout_mult
        return logits_BTV, aux, counts


def transformer(spec: ModelSpec, layers: tuple[str, ...], ep_size: int) -> Transformer:
    """The shipped builder (`model.builder`'s default): GPT-2's or Llama's block, as `spec.block` says."""
    return Transformer(spec, layers, ep_size)


def mix_experts(model: nn.Module, spec: ModelSpec, layers: tuple[str, ...], first_expert: int) -> None:
    """Give each MoE layer whose choice is a mix its experts' own activations: local expert j of this rank is
    global expert first_expert + j (`activations.of_experts`). DeepSpeed deep-copied one expert into all of
    them and marked its parameters as expert parameters (not all-reduced, their expert group): the new ones
    are marked alike."""
    for i, moe in moe_layers(model):
        if len(parts(layers[i])) == 1:
            continue
        experts = moe.deepspeed_moe.experts.deepspeed_experts
        wanted = of_experts(layers[i], spec.num_experts)
        for j, old in enumerate(experts):
            activation = wanted[first_expert + j]
            if activation == old.activation:
                continue
            new = FFN(
                spec.d_model, hidden_width(activation, spec.d_ff, spec.width_policy, spec.width_multiple), activation
            )
            group = next(old.parameters()).group_name
            for p in new.parameters():
                p.allreduce, p.group_name = False, group
            experts[j] = new


def moe_layers(model: nn.Module) -> Iterator[tuple[int, MoE]]:
    """(block index, MoE layer) for every MoE block of a built model."""
    for i, block in enumerate(model.blocks):
        if isinstance(block.ffn, MoE):
            yield i, block.ffn


def init_weights(model: nn.Module, spec: ModelSpec, seed: int, first_expert: int, streams: str) -> None:
    """Draw every matrix of a built model: dense ones (embeddings, attention, routers, dense FFNs) and each
    local expert, at the std the parametrization gives its name (`ranks/parametrization.py`).

    Expert j of this rank is global expert `first_expert + j`; its stream depends only on the seed, the
    layer and that global index, so the model is the same whatever the expert-parallel size (DeepSpeed
    deep-copies one expert into all of them, so each must be drawn anew).
    'crn': each matrix from its own stream (ranks/streams.py), so a layer's activation changes nothing
    else. 'global': dense matrices from the global generator, as seeded before construction (whose
    draws depend on every FFN's shape): how records before common random numbers were made.
    """
    crn = streams == "crn"
    for name, p in model.named_parameters():
        if p.dim() == 2 and "deepspeed_experts" not in name:
            parametrization.draw(p, name, spec, generator(seed, name) if crn else None)
    for layer, moe in moe_layers(model):
        for j, expert in enumerate(moe.deepspeed_moe.experts.deepspeed_experts):
            index = first_expert + j
            g = (
                generator(seed, "expert", layer, index)
                if crn
                else torch.Generator().manual_seed(hash((seed, layer, index)) & 0x7FFF_FFFF)
            )
            expert.reset_parameters(g, spec)


@contextmanager
def exact_routing(model: nn.Module) -> Iterator[None]:
    """Route by the gate's scores alone inside the block: the same weights and tokens give the same routing
    and loss in every pass.

    DeepSpeed's gates draw noise in evaluation too: top-2 picks its second expert by Gumbel sampling
    (`top2_2nd_expert_sampling`), top-1 keeps random tokens when an expert overflows (`use_rts`). Training
    keeps both (the exploration they exist for); every evaluation turns them off.
    """
    gates = [moe.deepspeed_moe.gate for _, moe in moe_layers(model)]
    saved = [(gate.top2_2nd_expert_sampling, gate.use_rts) for gate in gates]
    for gate in gates:
        gate.top2_2nd_expert_sampling = gate.use_rts = False
    try:
        yield
    finally:
        for gate, (sampling, rts) in zip(gates, saved, strict=True):
            gate.top2_2nd_expert_sampling, gate.use_rts = sampling, rts
