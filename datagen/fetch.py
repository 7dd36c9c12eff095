"""The scripted experts of the four-goal Fetch tasks (`envs/fetch_fourgoal.py`) and the data they make.

The experts (`scripted_reach_action`, `scripted_push_action`, `scripted_pick_action`) are noisy
P-controllers on the gripper (`envs.fetch_fourgoal.move_towards`), with noise of std `EXPERT_NOISE` on the
displacement (clipped to [-1, 1]). They read only the observation, so the same state always gets the same
noise-free action for a goal. At `EXPERT_GAIN` they move at full speed: the xy action sits at a corner of
[-1, 1]^2 until the gripper is within 5 cm per axis of where it is going (the paper's Figure 4: actions
clustered around (+-1, +-1)); pushing alone is slower (`PUSH_SPEED`), as a fast push spins the cube.

Two layouts of the data (`LAYOUTS`, `--fetch_data`):
- `BRANCHING` (the default; the paper's structure, "given a state and four goals ... four trajectories
  corresponding to each goal"): from each start state one expert trajectory to each goal, and at every
  `branch_every`-th state along each of them, moving states included, one expert continuation toward each
  of the three other goals, `branch_depth` steps long (its last row is a timeout). Such a state carries
  four labels, one toward each goal. Depth 3 keeps each branch's first action a TD target (the critics
  need the next action) while about 40 % of the rows sit at four-label states; deeper continuations dilute
  that share (1 / (1 + 3 depth) of the rows are a main trajectory's), shallower ones leave the branch
  labels without a next action.
- `START_ONLY` (the data of earlier versions, for comparison): one trajectory per goal from each start
  state, nothing else, slower experts (the env's `GAIN`) and reach goals 0.12 m away. Only the start states
  carry four labels (2 % of the rows).

Expert success (the cube or gripper at the goal at the end) and generation time per task are measured by
`python -m scripts.fetch_data` and reported in docs/datasets.md.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np

from envs.fetch_fourgoal import (
    CUBE_HALF_SIZE,
    EPISODE_STEPS,
    GRIPPER_POS,
    NUM_GOALS,
    OBJECT_FINGERS,
    OBJECT_POS,
    GAIN,
    GOAL_DISTANCE,
    START_ONLY_GOAL_DISTANCE,
    TASKS,
    FetchFourGoalEnv,
    above,
    move_towards,
)

EXPERT_NOISE = 0.1  # std of the Gaussian added to each displacement component before clipping
EXPERT_GAIN = 20.0  # the Fetch envs move 0.05 * action a step: at gain 20 the action saturates beyond 5 cm
OPEN, CLOSE = 1.0, -1.0  # finger commands
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



def scripted_reach_action(observation: np.ndarray, goal: np.ndarray, rng: np.random.Generator,
                          noise: float = EXPERT_NOISE, gain: float = EXPERT_GAIN) -> np.ndarray:
    """A noisy P-controller moving the gripper toward `goal`; the finger command stays 0."""
    return move_towards(np.asarray(observation)[GRIPPER_POS], goal, 0.0, rng, noise, gain=gain)


def _straight_up(gripper: np.ndarray, cube: np.ndarray) -> np.ndarray:
    """Where the gripper clears the cube without moving sideways: hover height, right above where it is."""
    return np.append(gripper[:2], cube[2] + HOVER_HEIGHT)


def _approach(gripper: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Where to go to reach `point` from above: first over it at hover height, then straight down."""
    if np.linalg.norm(gripper[:2] - point[:2]) > ALIGN_TOLERANCE:
        return above(point, HOVER_HEIGHT)
    return point


def scripted_push_action(observation: np.ndarray, goal: np.ndarray, rng: np.random.Generator,
                         noise: float = EXPERT_NOISE, gain: float = EXPERT_GAIN) -> np.ndarray:
    """Push the cube to `goal`: get behind it on the far side from the goal, go down, push through.

    The cube-to-goal line is recomputed every step. While pushing, the gripper aims `PUSH_LEAD` ahead of
    the point behind the cube on that line, so it pushes and steers back onto the line at once; a pusher
    that ends up beside or in front of the cube lifts and goes round. The fingers stay closed (FetchPush
    blocks them anyway)."""
    observation = np.asarray(observation)
    gripper, cube = observation[GRIPPER_POS], observation[OBJECT_POS]
    to_goal = np.asarray(goal)[:2] - cube[:2]
    if np.linalg.norm(to_goal) < SETTLED:  # done: rise clear of the cube, so a drifting gripper cannot nudge it
        return move_towards(gripper, _straight_up(gripper, cube), CLOSE, rng, noise, gain=gain)
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
        return move_towards(gripper, behind + np.append(lead * direction, 0.0), CLOSE, rng, noise, speed=PUSH_SPEED, gain=gain)
    below_hover = gripper[2] < cube[2] + HOVER_HEIGHT - PUSH_HEIGHT_TOLERANCE
    if below_hover and np.linalg.norm(gripper[:2] - behind[:2]) > 2 * ALIGN_TOLERANCE:
        # Beside or in front of the cube, or on the way up from there: straight up before going round.
        return move_towards(gripper, _straight_up(gripper, cube), CLOSE, rng, noise, gain=gain)
    return move_towards(gripper, _approach(gripper, behind), CLOSE, rng, noise, gain=gain)


def scripted_pick_action(observation: np.ndarray, goal: np.ndarray, rng: np.random.Generator,
                         noise: float = EXPERT_NOISE, gain: float = EXPERT_GAIN) -> np.ndarray:
    """Grasp the cube and carry it to `goal`: above it, down with open fingers, close, lift, carry at
    `CARRY_HEIGHT`, lower onto the table at the goal and keep holding it there."""
    observation = np.asarray(observation)
    gripper, cube = observation[GRIPPER_POS], observation[OBJECT_POS]
    between_fingers = np.linalg.norm(cube - gripper) < GRASP_TOLERANCE
    if not between_fingers:
        return move_towards(gripper, _approach(gripper, cube), OPEN, rng, noise, gain=gain)
    if observation[OBJECT_FINGERS].sum() > GRASP_WIDTH:  # not yet closed on the cube
        return move_towards(gripper, cube, CLOSE, rng, noise, gain=gain)
    goal = np.asarray(goal)
    if np.linalg.norm(goal[:2] - cube[:2]) > PLACE_TOLERANCE:
        return move_towards(gripper, above(goal, CARRY_HEIGHT), CLOSE, rng, noise, gain=gain)
    return move_towards(gripper, goal, CLOSE, rng, noise, gain=gain)


EXPERTS = {"reach": scripted_reach_action, "push": scripted_push_action, "pick": scripted_pick_action}


@dataclass(frozen=True)
class FetchLayout:
    """How a four-goal Fetch set is made (see the module docstring)."""

    name: str
    version: int  # part of the cache file's name: raise it with any change to what a seed produces
    expert_gain: float
    reach_goal_distance: float
    branch_every: int  # branch at every branch_every-th state of each expert trajectory; 0: never
    branch_depth: int  # steps of each continuation

    def goal_distance(self, task: str) -> float:
        return self.reach_goal_distance if task == "reach" else TASKS[task].goal_distance

    def branches_at(self, step: int) -> bool:
        return self.branch_every > 0 and step % self.branch_every == 0


BRANCHING = FetchLayout("branching", 3, EXPERT_GAIN, GOAL_DISTANCE, branch_every=1, branch_depth=3)
START_ONLY = FetchLayout("start_only", 2, GAIN, START_ONLY_GOAL_DISTANCE, branch_every=0, branch_depth=0)
LAYOUTS = {layout.name: layout for layout in (BRANCHING, START_ONLY)}


def expert_success(goal_index: int, episodes: int, seed: int, noise: float = EXPERT_NOISE,
                   task: str = "reach", layout: FetchLayout = BRANCHING) -> float:
    """Fraction of scripted-expert episodes toward goal `goal_index` that end with the tracked body at it."""
    env = FetchFourGoalEnv(task, goal_distance=layout.goal_distance(task))
    rng = np.random.default_rng(seed)
    successes = 0
    for episode in range(episodes):
        _, _, end = run_episode(env, seed + episode, lambda obs: EXPERTS[task](
            obs, env.goals[goal_index], rng, noise, layout.expert_gain))
        successes += end == goal_index
    env.close()
    return successes / episodes


def rollout(env: FetchFourGoalEnv, observation: np.ndarray, choose_action, steps: int = EPISODE_STEPS,
            snapshot_at=lambda step: False) -> tuple[list, dict, dict]:
    """Up to `steps` steps from `observation` (fewer if the episode ends): (transitions, the last info,
    {step: env snapshot taken before that step, for each step where `snapshot_at(step)`})."""
    transitions, snapshots, info = [], {}, {}
    for step in range(steps):
        if snapshot_at(step):
            snapshots[step] = env.snapshot()
        action = choose_action(observation)
        next_observation, reward, _, truncated, info = env.step(action)
        transitions.append((observation, action, reward, truncated, next_observation))
        observation = next_observation
        if truncated:
            break
    return transitions, info, snapshots


def run_episode(env: FetchFourGoalEnv, seed: int, choose_action) -> tuple[list, float, int]:
    """One episode from the start state of `seed`: (transitions, return, goal index at the end or -1)."""
    observation, _ = env.reset(seed=seed)
    transitions, info, _ = rollout(env, observation, choose_action)
    return transitions, sum(row[2] for row in transitions), info["goal_index"]


def make_dataset(starts: int, seed: int, noise: float = EXPERT_NOISE, task: str = "reach",
                 layout: FetchLayout = BRANCHING) -> dict:
    """From each of `starts` start states, one expert trajectory to each of the four goals and, where
    `layout` branches, the continuations toward the other goals (D4RL keys); the returns that define the
    score: a uniform random policy (0) and the expert to goal 1 (100); and per row the goal its expert heads
    for (`goal_labels`) and the branch state it starts from (`branch_ids`, -1 for none: rows with the same
    id share their observation and head for four different goals)."""
    env = FetchFourGoalEnv(task, goal_distance=layout.goal_distance(task))
    env.action_space.seed(seed)  # the random policy's return goes into the file: same seed, same file
    expert = partial(EXPERTS[task], rng=np.random.default_rng(seed), noise=noise, gain=layout.expert_gain)
    rows, goal_labels, branch_ids, successes, branches = [], [], [], np.zeros(NUM_GOALS), 0

    def add(transitions: list, goal: int, branch: int) -> None:
        rows.extend(transitions)
        goal_labels.extend([goal] * len(transitions))
        branch_ids.extend([branch] + [-1] * (len(transitions) - 1))

    for start in range(starts):
        first_rows = []
        for goal in range(NUM_GOALS):
            observation, _ = env.reset(seed=seed + start)
            trajectory, info, snapshots = rollout(env, observation, lambda obs: expert(obs, env.goals[goal]),
                                                  snapshot_at=layout.branches_at)
            successes[goal] += info["goal_index"] == goal
            first_row = len(rows)
            first_rows.append(first_row)
            add(trajectory, goal, -1)
            for step, snapshot in snapshots.items():
                branch_ids[first_row + step] = branches
                for other in range(NUM_GOALS):
                    if other != goal:
                        add(_continuation(env, snapshot, trajectory[step][0], expert, other, layout.branch_depth),
                            other, branches)
                branches += 1
        if not layout.branch_every:  # the four trajectories from a start state branch there
            for first_row in first_rows:
                branch_ids[first_row] = branches
            branches += 1
    observations, actions, rewards, timeouts, next_observations = map(np.array, zip(*rows))
    random_returns = [run_episode(env, seed + starts + i, lambda _: env.action_space.sample())[1]
                      for i in range(starts)]
    expert_returns = [run_episode(env, seed + 2 * starts + i, lambda obs: expert(obs, env.goals[0]))[1]
                      for i in range(starts)]
    env.close()
    return {"observations": observations.astype(np.float32), "actions": actions.astype(np.float32),
            "rewards": rewards.astype(np.float32), "terminals": np.zeros(len(rows), np.float32),
            "timeouts": timeouts.astype(np.float32), "next_observations": next_observations.astype(np.float32),
            "goal_labels": np.array(goal_labels, np.int8), "branch_ids": np.array(branch_ids, np.int64),
            "ref_min_score": float(np.mean(random_returns)), "ref_max_score": float(np.mean(expert_returns)),
            "expert_success": successes / starts}


def _continuation(env: FetchFourGoalEnv, snapshot, observation: np.ndarray, expert, goal: int, depth: int) -> list:
    """`depth` expert steps toward `goal` from a snapshot of a trajectory; the last row is a timeout."""
    env.restore(snapshot)
    transitions, _, _ = rollout(env, observation, lambda obs: expert(obs, env.goals[goal]), steps=depth)
    last = transitions[-1]
    transitions[-1] = last[:3] + (True,) + last[4:]
    return transitions


def branch_label_share(goal_labels: np.ndarray, branch_ids: np.ndarray, min_goals: int = 3) -> float:
    """Share of the rows at states whose labels head for at least `min_goals` distinct goals, counted by
    construction: the rows of one branch id share their state."""
    at_branch = branch_ids >= 0
    pairs = np.unique(np.stack([branch_ids[at_branch], goal_labels[at_branch]], axis=1), axis=0)
    ids, goals_per_id = np.unique(pairs[:, 0], return_counts=True)
    return float(np.isin(branch_ids, ids[goals_per_id >= min_goals]).mean())


def neighbourhood_label_share(observations: np.ndarray, goal_labels: np.ndarray, radius: float, queries: int,
                              rng: np.random.Generator, min_goals: int = 3, chunk: int = 64) -> float:
    """Share of `queries` random rows whose neighbourhood holds labels toward at least `min_goals` distinct
    goals. The neighbourhood is every row within `radius` of the row in the normalised observation: each
    dimension z-scored with the data's mean and std (constant dimensions dropped), the distance the root
    mean square over dimensions, so radius 0.1 is a tenth of a standard deviation per dimension."""
    varying = observations.std(axis=0) > 1e-6
    z = (observations[:, varying] - observations[:, varying].mean(0)) / observations[:, varying].std(0)
    z = z.astype(np.float32)
    limit = radius ** 2 * z.shape[1]
    picked = rng.choice(len(z), size=min(queries, len(z)), replace=False)
    squared_norms = (z ** 2).sum(1)
    rich = 0
    for part in np.array_split(picked, max(1, len(picked) // chunk)):
        distances = squared_norms[part, None] + squared_norms[None, :] - 2.0 * z[part] @ z.T
        near = distances <= limit
        goals_near = sum((near & (goal_labels == goal)).any(axis=1) for goal in range(NUM_GOALS))
        rich += int((goals_near >= min_goals).sum())
    return rich / len(picked)
