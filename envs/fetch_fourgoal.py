"""The paper's multi-modal FetchReach (Section 6.2): four goals, one per quadrant, the first one pays double.

gymnasium-robotics' `FetchReach-v4` moves the gripper of a Fetch arm (action: a gripper displacement in
[-1, 1]^3, scaled by 5 cm per step, plus an unused finger command). Here the task replaces its random goal
with four fixed goals at `GOAL_DISTANCE` from the gripper's start position in the xy-plane, one per
quadrant, at the start height. Quadrant order 1-4 is (+x, +y), (-x, +y), (-x, -y), (+x, -y) relative to
the start, the same order as the modes of `envs.toy_multimodal`.

Reward per step: 2 while the gripper is within `GOAL_RADIUS` of goal 1 (index 0), 1 within it of any other
goal, 0 elsewhere. An episode lasts `EPISODE_STEPS` steps (truncated, never terminated).

The observation is FetchReach's `observation` vector only (gripper position, finger state, velocities;
10 dims): no desired goal, so an expert dataset with one trajectory to each goal gives every state four
conflicting action labels. FetchReach resets the arm to a fixed pose; the start state then varies with the
seed (see START_STEPS), and the same seed gives the same start state.

Registered by `envs/__init__.py` as `FetchReachFourGoal-v0`.

`scripted_reach_action` is the expert: a noisy P-controller on the gripper position.
"""

import gymnasium as gym
import numpy as np

GOAL_DISTANCE = 0.12  # m from the start in xy: 0.085 per axis, inside FetchReach's 0.15 goal range
GOAL_RADIUS = 0.05  # FetchReach's distance_threshold
GOAL_REWARDS = np.array([2.0, 1.0, 1.0, 1.0])  # per goal index (0 = quadrant 1)
NUM_GOALS = 4
QUADRANT_SIGNS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
EPISODE_STEPS = 50
# Start states vary: after FetchReach's fixed reset, the gripper is driven for START_STEPS steps toward a
# point drawn uniformly within START_JITTER of its start (per axis), from the env's seeded RNG. The goals
# stay where they are, placed around FetchReach's fixed start pose.
START_STEPS = 5
START_JITTER = 0.04
OBSERVATION_DIM = 10
GRIPPER_POS = slice(0, 3)  # where the gripper position sits in the observation

# The expert. FetchReach moves the gripper by 0.05 * action per step, so gain 10 closes about half the
# remaining gap each step: 12 cm shrinks to well under 1 cm in ~10 steps, and at the start (12 cm away)
# the action is ~0.85 per axis, below the clip, so the action direction still points at the goal.
EXPERT_GAIN = 10.0
EXPERT_NOISE = 0.1  # std of the Gaussian added to each action component before clipping


def goal_positions(start: np.ndarray) -> np.ndarray:
    """The four goals around a gripper start position of shape (3,); shape (4, 3), quadrant order."""
    goals = np.tile(np.asarray(start, dtype=np.float64), (NUM_GOALS, 1))
    goals[:, :2] += GOAL_DISTANCE * QUADRANT_SIGNS / np.sqrt(2.0)
    return goals


def reached_goal(gripper_pos: np.ndarray, goals: np.ndarray) -> int | None:
    """Index of the goal within `GOAL_RADIUS` of the gripper (the nearest, if several), else None."""
    distances = np.linalg.norm(np.asarray(goals) - np.asarray(gripper_pos), axis=-1)
    nearest = int(distances.argmin())
    return nearest if distances[nearest] <= GOAL_RADIUS else None


def goal_reward(gripper_pos: np.ndarray, goals: np.ndarray) -> float:
    """2 at goal 1, 1 at any other goal, 0 elsewhere."""
    index = reached_goal(gripper_pos, goals)
    return 0.0 if index is None else float(GOAL_REWARDS[index])


def scripted_reach_action(observation: np.ndarray, goal: np.ndarray, rng: np.random.Generator,
                          noise: float = EXPERT_NOISE) -> np.ndarray:
    """A noisy P-controller moving the gripper toward `goal`; the finger command stays 0."""
    action = np.zeros(4, dtype=np.float32)
    error = np.asarray(goal) - np.asarray(observation)[GRIPPER_POS]
    action[:3] = np.clip(EXPERT_GAIN * error + noise * rng.standard_normal(3), -1.0, 1.0)
    return action


def _make_fetch_reach(render_mode=None):
    # Imported here so the geometry and the expert above work without gymnasium-robotics installed.
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    # gym.make adds FetchReach's own 50-step TimeLimit even with max_episode_steps=None (it falls back to
    # the spec's limit); we count steps ourselves, so take the bare env.
    return gym.make("FetchReach-v4", render_mode=render_mode).unwrapped


class FetchReachFourGoalEnv(gym.Env):
    """FetchReach with four fixed goals and no goal in the observation."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 25}

    def __init__(self, render_mode=None):
        self._fetch = _make_fetch_reach(render_mode)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBSERVATION_DIM,), dtype=np.float32)
        self.action_space = self._fetch.action_space
        self.goals = goal_positions(self._fetch.initial_gripper_xpos)
        self._steps = 0

    def _observe(self, fetch_obs: dict):
        observation = fetch_obs["observation"].astype(np.float32)
        gripper_pos = fetch_obs["observation"][GRIPPER_POS]
        index = reached_goal(gripper_pos, self.goals)
        info = {"goal_index": -1 if index is None else index, "gripper_pos": gripper_pos.copy()}
        return observation, goal_reward(gripper_pos, self.goals), info

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        fetch_obs, _ = self._fetch.reset(seed=seed)
        # The start pose is fixed, but read it after reset so the goals follow it if that ever changes.
        self.goals = goal_positions(self._fetch.initial_gripper_xpos)
        start = self._fetch.initial_gripper_xpos + self.np_random.uniform(-START_JITTER, START_JITTER, 3)
        for _ in range(START_STEPS):
            action = scripted_reach_action(fetch_obs["observation"], start, self.np_random, noise=0.0)
            fetch_obs, _, _, _, _ = self._fetch.step(action)
        self._steps = 0
        observation, _, info = self._observe(fetch_obs)
        return observation, info

    def step(self, action):
        fetch_obs, _, _, _, _ = self._fetch.step(np.asarray(action, dtype=np.float32))
        self._steps += 1
        observation, reward, info = self._observe(fetch_obs)
        return observation, reward, False, self._steps >= EPISODE_STEPS, info

    def render(self):
        return self._fetch.render()

    def close(self):
        self._fetch.close()


def expert_success(goal_index: int, episodes: int, seed: int, noise: float = EXPERT_NOISE) -> float:
    """Fraction of scripted-expert episodes toward goal `goal_index` that end with the gripper at it."""
    env = FetchReachFourGoalEnv()
    rng = np.random.default_rng(seed)
    successes = 0
    for episode in range(episodes):
        observation, info = env.reset(seed=seed + episode)
        truncated = False
        while not truncated:
            action = scripted_reach_action(observation, env.goals[goal_index], rng, noise)
            observation, _, _, truncated, info = env.step(action)
        successes += info["goal_index"] == goal_index
    env.close()
    return successes / episodes


def run_episode(env: "FetchReachFourGoalEnv", seed: int, choose_action) -> tuple[list, float, int]:
    """One episode from the start state of `seed`: (transitions, return, goal index at the end or -1)."""
    observation, info = env.reset(seed=seed)
    transitions, total, truncated = [], 0.0, False
    while not truncated:
        action = choose_action(observation)
        next_observation, reward, _, truncated, info = env.step(action)
        transitions.append((observation, action, reward, truncated, next_observation))
        total += reward
        observation = next_observation
    return transitions, total, info["goal_index"]


def make_dataset(starts: int, seed: int, noise: float = EXPERT_NOISE) -> dict:
    """From each of `starts` start states, one expert trajectory to each of the four goals (D4RL keys),
    plus the returns that define the score: a uniform random policy (0) and the expert to goal 1 (100)."""
    env = FetchReachFourGoalEnv()
    rng = np.random.default_rng(seed)
    rows, reached = [], np.zeros((NUM_GOALS, 2))
    for start in range(starts):
        for goal in range(NUM_GOALS):
            transitions, _, end = run_episode(
                env, seed + start, lambda obs: scripted_reach_action(obs, env.goals[goal], rng, noise))
            rows += transitions
            reached[goal] += (end == goal, 1)
    observations, actions, rewards, timeouts, next_observations = map(np.array, zip(*rows))
    random_returns = [run_episode(env, seed + starts + i, lambda _: env.action_space.sample())[1]
                      for i in range(starts)]
    expert_returns = [run_episode(env, seed + 2 * starts + i,
                                  lambda obs: scripted_reach_action(obs, env.goals[0], rng, noise))[1]
                      for i in range(starts)]
    env.close()
    return {"observations": observations.astype(np.float32), "actions": actions.astype(np.float32),
            "rewards": rewards.astype(np.float32), "terminals": np.zeros(len(rows), np.float32),
            "timeouts": timeouts.astype(np.float32), "next_observations": next_observations.astype(np.float32),
            "ref_min_score": float(np.mean(random_returns)), "ref_max_score": float(np.mean(expert_returns)),
            "expert_success": reached[:, 0] / reached[:, 1]}
