"""A minimal hand-written DeepSpeed MoE training loop, with no moesearch code: the reference that
bench/throughput.py measures a moesearch trial against.

    python -m torch.distributed.run --standalone --nproc-per-node 2 bench/bare_loop.py '<config JSON>'

The config gives the model (the same architecture as a moesearch trial: pre-norm blocks, bias-free
LayerNorm and linears, tied embeddings, every FFN a DeepSpeed MoE layer) and the training settings.
Batches are random bytes: throughput depends on shapes, not on the text. Rank 0 prints one JSON line:
the median step time after warm-up (the first 10% of steps), as moesearch measures it, and tokens/s.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"gelu": (F.gelu, False), "swiglu": (F.silu, True), "geglu": (F.gelu, True), "relu": (F.relu, False)}


class Expert(nn.Module):
    def __init__(self, d: int, hidden: int, activation: str):
        super().__init__()
        self.act, self.gated = ACTIVATIONS[activation]
        self.w_in = nn.Linear(d, hidden * (2 if self.gated else 1), bias=False)
        self.w_out = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        h = self.w_in(x)
        if self.gated:
            a, g = h.chunk(2, dim=-1)
            return self.w_out(self.act(a) * g)
        return self.w_out(self.act(h))


class Block(nn.Module):
    def __init__(self, c: dict, hidden: int, activation: str):
        super().__init__()
        from deepspeed.moe.layer import MoE

        d = c["d_model"]
        self.heads = c["n_heads"]
        self.norm1, self.norm2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.moe = MoE(
            hidden_size=d,
            expert=Expert(d, hidden, activation),
            num_experts=c["num_experts"],
            ep_size=c["ep_size"],
            k=c["top_k"],
            capacity_factor=c["capacity_factor"],
            eval_capacity_factor=c["capacity_factor"],
            min_capacity=c["min_capacity"],
            drop_tokens=True,
        )

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = (
            t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in self.qkv(self.norm1(x)).split(D, -1)
        )
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D))
        y, aux, _ = self.moe(self.norm2(x))
        return x + y, aux


class Model(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.embed, self.pos = nn.Embedding(256, c["d_model"]), nn.Embedding(c["seq_len"], c["d_model"])
        self.blocks = nn.ModuleList(Block(c, h, a) for h, a in zip(c["hidden"], c["layers"], strict=True))
        self.norm = nn.LayerNorm(c["d_model"], bias=False)

    def forward(self, idx):
        x = self.embed(idx) + self.pos(torch.arange(idx.shape[1]))
        aux = x.new_zeros(())
        for block in self.blocks:
            x, a = block(x)
            aux = aux + a
        return self.norm(x) @ self.embed.weight.T, aux


def main() -> None:
    c = json.loads(sys.argv[1])
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    from moesearch.ranks.deepspeed_compat import skip_inference_comm_op

    skip_inference_comm_op()  # inference-only op: skip its JIT build (the one internal, shared with moesearch)
    deepspeed.init_distributed()
    torch.manual_seed(0)
    model = Model(c)
    config = {
        "train_micro_batch_size_per_gpu": c["micro_batch"],
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": 1, "reduce_scatter": True},
        "optimizer": {"type": "AdamW", "params": {"lr": c["lr"], "betas": [0.9, 0.95], "torch_adam": True}},
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {"total_num_steps": c["steps"], "warmup_num_steps": c["warmup"]},
        },
        "steps_per_print": 1 << 30,
    }
    groups = [
        {"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1, "name": "decay"},
        {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0, "name": "no_decay"},
    ]
    engine, *_ = deepspeed.initialize(model=model, model_parameters=groups, config=config)
    generator = torch.Generator().manual_seed(engine.global_rank)
    times = []
    for _ in range(c["steps"]):
        start = time.perf_counter()
        xy = torch.randint(256, (c["micro_batch"], c["seq_len"] + 1), generator=generator)
        logits, aux = engine(xy[:, :-1])
        loss = F.cross_entropy(logits.view(-1, 256), xy[:, 1:].reshape(-1)) + 0.01 * aux
        engine.backward(loss)
        engine.step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times[max(2, c["steps"] // 10) :])
    if engine.global_rank == 0:
        world = engine.world_size
        print(json.dumps({"step_time_s": median, "tokens_per_s": c["micro_batch"] * c["seq_len"] * world / median}))


if __name__ == "__main__":
    main()
