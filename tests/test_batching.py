"""Image-shift augmentation for SFT batches."""

import numpy as np
import pytest
import torch

from train.updates.batching import shift_images
from train.updates.config import SFTConfig


def test_shift_translates_the_whole_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 12, 12, 3), dtype=np.uint8)
    assert shift_images(images, 0, torch.Generator()) is images
    shifted = shift_images(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    moved = 0
    for original, out in zip(images, shifted, strict=True):
        # some offset (dy, dx) in [-2, 2]^2 maps the original's interior onto the output
        hits = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(out[2:-2, 2:-2], original[2 + dy : 10 + dy, 2 + dx : 10 + dx])
        ]
        assert len(hits) == 1
        moved += hits[0] != (0, 0)
    assert moved >= 12  # offsets are random: most images move


def test_negative_shift_is_rejected():
    with pytest.raises(ValueError, match="augment_shift must be >= 0, got -1"):
        SFTConfig(augment_shift=-1)
