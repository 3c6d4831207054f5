"""Instruction encoding for learned verifiers: lower-cased words hashed into a fixed number of buckets."""

from __future__ import annotations

import re
import zlib

import torch

WORD = re.compile(r"[a-z0-9]+")


def hash_tokens(instruction: str, buckets: int) -> list[int]:
    """Bucket ids of the instruction's words (stable across runs: crc32, not Python's `hash`).

    >>> hash_tokens("Touch the RED ball", 1024) == hash_tokens("touch the red ball.", 1024)
    True
    """
    words = WORD.findall(instruction.lower()) or ["<empty>"]
    return [zlib.crc32(word.encode()) % buckets for word in words]


def encode_instructions(instructions: list[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids, offsets) for `torch.nn.EmbeddingBag`: the words of all instructions, flattened."""
    ids, offsets = [], []
    for instruction in instructions:
        offsets.append(len(ids))
        ids.extend(hash_tokens(instruction, buckets))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)
