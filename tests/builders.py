"""Models of one's own for `model.builder` (tests/test_builder.py): a parallel block (GPT-J's: attention and
FFN read the same normed input and add to the stream together), and one that breaks the contract."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from deepspeed.moe.layer import MoE
from torch import nn

from moesearch.ranks.model import ffn_layer


class ParallelBlock(nn.Module):
    def __init__(self, spec, activation: str, moe: bool, ep_size: int):
        super().__init__()
        self.norm = nn.RMSNorm(spec.d_model)
        self.attn = nn.MultiheadAttention(spec.d_model, spec.n_heads, bias=False, batch_first=True)
        self.ffn = ffn_layer(spec, activation, moe, ep_size)

    def forward(self, x_BTD: torch.Tensor):
        h_BTD = self.norm(x_BTD)
        T = x_BTD.shape[1]
        mask_TT = torch.ones(T, T, dtype=torch.bool, device=x_BTD.device).triu(1)
        a_BTD = self.attn(h_BTD, h_BTD, h_BTD, attn_mask=mask_TT, need_weights=False)[0]
        if isinstance(self.ffn, MoE):
            f_BTD, aux, counts_E = self.ffn(h_BTD)
            return x_BTD + a_BTD + f_BTD, aux, counts_E
        return x_BTD + a_BTD + self.ffn(h_BTD), x_BTD.new_zeros(()), None


class Parallel(nn.Module):
    def __init__(self, spec, layers, ep_size: int):
        super().__init__()
        self.embed = nn.Embedding(spec.vocab, spec.d_model)
        self.blocks = nn.ModuleList(ParallelBlock(spec, a, spec.is_moe(i), ep_size) for i, a in enumerate(layers))
        self.norm = nn.RMSNorm(spec.d_model)

    def forward(self, idx_BT: torch.Tensor):
        x_BTD, aux, counts = self.embed(idx_BT), 0.0, []
        for block in self.blocks:
            x_BTD, l_aux, counts_E = block(x_BTD)
            aux = aux + l_aux
            counts += [counts_E] if counts_E is not None else []
        return F.linear(self.norm(x_BTD), self.embed.weight), aux, counts


def parallel(spec, layers, ep_size):
    return Parallel(spec, layers, ep_size)


def own_ffn(spec, layers, ep_size):
    """Breaks the contract: its FFNs are not moesearch's, so the search would not vary what it claims."""
    model = Parallel(spec, layers, ep_size)
    model.blocks[0].ffn = nn.Linear(spec.d_model, spec.d_model)
    return model


def wide_ffn(spec, layers, ep_size):
    """Breaks the contract: block 0's FFN is ffn_layer's at twice the space's width, so its costs would be
    counted at the space's."""
    model = Parallel(spec, layers, ep_size)
    model.blocks[0].ffn = ffn_layer(spec.model_copy(update={"d_ff": 2 * spec.d_ff}), layers[0], spec.is_moe(0), ep_size)
    return model


NOT_A_FUNCTION = 3
