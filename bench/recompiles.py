"""How often does a compiled trial compile? (issue 33 item 13)

    TORCH_LOGS=recompiles python bench/recompiles.py 2>&1 | grep -c Recompiling

Trains the tiny space's model (one MoE layer, d_model 16) for 6 steps with train.compile on, an evaluation
every 2 steps and the final one with its probes and 8-bit evaluations, in one gloo rank in this process.
With TORCH_LOGS=recompiles torch logs every recompilation and the guard that failed; the script prints
the trial's 8-bit gap (0 exactly when the quantization hooks did not run) and Dynamo's graph counts.
"""

from __future__ import annotations

import os
import socket


def main() -> None:
    with socket.socket() as s:  # a free port for the one-rank group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import deepspeed
    import torch._dynamo.utils

    from moesearch.core import corpus, space
    from moesearch.core.config import RunConfig
    from moesearch.ranks.deepspeed_compat import skip_inference_comm_op
    from moesearch.ranks.train import train_trial

    skip_inference_comm_op()
    deepspeed.init_distributed(dist_backend="gloo")
    tiny = space.load("tiny")
    small = tiny.model_copy(
        update={
            "model": tiny.model.model_copy(update={"n_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 48}),
            "train": tiny.train.model_copy(
                update={"compile": True, "steps": 6, "warmup_steps": 1, "eval_interval": 2, "eval_sequences": 4}
            ),
        }
    )
    done = train_trial(RunConfig.build(small, ["swiglu"], seed=0, data=None, world_size=1), corpus.load(None))
    print(f"val_loss {done.metrics['val_loss']:.4f}, quant_gap_int8 {done.metrics['quant_gap_int8']:.3g}")
    print(f"dynamo: {dict(torch._dynamo.utils.counters['stats'])}")


if __name__ == "__main__":
    main()
