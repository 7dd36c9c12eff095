"""The toy task's behaviour data (datagen/toy.py): four modes drawn uniformly, deterministic from the seed."""

import numpy as np
import pytest

from datagen.toy import make_dataset
from envs import toy_multimodal as toy


def test_dataset_draws_each_mode_near_its_centre_and_is_deterministic():
    data = make_dataset(4000, seed=3)
    again = make_dataset(4000, seed=3)
    for key in data:
        np.testing.assert_array_equal(data[key], again[key])
    states, actions = data["observations"][:, 0].astype(np.float64), data["actions"].astype(np.float64)
    distances = np.linalg.norm(actions[:, None] - toy.mode_centres(states), axis=-1)
    nearest = distances.argmin(axis=1)
    assert distances.min(axis=1).max() < 6 * toy.MODE_SPREAD
    assert np.bincount(nearest, minlength=4) == pytest.approx([1000] * 4, abs=150)
    np.testing.assert_array_equal(data["rewards"], toy.reward(states, actions))
    assert data["terminals"].all() and not data["timeouts"].any()
