"""Run by torchrun from tests/test_streams.py: every rank saves its model's weights at step 0 (after
deepspeed.initialize), for each assignment on the command line, as the trainer builds them.

Usage: torchrun --nproc-per-node N tests/step0_weights.py OUT_DIR STREAMS LAYERS [LAYERS ...]
"""

import os
import sys

import deepspeed
import torch

from moesearch.core import space
from moesearch.core.config import RunConfig
from moesearch.ranks.deepspeed_compat import skip_inference_comm_op
from moesearch.ranks.parametrization import param_groups
from moesearch.ranks.train import build_model, ds_config

out, streams, *assignments = sys.argv[1:]
os.environ.setdefault("DS_ACCELERATOR", "cpu")
skip_inference_comm_op()
deepspeed.init_distributed(dist_backend="gloo")
rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
tiny = space.load("tiny")
tiny = tiny.model_copy(update={"train": tiny.train.model_copy(update={"streams": streams})})
for i, layers in enumerate(assignments):
    cfg = RunConfig.build(tiny, layers.split(","), seed=3, data=None, world_size=world)
    model = build_model(cfg, rank)
    engine, *_ = deepspeed.initialize(
        model=model,
        model_parameters=param_groups(model, cfg.model, cfg.train.lr, 0.1),
        config=ds_config(cfg, bf16=False),
    )
    torch.save({k: v.detach().clone() for k, v in engine.module.state_dict().items()}, f"{out}/{i}-rank{rank}.pt")
    engine.destroy()
