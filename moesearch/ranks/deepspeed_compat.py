"""The DeepSpeed internals moesearch relies on, each in one place, with why. Tested with deepspeed
0.19.8 (`pyproject.toml` bounds it to 0.19.x; re-check these when raising it).

- `deepspeed.ops.__compatible_ops__`: `init_distributed` JIT-builds the `deepspeed_shm_comm` op
  (about 30 s, and it needs a C++ compiler), which serves only inference all-reduce. Marking it
  incompatible before `init_distributed` skips the build; there is no public switch.
"""

from __future__ import annotations


def skip_inference_comm_op() -> None:
    """Call before `deepspeed.init_distributed`: no JIT build of the shared-memory all-reduce op."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
