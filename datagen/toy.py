"""The behaviour data of the Appendix-A toy task (`envs/toy_multimodal.py`): each transition picks one of the
four modes uniformly and draws its action around that mode's centre."""

import numpy as np

from envs.toy_multimodal import MODE_SPREAD, NUM_MODES, mode_centres, reward


def make_dataset(size: int, seed: int) -> dict:
    """One-step transitions from the four-mode behaviour policy, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-1.0, 1.0, size)
    modes = rng.integers(NUM_MODES, size=size)
    actions = mode_centres(states)[np.arange(size), modes] + MODE_SPREAD * rng.standard_normal((size, 2))
    actions = np.clip(actions, -1.0, 1.0)
    observations = states[:, None].astype(np.float32)
    return {
        "observations": observations,
        "actions": actions.astype(np.float32),
        "rewards": reward(states, actions),
        "terminals": np.ones(size, dtype=np.float32),
        "timeouts": np.zeros(size, dtype=np.float32),
        "next_observations": observations.copy(),
    }
