"""Action tokenization: 256 uniform bins over [-1, 1], round trip within half a bin."""

import subprocess
import sys

import numpy as np
import pytest

from agent.action_tokens import (
    BIN_WIDTH,
    N_BINS,
    actions_to_bins,
    bins_to_actions,
    states_to_bins,
)


def test_round_trip_is_within_half_a_bin():
    actions = np.random.default_rng(0).uniform(-1, 1, size=(10_000, 4)).astype(np.float32)
    bins = actions_to_bins(actions)
    assert bins.dtype == np.int64 and bins.shape == actions.shape
    assert bins.min() >= 0 and bins.max() <= N_BINS - 1
    back = bins_to_actions(bins)
    assert back.dtype == np.float32
    assert np.abs(back - actions).max() <= BIN_WIDTH / 2 + 1e-6


def test_edges_and_clipping():
    assert actions_to_bins(np.array([-1.0, 1.0, -5.0, 5.0])).tolist() == [0, 255, 0, 255]
    assert actions_to_bins(np.array([0.0])).tolist() == [128]
    centres = bins_to_actions(np.arange(N_BINS))
    assert np.allclose(np.diff(centres), BIN_WIDTH)
    assert np.array_equal(actions_to_bins(centres), np.arange(N_BINS))


def test_bad_bins_and_actions_raise():
    with pytest.raises(ValueError, match="0..255"):
        bins_to_actions(np.array([256]))
    with pytest.raises(TypeError, match="integer"):
        bins_to_actions(np.array([1.5]))
    with pytest.raises(ValueError, match="NaN"):
        actions_to_bins(np.array([np.nan]))


def test_states_map_their_documented_range_onto_the_bins():
    low = np.array([-0.5, -0.5, 0.0, 0.0])
    high = np.array([0.5, 0.5, 0.5, 0.1])
    assert states_to_bins(low).tolist() == [0, 0, 0, 0]
    assert states_to_bins(high).tolist() == [255] * 4
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        states_to_bins(np.zeros(3))


def test_module_does_not_import_torch():
    code = "import agent.action_tokens, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
