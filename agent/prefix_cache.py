"""Reusing the key/value cache of the instruction within an episode.

The prompt starts with the instruction, which does not change during an episode, while the
image and the state after it change every step. When `act` sees the same instructions (in the
same batch slots) on the same weights again, the instruction's keys and values are taken from
the previous call instead of being recomputed; only the image, state and action tokens go through
the model. The weights are fingerprinted by the version counters that every in-place update
(optimizer steps, `load_state_dict`, LoRA changes) bumps, so a trained policy never reuses a stale
prefix; the adapters' on/off state is part of the fingerprint too.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


def weights_fingerprint(model) -> tuple:
    """Changes whenever the model object or any of its parameters is modified in place or
    replaced (or moved), or its LoRA adapters are switched on or off or changed."""
    adapters = tuple(
        (bool(m.disable_adapters), tuple(m.active_adapters))
        for m in model.modules()
        if hasattr(m, "disable_adapters") and hasattr(m, "active_adapters") and hasattr(m, "r")
    )
    params = list(model.parameters())
    versions = sum(p._version for p in params)
    storage = sum(p.data_ptr() for p in params)
    return (id(model), versions, storage, adapters)


class PrefixCache:
    """Keys and values of one left-padded batch of instruction prefixes."""

    def __init__(self):
        self._key = None
        self._layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.mask: torch.Tensor | None = None
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._key, self._layers, self.mask = None, [], None

    def lookup(self, key) -> DynamicCache | None:
        """A fresh cache seeded with the stored prefix when `key` matches, else None."""
        if key != self._key:
            self.misses += 1
            return None
        self.hits += 1
        return DynamicCache(ddp_cache_data=self._layers)

    def store(self, key, cache: DynamicCache, mask: torch.Tensor) -> DynamicCache:
        """Keep the prefix computed into `cache`; return a fresh cache seeded with it."""
        self._key = key
        self._layers = [(layer.keys, layer.values) for layer in cache.layers]
        self.mask = mask
        return DynamicCache(ddp_cache_data=self._layers)
