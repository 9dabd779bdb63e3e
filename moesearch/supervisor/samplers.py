"""The samplers a space's `search.sampler` names, and a sampler seed per worker group. Light: optuna only."""

from __future__ import annotations

import secrets
import warnings

import optuna
from optuna.samplers import BaseSampler, GPSampler, NSGAIISampler, RandomSampler, TPESampler

from moesearch.supervisor import optuna_compat

_SAMPLER_FACTORIES = {  # name -> factory(seed)
    # constant_liar: trials running in other worker groups count as bad, so groups spread out
    "tpe": lambda seed: TPESampler(seed=seed, multivariate=True, constant_liar=True),
    "nsga2": lambda seed: NSGAIISampler(seed=seed),
    "gp": lambda seed: GPSampler(seed=seed),
    "random": lambda seed: RandomSampler(seed=seed),
    "brute": lambda seed: optuna_compat.Exhaustive(seed=seed),
}

SAMPLERS = tuple(_SAMPLER_FACTORIES)


def make_sampler(kind: str, seed: int) -> BaseSampler:
    """An Optuna sampler by the name a space's `search.sampler` uses."""
    with warnings.catch_warnings():  # GP and brute force are marked experimental; moesearch tests them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _SAMPLER_FACTORIES[kind](seed)


def group_seed() -> int:
    """A sampler seed of this group's own: groups seeded alike would propose alike and collide."""
    return secrets.randbits(32)
