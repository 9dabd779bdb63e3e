"""The coordinate check (Tensor Programs V; the `mup` package's `coord_check`): a few real training steps
of the same assignment at every width of a ladder, recording the typical size of one coordinate (mean |x|)
of every layer's activations at every step. Under muP the sizes stay flat as width grows; under the
standard parametrization with Adam they grow. One rank, one DeepSpeed engine per width.

    python -m torch.distributed.run --standalone --nproc-per-node 1 -m moesearch.ranks.coords JOB OUT
JOB: JSON {"steps": n, "runs": [{"size": name, "config": RunConfig JSON}, ...]}; OUT: where rank 0 writes
one JSON list of rows {size, d_model, parametrization, step, layer, site, value}.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from moesearch.core import corpus as corpus_mod
from moesearch.core.config import RunConfig
from moesearch.ranks.model import Transformer
from moesearch.ranks.probes import ffn_slots

SITES = ("attention", "ffn_hidden", "ffn_out", "residual", "logits")  # logits: one site after the last layer


class Coordinates:
    """`with Coordinates(model) as c: <one forward pass>`, then `c.sizes`: {(layer, site): mean |x|}, over
    real tokens (an expert's capacity padding is all-zero rows, left out)."""

    def __init__(self, model: Transformer):
        self.model = model
        self.sizes: dict[tuple[int, str], float] = {}
        self._hidden: dict[int, list[torch.Tensor]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> Coordinates:
        hook = self._handles.append
        for layer, block in enumerate(self.model.blocks):
            hook(block.attn.register_forward_hook(self._output(layer, "attention")))
            hook(block.ffn.register_forward_hook(self._output(layer, "ffn_out")))
            hook(block.register_forward_hook(self._output(layer, "residual")))
        for ffn, layer, _ in ffn_slots(self.model, 0):
            hook(ffn.w_out.register_forward_pre_hook(self._hidden_rows(layer)))
        hook(self.model.register_forward_hook(self._output(len(self.model.blocks), "logits")))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        for layer, rows in self._hidden.items():
            real = torch.cat(rows)
            self.sizes[layer, "ffn_hidden"] = real.abs().mean().item()

    def _output(self, layer: int, site: str):
        def record(module: nn.Module, args, out) -> None:
            x = out[0] if isinstance(out, tuple) else out  # MoE, blocks and the model return (output, ...)
            self.sizes[layer, site] = x.detach().abs().float().mean().item()

        return record

    def _hidden_rows(self, layer: int):
        def record(module: nn.Module, args: tuple[torch.Tensor]) -> None:
            h_NF = args[0].detach().flatten(0, -2)
            self._hidden.setdefault(layer, []).append(h_NF[h_NF.abs().amax(dim=-1) > 0].float())

        return record


def check(cfg: RunConfig, corpus: corpus_mod.Corpus, steps: int) -> list[dict]:
    """Train `cfg` for `steps` steps on this one-rank group; one row per step, layer and site."""
    from moesearch.ranks.train import Batches, build_engine

    engine = build_engine(cfg, 0)
    batches, rows = Batches(corpus, cfg, 0, 1, engine.device), []
    try:
        for step in range(steps):
            x_BT, y_BT = batches.next_train()
            with Coordinates(engine.module) as coords:
                logits_BTV, aux, _ = engine(x_BT)
            loss = F.cross_entropy(logits_BTV.float().flatten(0, 1), y_BT.reshape(-1))
            engine.backward(loss + cfg.model.aux_loss_coef * aux)
            engine.step()
            del logits_BTV, aux, loss
            rows += [
                {"step": step, "layer": layer, "site": site, "value": v} for (layer, site), v in coords.sizes.items()
            ]
    finally:
        engine.destroy()
        del engine
        gc.collect()
    return rows


def main() -> None:
    from moesearch.ranks.serve import init_rank

    init_rank()
    job = json.loads(Path(sys.argv[1]).read_text())
    corpora: dict[str | None, corpus_mod.Corpus] = {}
    found = []
    for run in job["runs"]:
        cfg = RunConfig.model_validate_json(run["config"])
        if cfg.data not in corpora:
            corpora[cfg.data] = corpus_mod.load(cfg.data, counted=False)  # the supervisor counted it
        shape = {"size": run["size"], "d_model": cfg.model.d_model, "parametrization": cfg.model.parametrization}
        found += [shape | row for row in check(cfg, corpora[cfg.data], job["steps"])]
    Path(sys.argv[2]).write_text(json.dumps(found))


if __name__ == "__main__":
    main()
