"""Validation of the policy's inputs: errors name the bad value and what was expected."""

from __future__ import annotations

import numpy as np

from agent.action_tokens import N_BINS


def check_images(images, image_size: int | None) -> np.ndarray:
    """uint8 [B, H, W, 3] (H = W = `image_size` when the policy has a fixed size)."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise TypeError(
            f"images must be a numpy array uint8 [B, H, W, 3], got {type(images).__name__}"
        )
    if images.dtype != np.uint8:
        raise TypeError(f"images must have dtype uint8 (values 0..255), got {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images must have shape [B, H, W, 3] with B >= 1, got {images.shape}")
    if image_size is not None and images.shape[1:3] != (image_size, image_size):
        raise ValueError(
            f"images must be {image_size}x{image_size} for this policy, got shape {images.shape} "
            f"(expected [B, {image_size}, {image_size}, 3])"
        )
    return images


def check_instructions(instructions, batch: int) -> list[str]:
    if isinstance(instructions, str) or not all(isinstance(i, str) for i in instructions):
        raise TypeError("instructions must be a list of str, one per image")
    instructions = list(instructions)
    if len(instructions) != batch:
        raise ValueError(
            f"got {len(instructions)} instructions for {batch} images; expected {batch}"
        )
    return instructions


def check_states(states, batch: int, use_state: bool, state_dim: int = 4) -> np.ndarray | None:
    """float [B, state_dim], or None when the policy does not read the state."""
    if not use_state:
        return None
    if states is None:
        raise ValueError(f"this policy reads the state: pass states float32 [{batch}, {state_dim}]")
    if hasattr(states, "detach"):
        states = states.detach().cpu().numpy()
    states = np.asarray(states)
    if not np.issubdtype(states.dtype, np.floating):
        raise TypeError(f"states must be a float array [B, {state_dim}], got dtype {states.dtype}")
    if states.shape != (batch, state_dim):
        raise ValueError(f"states must have shape [{batch}, {state_dim}], got {states.shape}")
    if not np.isfinite(states).all():
        raise ValueError("states contain NaN or inf; expected finite values")
    return states.astype(np.float32)


def check_bins(bins, batch: int, action_dim: int) -> np.ndarray:
    if hasattr(bins, "detach"):
        bins = bins.detach().cpu().numpy()
    bins = np.asarray(bins)
    if not np.issubdtype(bins.dtype, np.integer):
        raise TypeError(f"bins must be an integer array [B, {action_dim}], got dtype {bins.dtype}")
    if bins.shape != (batch, action_dim):
        raise ValueError(f"bins must have shape [{batch}, {action_dim}], got {bins.shape}")
    if bins.min() < 0 or bins.max() >= N_BINS:
        raise ValueError(f"bins must lie in 0..{N_BINS - 1}, got {bins.min()}..{bins.max()}")
    return bins.astype(np.int64)
