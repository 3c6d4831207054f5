"""Action (and state) tokenization: 256 uniform bins over [-1, 1], pure numpy.

As in OpenVLA, each continuous action dimension becomes one discrete token. Bin `k` covers
`[-1 + k w, -1 + (k + 1) w)` with `w = 2 / N_BINS`; decoding returns the bin centre, so a round
trip is off by at most half a bin (`w / 2`). Values outside [-1, 1] are clipped first.
"""

from __future__ import annotations

import numpy as np

N_BINS = 256
"""Number of bins (and of action tokens) per dimension."""
ACTION_DIM = 4
"""Action dimensions of every built-in task (x, y, z move and the finger command)."""
BIN_WIDTH = 2.0 / N_BINS
"""Width of one bin in action units."""
STATE_LOW = np.array([-0.5, -0.5, 0.0, 0.0], dtype=np.float32)
"""Lower end of the range mapped onto the bins for the proprioceptive state (x, y, z in metres,
gripper opening); values outside the range are clipped."""
STATE_HIGH = np.array([0.5, 0.5, 0.5, 0.1], dtype=np.float32)
"""Upper end of the state range (see `STATE_LOW`)."""


def _as_float_array(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN; expected finite values in [-1, 1]")
    return array


def actions_to_bins(actions: np.ndarray) -> np.ndarray:
    """Map actions in [-1, 1] (any shape) to bin indices 0..N_BINS-1 (int64, same shape)."""
    array = np.clip(_as_float_array(actions, "actions"), -1.0, 1.0)
    bins = np.floor((array + 1.0) / BIN_WIDTH).astype(np.int64)
    return np.clip(bins, 0, N_BINS - 1)


def bins_to_actions(bins: np.ndarray) -> np.ndarray:
    """Map bin indices 0..N_BINS-1 (any shape) to their bin centres in [-1, 1] (float32)."""
    array = np.asarray(bins)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"bins must be an integer array, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= N_BINS):
        raise ValueError(
            f"bins must lie in 0..{N_BINS - 1}, got values in {array.min()}..{array.max()}"
        )
    return (-1.0 + (array.astype(np.float64) + 0.5) * BIN_WIDTH).astype(np.float32)


def states_to_bins(states: np.ndarray) -> np.ndarray:
    """Map proprioceptive states float [..., 4] to bins, after scaling `STATE_LOW..STATE_HIGH`
    onto [-1, 1]."""
    array = _as_float_array(states, "states")
    if array.shape[-1:] != STATE_LOW.shape:
        raise ValueError(f"states must have shape [..., {STATE_LOW.size}], got {array.shape}")
    scaled = 2.0 * (array - STATE_LOW) / (STATE_HIGH - STATE_LOW) - 1.0
    return actions_to_bins(scaled)


def positions_to_bins(positions: np.ndarray) -> np.ndarray:
    """Map fingertip positions float [..., 3] (x, y, z in metres) to bins over the state's
    position range (`STATE_LOW[:3]..STATE_HIGH[:3]`, about 4 mm per bin): the "where next"
    waypoints written as tokens."""
    array = _as_float_array(positions, "positions")
    if array.shape[-1:] != (3,):
        raise ValueError(f"positions must have shape [..., 3], got {array.shape}")
    low, high = STATE_LOW[:3], STATE_HIGH[:3]
    return actions_to_bins(2.0 * (array - low) / (high - low) - 1.0)


def bins_to_positions(bins: np.ndarray) -> np.ndarray:
    """Inverse of `positions_to_bins`: bins [..., 3] -> their centres in metres (float32)."""
    low, high = STATE_LOW[:3], STATE_HIGH[:3]
    unit = bins_to_actions(bins).astype(np.float64)
    return (low + (unit + 1.0) / 2.0 * (high - low)).astype(np.float32)
