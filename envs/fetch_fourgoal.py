"""The paper's multi-modal Fetch tasks (Section 6.2): four goals, one per quadrant, the first one pays double.

Three tasks share one env class, `FetchFourGoalEnv(task)`, parameterised by a `FetchTask`: the
gymnasium-robotics env underneath, the body whose position earns the reward, and the scripted expert.

- "reach" (`FetchReachFourGoal-v0`, on `FetchReach-v4`): the GRIPPER must reach a goal. The goals sit at
  `GOAL_DISTANCE` from the gripper's start position in the xy-plane, at the start height.
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
action labels (for pick, the labels part once the cube is in the hand: the way to grasp it is the same).

Start states vary with the seed and the same seed gives the same start state. After the Fetch env's own
reset the gripper is driven for START_STEPS steps toward a point drawn uniformly within START_JITTER (per
axis) of its home: the Fetch start pose for reach, `ARM_START_HEIGHT` above the cube's nominal start for
push and pick, so a pushing gripper must first go round the cube (FetchPush starts the gripper at table
height; it ends up to 1.5 cm short of that point). Then, for push and pick, the cube is put at rest at its
nominal start plus a uniform xy offset within OBJECT_JITTER: the Fetch env's own random cube position is
replaced, and its own random goal is ignored.
START_JITTER is small (5 mm) on purpose: the start states then form one tight cluster whose rows carry
all four goals' first actions, 4 x the number of start states of them. With a 4 cm jitter (our first
version) each start state had its own four labels, the behaviour MDN never separated them, and LOM's
hyper Q picked among components with no data behind them (issue 4's notes).

The experts (`scripted_reach_action`, `scripted_push_action`, `scripted_pick_action`) are noisy
P-controllers on the gripper, with noise of std `EXPERT_NOISE` on the displacement (clipped to [-1, 1]).
They read only the observation, so the same state always gets the same noise-free action for a goal.

Expert success (the cube or gripper at the goal at the end), per goal, measured with `expert_success` and
`make_dataset`: reach 100% on every goal; pick 100% on every goal over 100 start states (two sets of
seeds); push 99-100% per goal over 100 start states (a push now and then spins the cube past the goal).

`make_dataset(starts, seed, task=...)` writes from each start state one expert trajectory per goal. Time
to generate it, per 100 start states on one core (4 goals x 50 steps plus 2 x 50 reference steps per
start state; measured on a 2-core machine busy with another job): reach 30 s, push 34-41 s, pick 35 s.
"""

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

GOAL_DISTANCE = 0.12  # m from the start in xy for reach: 0.085 per axis, inside FetchReach's 0.15 goal range
OBJECT_GOAL_DISTANCE = 0.15  # m from the cube's nominal start in xy for push and pick (see the docstring)
GOAL_RADIUS = 0.05  # the Fetch envs' distance_threshold
GOAL_REWARDS = np.array([2.0, 1.0, 1.0, 1.0])  # per goal index (0 = quadrant 1)
NUM_GOALS = 4
QUADRANT_SIGNS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
EPISODE_STEPS = 50
# Version of the data a seed produces, part of the cache file's name: raise it with any change to the
# start states, goals or experts, so no run reads a file made by older code. 2: 5 mm start spread.
DATA_VERSION = 2
START_STEPS = 5  # start states: see the docstring
START_JITTER = 0.005  # m per axis, around the gripper's home (see the docstring)
ARM_START_HEIGHT = 0.11  # m above the cube's centre: FetchPickAndPlace's own start height
OBJECT_JITTER = 0.02  # m per axis, around the cube's nominal start
OBSERVATION_DIM = 10  # reach; push and pick observe 25 numbers (OBJECT_OBSERVATION_DIM)
OBJECT_OBSERVATION_DIM = 25

# Where things sit in the observation. Reach has the gripper only; push and pick insert the cube after it.
GRIPPER_POS = slice(0, 3)
OBJECT_POS = slice(3, 6)
OBJECT_FINGERS = slice(9, 11)  # the two finger joint positions (0 closed, 0.05 open) in push and pick

# The experts. The Fetch envs move the gripper by 0.05 * action per step, so gain 10 closes about half the
# remaining gap each step: 12 cm shrinks to well under 1 cm in ~10 steps, and at the reach start (12 cm
# away) the action is ~0.85 per axis, below the clip, so the action direction still points at the goal.
EXPERT_GAIN = 10.0
EXPERT_NOISE = 0.1  # std of the Gaussian added to each displacement component before clipping
OPEN, CLOSE = 1.0, -1.0  # finger commands
CUBE_HALF_SIZE = 0.025
HOVER_HEIGHT = 0.07  # m above the cube's centre: the fingertips (2 cm below the gripper) clear its top by 2.5 cm
ALIGN_TOLERANCE = 0.015  # m in xy: close enough above a point to go down onto it
# Push. The closed fingers span 3 cm in x and y, 2 cm of it below the gripper's centre; the goals lie on
# the diagonals, so the cube first meets the pusher with a corner, 3.5 cm from its centre.
PUSH_STANDOFF = 0.065  # m behind the cube's centre where the gripper goes down: corner + fingers + 1 cm
PUSH_HEIGHT = 0.005  # m above the cube's centre: the fingertips stay 1 cm clear of the table (they snag on it)
PUSH_HEIGHT_TOLERANCE = 0.01  # m above the push height: low enough to push without tipping the cube
PUSH_LINE_TOLERANCE = 0.03  # m off the cube-goal line: this far off, the pusher stops pushing to line up
PUSH_LEAD = 0.06  # m ahead of the standoff point: 3-5 cm into the cube once in contact, ~1 cm of push a step
PUSH_SPEED = 0.5  # action-norm cap while pushing: faster pushes spin the cube off the line
SETTLED = 0.025  # m from its goal (half the reward radius): the pusher stops, leaving margin for the cube to slide on
# Pick. The finger joint positions sum to 0.1 open, 0.048 on the cube, 0 closed on nothing.
GRASP_WIDTH = 0.055  # below this (with the cube between them) the fingers hold the cube
GRASP_TOLERANCE = 0.01  # m: the cube is between the fingertips
CARRY_HEIGHT = 0.05  # m the cube is lifted while carried, so it does not drag on the table
PLACE_TOLERANCE = 0.02  # m in xy from the goal before lowering the cube onto the table


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


def _move_towards(gripper: np.ndarray, target: np.ndarray, fingers: float, rng: np.random.Generator,
                  noise: float, speed: float = np.inf) -> np.ndarray:
    """The experts' P-controller: a gripper displacement toward `target` (norm at most `speed`) plus noise,
    clipped to the action range, and the finger command."""
    displacement = EXPERT_GAIN * (np.asarray(target) - np.asarray(gripper))
    norm = np.linalg.norm(displacement)
    if norm > speed:
        displacement *= speed / norm
    action = np.empty(4, dtype=np.float32)
    action[:3] = np.clip(displacement + noise * rng.standard_normal(3), -1.0, 1.0)
    action[3] = fingers  # a discrete intent (open or close): no noise
    return action


def scripted_reach_action(observation: np.ndarray, goal: np.ndarray, rng: np.random.Generator,
                          noise: float = EXPERT_NOISE) -> np.ndarray:
    """A noisy P-controller moving the gripper toward `goal`; the finger command stays 0."""
    return _move_towards(np.asarray(observation)[GRIPPER_POS], goal, 0.0, rng, noise)


def _above(point: np.ndarray, height: float) -> np.ndarray:
    return np.asarray(point) + [0.0, 0.0, height]


def _straight_up(gripper: np.ndarray, cube: np.ndarray) -> np.ndarray:
    """Where the gripper clears the cube without moving sideways: hover height, right above where it is."""
    return np.append(gripper[:2], cube[2] + HOVER_HEIGHT)


def _approach(gripper: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Where to go to reach `point` from above: first over it at hover height, then straight down."""
    if np.linalg.norm(gripper[:2] - point[:2]) > ALIGN_TOLERANCE:
        return _above(point, HOVER_HEIGHT)
    return point


def scripted_push_action(observation: np.ndarray, goal: np.ndarray, rng: np.random.Generator,
                         noise: float = EXPERT_NOISE) -> np.ndarray:
    """Push the cube to `goal`: get behind it on the far side from the goal, go down, push through.

    The cube-to-goal line is recomputed every step. While pushing, the gripper aims `PUSH_LEAD` ahead of
    the point behind the cube on that line, so it pushes and steers back onto the line at once; a pusher
    that ends up beside or in front of the cube lifts and goes round. The fingers stay closed (FetchPush
    blocks them anyway)."""
    observation = np.asarray(observation)
    gripper, cube = observation[GRIPPER_POS], observation[OBJECT_POS]
    to_goal = np.asarray(goal)[:2] - cube[:2]
    if np.linalg.norm(to_goal) < SETTLED:  # done: rise clear of the cube, so a drifting gripper cannot nudge it
        return _move_towards(gripper, _straight_up(gripper, cube), CLOSE, rng, noise)
    direction = to_goal / np.linalg.norm(to_goal)
    offset = gripper[:2] - cube[:2]
    along = offset @ direction
    behind = np.append(cube[:2] - PUSH_STANDOFF * direction, cube[2] + PUSH_HEIGHT)
    low = gripper[2] < behind[2] + PUSH_HEIGHT_TOLERANCE
    if low and along < -CUBE_HALF_SIZE:
        # Behind the cube: push through it, less the further the gripper is off the line (when it is
        # PUSH_LINE_TOLERANCE off, back to the standoff point: the cube stays put while the gripper lines up).
        off_line = np.linalg.norm(offset - along * direction)
        lead = PUSH_LEAD * max(0.0, 1.0 - off_line / PUSH_LINE_TOLERANCE)
        return _move_towards(gripper, behind + np.append(lead * direction, 0.0), CLOSE, rng, noise, speed=PUSH_SPEED)
    below_hover = gripper[2] < cube[2] + HOVER_HEIGHT - PUSH_HEIGHT_TOLERANCE
    if below_hover and np.linalg.norm(gripper[:2] - behind[:2]) > 2 * ALIGN_TOLERANCE:
        # Beside or in front of the cube, or on the way up from there: straight up before going round.
        return _move_towards(gripper, _straight_up(gripper, cube), CLOSE, rng, noise)
    return _move_towards(gripper, _approach(gripper, behind), CLOSE, rng, noise)


def scripted_pick_action(observation: np.ndarray, goal: np.ndarray, rng: np.random.Generator,
                         noise: float = EXPERT_NOISE) -> np.ndarray:
    """Grasp the cube and carry it to `goal`: above it, down with open fingers, close, lift, carry at
    `CARRY_HEIGHT`, lower onto the table at the goal and keep holding it there."""
    observation = np.asarray(observation)
    gripper, cube = observation[GRIPPER_POS], observation[OBJECT_POS]
    between_fingers = np.linalg.norm(cube - gripper) < GRASP_TOLERANCE
    if not between_fingers:
        return _move_towards(gripper, _approach(gripper, cube), OPEN, rng, noise)
    if observation[OBJECT_FINGERS].sum() > GRASP_WIDTH:  # not yet closed on the cube
        return _move_towards(gripper, cube, CLOSE, rng, noise)
    goal = np.asarray(goal)
    if np.linalg.norm(goal[:2] - cube[:2]) > PLACE_TOLERANCE:
        return _move_towards(gripper, _above(goal, CARRY_HEIGHT), CLOSE, rng, noise)
    return _move_towards(gripper, goal, CLOSE, rng, noise)


@dataclass(frozen=True)
class FetchTask:
    """What differs between the three tasks."""

    fetch_id: str  # the gymnasium-robotics env underneath
    tracks_object: bool  # the reward follows the cube (push, pick) or the gripper (reach)
    goal_distance: float
    observation_dim: int
    expert: Callable[[np.ndarray, np.ndarray, np.random.Generator, float], np.ndarray]

    @property
    def tracked(self) -> slice:
        """Where the rewarded body's position sits in the observation."""
        return OBJECT_POS if self.tracks_object else GRIPPER_POS


TASKS = {
    "reach": FetchTask("FetchReach-v4", False, GOAL_DISTANCE, OBSERVATION_DIM, scripted_reach_action),
    "push": FetchTask("FetchPush-v4", True, OBJECT_GOAL_DISTANCE, OBJECT_OBSERVATION_DIM, scripted_push_action),
    "pick": FetchTask("FetchPickAndPlace-v4", True, OBJECT_GOAL_DISTANCE, OBJECT_OBSERVATION_DIM,
                      scripted_pick_action),
}


def _make_fetch(fetch_id: str, render_mode=None):
    # Imported here so the geometry and the experts above work without gymnasium-robotics installed.
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

    def __init__(self, task: str = "reach", render_mode=None):
        self.task = TASKS[task]
        self._fetch = _make_fetch(self.task.fetch_id, render_mode)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.task.observation_dim,),
                                                dtype=np.float32)
        self.action_space = self._fetch.action_space
        self.goals = goal_positions(self.goal_centre(), self.task.goal_distance)
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
        self.goals = goal_positions(centre, self.task.goal_distance)
        home = _above(centre, ARM_START_HEIGHT) if self.task.tracks_object else centre
        arm_start = home + self.np_random.uniform(-START_JITTER, START_JITTER, 3)
        for _ in range(START_STEPS):
            action = scripted_reach_action(fetch_obs["observation"], arm_start, self.np_random, noise=0.0)
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

    def render(self):
        return self._fetch.render()

    def close(self):
        self._fetch.close()


class FetchReachFourGoalEnv(FetchFourGoalEnv):
    """The reach task under the name it had before push and pick joined it."""

    def __init__(self, render_mode=None):
        super().__init__("reach", render_mode)


def expert_success(goal_index: int, episodes: int, seed: int, noise: float = EXPERT_NOISE,
                   task: str = "reach") -> float:
    """Fraction of scripted-expert episodes toward goal `goal_index` that end with the tracked body at it."""
    env = FetchFourGoalEnv(task)
    rng = np.random.default_rng(seed)
    successes = 0
    for episode in range(episodes):
        _, _, end = run_episode(env, seed + episode,
                                lambda obs: env.task.expert(obs, env.goals[goal_index], rng, noise))
        successes += end == goal_index
    env.close()
    return successes / episodes


def run_episode(env: FetchFourGoalEnv, seed: int, choose_action) -> tuple[list, float, int]:
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


def make_dataset(starts: int, seed: int, noise: float = EXPERT_NOISE, task: str = "reach") -> dict:
    """From each of `starts` start states, one expert trajectory to each of the four goals (D4RL keys),
    plus the returns that define the score: a uniform random policy (0) and the expert to goal 1 (100)."""
    env = FetchFourGoalEnv(task)
    env.action_space.seed(seed)  # the random policy's return goes into the file: same seed, same file
    expert = env.task.expert
    rng = np.random.default_rng(seed)
    rows, successes = [], np.zeros(NUM_GOALS)
    for start in range(starts):
        for goal in range(NUM_GOALS):
            transitions, _, end = run_episode(env, seed + start, lambda obs: expert(obs, env.goals[goal], rng, noise))
            rows += transitions
            successes[goal] += end == goal
    observations, actions, rewards, timeouts, next_observations = map(np.array, zip(*rows))
    random_returns = [run_episode(env, seed + starts + i, lambda _: env.action_space.sample())[1]
                      for i in range(starts)]
    expert_returns = [run_episode(env, seed + 2 * starts + i, lambda obs: expert(obs, env.goals[0], rng, noise))[1]
                      for i in range(starts)]
    env.close()
    return {"observations": observations.astype(np.float32), "actions": actions.astype(np.float32),
            "rewards": rewards.astype(np.float32), "terminals": np.zeros(len(rows), np.float32),
            "timeouts": timeouts.astype(np.float32), "next_observations": next_observations.astype(np.float32),
            "ref_min_score": float(np.mean(random_returns)), "ref_max_score": float(np.mean(expert_returns)),
            "expert_success": successes / starts}
