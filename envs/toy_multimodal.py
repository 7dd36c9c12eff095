"""The paper's Appendix-A one-step task: four action modes per state, two of them rewarded.

The state is a scalar s in [-1, 1]. The behaviour data picks one of four modes uniformly; mode k's
actions are clustered around c_k(s) = R (cos t_k, sin t_k) with t_k = pi/4 + k pi/2 + (pi/12) s, one mode
per quadrant, turning slowly with the state so a model must condition on s to place them.

Reward: an action within `REWARD_RADIUS` of the quadrant-1 mode's centre earns 1, one as close to the
quadrant-3 mode's centre earns 0.5, anything else 0. Two changes to Appendix A, both deliberate:
- The radius makes the paper's point sharp: the average of the four modes (near the origin) is an action
  no behaviour policy takes, and it earns nothing.
- Appendix A rewards quadrants 1 and 3 equally. Then the greedy hyper-policy's argmax is a tie, decided by
  noise in Q_phi, and a deterministic unimodal policy ends up averaging the two winners (we saw LOM
  collapse this way on some seeds). One best mode, as in the paper's Fetch tasks (2 for the first-quadrant
  goal, 1 for the others), makes the task well posed.
Each episode is one step. The behaviour data is made by `datagen/toy.py`.
"""

import gymnasium as gym
import numpy as np

MODE_RADIUS = 0.6
MODE_SPREAD = 0.05
MODE_TURN = np.pi / 12
REWARD_RADIUS = 0.25
MODE_REWARDS = {0: 1.0, 2: 0.5}  # mode index (0 = quadrant 1, 2 = quadrant 3) -> reward near its centre
NUM_MODES = 4

# Expected reward of a uniform random action in [-1, 1]^2: each rewarded disk covers pi r^2 of area 4.
RANDOM_POLICY_REWARD = sum(MODE_REWARDS.values()) * np.pi * REWARD_RADIUS**2 / 4.0
OPTIMAL_REWARD = max(MODE_REWARDS.values())


def mode_centres(states: np.ndarray) -> np.ndarray:
    """Centres of the four action modes, shape (N, 4, 2), for states of shape (N,)."""
    angles = np.pi / 4 + np.arange(NUM_MODES) * np.pi / 2 + MODE_TURN * states[:, None]
    return MODE_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def reward(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The reward of the rewarded mode whose centre the action is near, else 0; shape (N,)."""
    modes = list(MODE_REWARDS)
    distances = np.linalg.norm(actions[:, None, :] - mode_centres(states)[:, modes], axis=-1)
    earned = np.where(distances <= REWARD_RADIUS, np.array([MODE_REWARDS[m] for m in modes]), 0.0)
    return earned.max(axis=1).astype(np.float32)


class ToyMultimodalEnv(gym.Env):
    """Draw s uniformly, take one action, receive its reward, done."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._state = np.zeros(1, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-1.0, 1.0, size=1).astype(np.float32)
        return self._state.copy(), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        r = float(reward(self._state.astype(np.float64), action[None])[0])
        return self._state.copy(), r, True, False, {}
