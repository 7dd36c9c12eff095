"""The paper's multi-modal Fetch tasks (Section 6.2): four goals, one per quadrant, the first one pays double.

Three tasks share one env class, `FetchFourGoalEnv(task)`, parameterised by a `FetchTask`: the
gymnasium-robotics env underneath and the body whose position earns the reward. The scripted experts
that make their data live in `datagen/fetch.py`.

- "reach" (`FetchReachFourGoal-v0`, on `FetchReach-v4`): the GRIPPER must reach a goal. The goals sit at
  the corners of FetchReach's own goal box, 0.15 m per axis from the gripper's start position in the
  xy-plane (`GOAL_DISTANCE`, 0.21 m), at the start height: as far apart as the env itself places goals,
  so a gripper moving at full speed needs about four steps to reach one. The start-only data of
  `datagen.fetch.START_ONLY` used goals 0.12 m away (`START_ONLY_GOAL_DISTANCE`); the env takes
  `goal_distance` to evaluate on that layout.
- "push" (`FetchPushFourGoal-v0`, on `FetchPush-v4`, fingers blocked closed) and "pick"
  (`FetchPickFourGoal-v0`, on `FetchPickAndPlace-v4`): the OBJECT (a 5 cm cube) must be brought to a goal.
  The goals sit on the table (the cube's resting height) at `OBJECT_GOAL_DISTANCE` from the cube's nominal
  start, which is below the gripper's start position. 15 cm keeps every goal 0.1 m inside the table's edges
  and within FetchPush's own 0.15 m goal range (so inside the arm's reach), and the start (jitter included)
  stays 0.12 m from every goal, well outside the reward radius.

Goals are in quadrant order 1-4: (+x, +y), (-x, +y), (-x, -y), (+x, -y) relative to that centre, the same
order as the modes of `envs.toy_multimodal`. They are fixed: the observation does not contain them.

Reward per step: 2 while the tracked body is within `GOAL_RADIUS` of goal 1 (index 0), 1 within it of any
other goal, 0 elsewhere. An episode lasts `EPISODE_STEPS` steps (truncated, never terminated).
`info["goal_index"]` is the goal the tracked body is at (-1 for none) and the env's `goals` attribute holds
the four goals; the evaluator reads both to log where episodes end.

The observation is the Fetch env's `observation` vector only: gripper position, finger state and
velocities (reach, 10 dims), plus the cube's position, pose and velocities (push and pick, 25 dims). No
desired goal, so an expert dataset with one trajectory to each goal gives a state up to four conflicting
action labels.

Start states vary with the seed and the same seed gives the same start state. After the Fetch env's own
reset the gripper is driven for START_STEPS steps toward a point drawn uniformly within START_JITTER (per
axis) of its home: the Fetch start pose for reach, `ARM_START_HEIGHT` above the cube's nominal start for
push and pick, so a pushing gripper must first go round the cube (FetchPush starts the gripper at table
height; it ends up to 1.5 cm short of that point). Then, for push and pick, the cube is put at rest at its
nominal start plus a uniform xy offset within OBJECT_JITTER: the Fetch env's own random cube position is
replaced, and its own random goal is ignored.
START_JITTER is small (5 mm) on purpose: the start states then form one tight cluster whose rows carry
all four goals' first actions, 4 x the number of start states of them. With a 4 cm spread each start state
has its own four labels, the behaviour MDN does not separate them, and LOM's hyper Q picks among
components with no data behind them.
"""

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

GOAL_DISTANCE = 0.15 * np.sqrt(2.0)  # m from the start in xy for reach: the corners of FetchReach's 0.15 goal range
START_ONLY_GOAL_DISTANCE = 0.12  # m: reach's goals in the start-only data (0.085 per axis)
OBJECT_GOAL_DISTANCE = 0.15  # m from the cube's nominal start in xy for push and pick (see the docstring)
GOAL_RADIUS = 0.05  # the Fetch envs' distance_threshold
GOAL_REWARDS = np.array([2.0, 1.0, 1.0, 1.0])  # per goal index (0 = quadrant 1)
NUM_GOALS = 4
QUADRANT_SIGNS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
EPISODE_STEPS = 50
START_STEPS = 5  # start states: see the docstring
START_JITTER = 0.005  # m per axis, around the gripper's home (see the docstring)
ARM_START_HEIGHT = 0.11  # m above the cube's centre: FetchPickAndPlace's own start height
OBJECT_JITTER = 0.02  # m per axis, around the cube's nominal start
CUBE_HALF_SIZE = 0.025  # the Fetch envs' cube is 5 cm wide
OBSERVATION_DIM = 10  # reach; push and pick observe 25 numbers (OBJECT_OBSERVATION_DIM)
OBJECT_OBSERVATION_DIM = 25

# Where things sit in the observation. Reach has the gripper only; push and pick insert the cube after it.
GRIPPER_POS = slice(0, 3)
OBJECT_POS = slice(3, 6)
OBJECT_FINGERS = slice(9, 11)  # the two finger joint positions (0 closed, 0.05 open) in push and pick

# The P-controller that drives the gripper. The Fetch envs move the gripper by 0.05 * action per step, so
# gain 10 closes about half the remaining gap each step (12 cm shrinks to well under 1 cm in ~10 steps);
# the experts use a higher gain (datagen.fetch).
GAIN = 10.0


def goal_positions(centre: np.ndarray, distance: float = GOAL_DISTANCE) -> np.ndarray:
    """The four goals around `centre` of shape (3,) at `distance` in xy; shape (4, 3), quadrant order."""
    goals = np.tile(np.asarray(centre, dtype=np.float64), (NUM_GOALS, 1))
    goals[:, :2] += distance * QUADRANT_SIGNS / np.sqrt(2.0)
    return goals


def reached_goal(position: np.ndarray, goals: np.ndarray) -> int | None:
    """Index of the goal within `GOAL_RADIUS` of `position` (the nearest, if several), else None."""
    distances = np.linalg.norm(np.asarray(goals) - np.asarray(position), axis=-1)
    nearest = int(distances.argmin())
    return nearest if distances[nearest] <= GOAL_RADIUS else None


def goal_reward(position: np.ndarray, goals: np.ndarray) -> float:
    """2 at goal 1, 1 at any other goal, 0 elsewhere."""
    index = reached_goal(position, goals)
    return 0.0 if index is None else float(GOAL_REWARDS[index])


def move_towards(gripper: np.ndarray, target: np.ndarray, fingers: float, rng: np.random.Generator,
                 noise: float, speed: float = np.inf, gain: float = GAIN) -> np.ndarray:
    """The P-controller that drives the gripper to its start and that the scripted experts use: a gripper
    displacement toward `target` (norm at most `speed`) plus noise, clipped to the action range, and the
    finger command."""
    displacement = gain * (np.asarray(target) - np.asarray(gripper))
    norm = np.linalg.norm(displacement)
    if norm > speed:
        displacement *= speed / norm
    action = np.empty(4, dtype=np.float32)
    action[:3] = np.clip(displacement + noise * rng.standard_normal(3), -1.0, 1.0)
    action[3] = fingers  # a discrete intent (open or close): no noise
    return action


def above(point: np.ndarray, height: float) -> np.ndarray:
    return np.asarray(point) + [0.0, 0.0, height]


@dataclass(frozen=True)
class FetchTask:
    """What differs between the three tasks."""

    fetch_id: str  # the gymnasium-robotics env underneath
    tracks_object: bool  # the reward follows the cube (push, pick) or the gripper (reach)
    goal_distance: float
    observation_dim: int

    @property
    def tracked(self) -> slice:
        """Where the rewarded body's position sits in the observation."""
        return OBJECT_POS if self.tracks_object else GRIPPER_POS


TASKS = {
    "reach": FetchTask("FetchReach-v4", False, GOAL_DISTANCE, OBSERVATION_DIM),
    "push": FetchTask("FetchPush-v4", True, OBJECT_GOAL_DISTANCE, OBJECT_OBSERVATION_DIM),
    "pick": FetchTask("FetchPickAndPlace-v4", True, OBJECT_GOAL_DISTANCE, OBJECT_OBSERVATION_DIM),
}


def _make_fetch(fetch_id: str, render_mode=None):
    # Imported here so the geometry above and the experts work without gymnasium-robotics installed.
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    # gym.make adds the Fetch env's own 50-step TimeLimit even with max_episode_steps=None (it falls back
    # to the spec's limit); we count steps ourselves, so take the bare env.
    return gym.make(fetch_id, render_mode=render_mode).unwrapped


def _place_cube(fetch, xy: np.ndarray) -> dict:
    """Put the cube at rest at `xy`, keeping its resting height and pose; returns the new Fetch observation."""
    import mujoco

    joint = fetch.data.joint("object0:joint")
    joint.qpos[:2] = xy
    joint.qvel[:] = 0.0
    mujoco.mj_forward(fetch.model, fetch.data)
    return fetch._get_obs()  # the Fetch envs have no public way to observe without stepping


class FetchFourGoalEnv(gym.Env):
    """A Fetch task with four fixed goals and no goal in the observation; `task` names a `TASKS` entry."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 25}

    def __init__(self, task: str = "reach", render_mode=None, goal_distance: float | None = None):
        self.task = TASKS[task]
        self.goal_distance = self.task.goal_distance if goal_distance is None else goal_distance
        self._fetch = _make_fetch(self.task.fetch_id, render_mode)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.task.observation_dim,),
                                                dtype=np.float32)
        self.action_space = self._fetch.action_space
        self.goals = goal_positions(self.goal_centre(), self.goal_distance)
        self._steps = 0

    def goal_centre(self) -> np.ndarray:
        """The gripper's start position (reach) or the cube's nominal start on the table (push, pick)."""
        start = self._fetch.initial_gripper_xpos.copy()
        if self.task.tracks_object:
            start[2] = self._fetch.height_offset  # the cube's centre height when it rests on the table
        return start

    def _observe(self, fetch_obs: dict):
        observation = fetch_obs["observation"].astype(np.float32)
        position = fetch_obs["observation"][self.task.tracked]
        index = reached_goal(position, self.goals)
        info = {"goal_index": -1 if index is None else index, "tracked_pos": position.copy()}
        return observation, goal_reward(position, self.goals), info

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        fetch_obs, _ = self._fetch.reset(seed=seed)
        # The start pose is fixed, but read it after reset so the goals follow it if that ever changes.
        centre = self.goal_centre()
        self.goals = goal_positions(centre, self.goal_distance)
        home = above(centre, ARM_START_HEIGHT) if self.task.tracks_object else centre
        arm_start = home + self.np_random.uniform(-START_JITTER, START_JITTER, 3)
        for _ in range(START_STEPS):
            action = move_towards(fetch_obs["observation"][GRIPPER_POS], arm_start, 0.0, self.np_random, noise=0.0)
            fetch_obs, _, _, _, _ = self._fetch.step(action)
        if self.task.tracks_object:  # now that the gripper is above it, the cube can go under it
            cube_start = centre[:2] + self.np_random.uniform(-OBJECT_JITTER, OBJECT_JITTER, 2)
            fetch_obs = _place_cube(self._fetch, cube_start)
        self._steps = 0
        observation, _, info = self._observe(fetch_obs)
        return observation, info

    def step(self, action):
        fetch_obs, _, _, _, _ = self._fetch.step(np.asarray(action, dtype=np.float32))
        self._steps += 1
        observation, reward, info = self._observe(fetch_obs)
        return observation, reward, False, self._steps >= EPISODE_STEPS, info

    def snapshot(self) -> tuple[np.ndarray, int]:
        """The simulator's whole state and the step count: `restore` returns the env to exactly here, so
        the data generator can branch several expert continuations off one state."""
        import mujoco

        model, data = self._fetch.model, self._fetch.data
        state = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(model, data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        return state, self._steps

    def restore(self, snapshot: tuple[np.ndarray, int]) -> None:
        import mujoco

        state, self._steps = snapshot
        mujoco.mj_setState(self._fetch.model, self._fetch.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self._fetch.model, self._fetch.data)  # positions and velocities the next step reads

    def render(self):
        return self._fetch.render()

    def close(self):
        self._fetch.close()


class FetchReachFourGoalEnv(FetchFourGoalEnv):
    """The reach task under the name it had before push and pick joined it."""

    def __init__(self, render_mode=None):
        super().__init__("reach", render_mode)
