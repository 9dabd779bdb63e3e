"""Common random numbers: each random stream of a trial is keyed by the seed and the place it serves.

Two assignments that differ in one layer then draw the same values everywhere else (every dense weight,
every expert of the unchanged layers, the routing noise, the batch order), so their difference in
val_loss carries only the noise their difference causes. With one global generator, a layer's FFN
shape shifted every later draw and re-drew the whole model (docs/performance.md, bench/crn_pairs.py).
"""

from __future__ import annotations

import hashlib

import torch


def seed_of(seed: int, *where: object) -> int:
    """A 63-bit seed for the stream at `where` (e.g. a parameter's name); stable across processes,
    unlike Python's string hash."""
    digest = hashlib.blake2b(repr((seed, *where)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int, *where: object) -> torch.Generator:
    """A fresh CPU generator for the stream at `where`."""
    return torch.Generator().manual_seed(seed_of(seed, *where))
