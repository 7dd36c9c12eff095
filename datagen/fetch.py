"""The scripted experts of the four-goal Fetch tasks (`envs/fetch_fourgoal.py`) and the data they make.

The experts (`scripted_reach_action`, `scripted_push_action`, `scripted_pick_action`) are noisy
P-controllers on the gripper (`envs.fetch_fourgoal.move_towards`), with noise of std `EXPERT_NOISE` on the
displacement (clipped to [-1, 1]). They read only the observation, so the same state always gets the same
noise-free action for a goal.

Expert success (the cube or gripper at the goal at the end), per goal, measured with `expert_success` and
`make_dataset`: reach 100% on every goal; pick 100% on every goal over 100 start states (two sets of
seeds); push 99-100% per goal over 100 start states (a push now and then spins the cube past the goal).

`make_dataset(starts, seed, task=...)` writes from each start state one expert trajectory per goal. Time
to generate it, per 100 start states on one core (4 goals x 50 steps plus 2 x 50 reference steps per
start state; measured on a 2-core machine busy with another job): reach 30 s, push 34-41 s, pick 35 s.
"""

import numpy as np

from envs.fetch_fourgoal import (
    CUBE_HALF_SIZE,
    EPISODE_STEPS,
    GRIPPER_POS,
    NUM_GOALS,
    OBJECT_FINGERS,
    OBJECT_POS,
    FetchFourGoalEnv,
    above,
    move_towards,
)

# Version of the data a seed produces, part of the cache file's name: raise it with any change to the
# start states, goals or experts, so no run reads a file made by older code. 2: 5 mm start spread.
DATA_VERSION = 2
EXPERT_NOISE = 0.1  # std of the Gaussian added to each displacement component before clipping
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
                          noise: float = EXPERT_NOISE) -> np.ndarray:
    """A noisy P-controller moving the gripper toward `goal`; the finger command stays 0."""
    return move_towards(np.asarray(observation)[GRIPPER_POS], goal, 0.0, rng, noise)


def _straight_up(gripper: np.ndarray, cube: np.ndarray) -> np.ndarray:
    """Where the gripper clears the cube without moving sideways: hover height, right above where it is."""
    return np.append(gripper[:2], cube[2] + HOVER_HEIGHT)


def _approach(gripper: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Where to go to reach `point` from above: first over it at hover height, then straight down."""
    if np.linalg.norm(gripper[:2] - point[:2]) > ALIGN_TOLERANCE:
        return above(point, HOVER_HEIGHT)
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
        return move_towards(gripper, _straight_up(gripper, cube), CLOSE, rng, noise)
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
        return move_towards(gripper, behind + np.append(lead * direction, 0.0), CLOSE, rng, noise, speed=PUSH_SPEED)
    below_hover = gripper[2] < cube[2] + HOVER_HEIGHT - PUSH_HEIGHT_TOLERANCE
    if below_hover and np.linalg.norm(gripper[:2] - behind[:2]) > 2 * ALIGN_TOLERANCE:
        # Beside or in front of the cube, or on the way up from there: straight up before going round.
        return move_towards(gripper, _straight_up(gripper, cube), CLOSE, rng, noise)
    return move_towards(gripper, _approach(gripper, behind), CLOSE, rng, noise)


def scripted_pick_action(observation: np.ndarray, goal: np.ndarray, rng: np.random.Generator,
                         noise: float = EXPERT_NOISE) -> np.ndarray:
    """Grasp the cube and carry it to `goal`: above it, down with open fingers, close, lift, carry at
    `CARRY_HEIGHT`, lower onto the table at the goal and keep holding it there."""
    observation = np.asarray(observation)
    gripper, cube = observation[GRIPPER_POS], observation[OBJECT_POS]
    between_fingers = np.linalg.norm(cube - gripper) < GRASP_TOLERANCE
    if not between_fingers:
        return move_towards(gripper, _approach(gripper, cube), OPEN, rng, noise)
    if observation[OBJECT_FINGERS].sum() > GRASP_WIDTH:  # not yet closed on the cube
        return move_towards(gripper, cube, CLOSE, rng, noise)
    goal = np.asarray(goal)
    if np.linalg.norm(goal[:2] - cube[:2]) > PLACE_TOLERANCE:
        return move_towards(gripper, above(goal, CARRY_HEIGHT), CLOSE, rng, noise)
    return move_towards(gripper, goal, CLOSE, rng, noise)


EXPERTS = {"reach": scripted_reach_action, "push": scripted_push_action, "pick": scripted_pick_action}


def expert_success(goal_index: int, episodes: int, seed: int, noise: float = EXPERT_NOISE,
                   task: str = "reach") -> float:
    """Fraction of scripted-expert episodes toward goal `goal_index` that end with the tracked body at it."""
    env = FetchFourGoalEnv(task)
    rng = np.random.default_rng(seed)
    successes = 0
    for episode in range(episodes):
        _, _, end = run_episode(env, seed + episode,
                                lambda obs: EXPERTS[task](obs, env.goals[goal_index], rng, noise))
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
    expert = EXPERTS[task]
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
