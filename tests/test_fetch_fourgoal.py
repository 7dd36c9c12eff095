"""The four-goal Fetch tasks (reach, push, pick): goal geometry, reward, observation, episode length, the
scripted experts, the generated data."""

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import fetch_fourgoal as fg

START = np.array([1.34, 0.75, 0.53])


@pytest.fixture(scope="module")
def env():
    env = fg.FetchReachFourGoalEnv()
    yield env
    env.close()


@pytest.fixture(scope="module", params=["push", "pick"])
def object_env(request):
    env = fg.FetchFourGoalEnv(request.param)
    yield env
    env.close()


def run_expert(env, goal_index, seed, noise=fg.EXPERT_NOISE):
    """One scripted episode; returns rewards, the info of every step, terminated and truncated flags."""
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    rewards, infos, terminated, truncated = [], [], [], []
    while not truncated or not truncated[-1]:
        action = env.task.expert(observation, env.goals[goal_index], rng, noise)
        observation, reward, term, trunc, info = env.step(action)
        for record, value in zip((rewards, infos, terminated, truncated), (reward, info, term, trunc)):
            record.append(value)
    return np.array(rewards), infos, np.array(terminated), np.array(truncated)


def test_goals_sit_one_per_quadrant_around_the_start_at_the_same_distance_and_height():
    goals = fg.goal_positions(START)
    assert goals.shape == (4, 3)
    offsets = goals - START
    np.testing.assert_allclose(offsets[:, 2], 0.0)
    np.testing.assert_allclose(np.linalg.norm(offsets[:, :2], axis=1), fg.GOAL_DISTANCE)
    assert (np.sign(offsets[:, :2]) == [[1, 1], [-1, 1], [-1, -1], [1, -1]]).all()
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=1e-12)  # symmetric about the start
    np.testing.assert_allclose(np.abs(offsets[:, 0]), np.abs(offsets[:, 1]))  # on the diagonals
    # The reward disks are disjoint and exclude the start.
    gaps = np.linalg.norm(goals[:, None] - goals[None], axis=-1)[~np.eye(4, dtype=bool)]
    assert gaps.min() > 2 * fg.GOAL_RADIUS and fg.GOAL_DISTANCE > fg.GOAL_RADIUS


def test_reward_is_two_at_goal_one_one_at_the_others_and_zero_elsewhere():
    goals = fg.goal_positions(START)
    for index, expected in enumerate([2.0, 1.0, 1.0, 1.0]):
        assert fg.reached_goal(goals[index], goals) == index
        assert fg.goal_reward(goals[index], goals) == expected
        inside = goals[index] + [0.0, 0.0, fg.GOAL_RADIUS - 1e-6]
        outside = goals[index] + [0.0, 0.0, fg.GOAL_RADIUS + 1e-6]
        assert fg.goal_reward(inside, goals) == expected
        assert fg.reached_goal(outside, goals) is None and fg.goal_reward(outside, goals) == 0.0
    assert fg.reached_goal(START, goals) is None and fg.goal_reward(START, goals) == 0.0
    midpoint = (goals[0] + goals[1]) / 2  # between two goals: neither
    assert fg.goal_reward(midpoint, goals) == 0.0


def test_scripted_action_points_at_the_goal_is_clipped_and_leaves_the_fingers_alone():
    rng = np.random.default_rng(0)
    observation = np.concatenate([START, np.zeros(7)])
    goals = fg.goal_positions(START)
    for goal in goals:
        action = fg.scripted_reach_action(observation, goal, rng, noise=0.0)
        assert action.shape == (4,) and action[3] == 0.0
        np.testing.assert_allclose(action[:3], fg.EXPERT_GAIN * (goal - START), rtol=1e-6)
        assert np.all(np.abs(action[:3]) < 1.0)  # unsaturated at the start: its direction names the goal
    far = fg.scripted_reach_action(observation, START + 1.0, rng, noise=0.5)
    np.testing.assert_array_equal(far[:3], 1.0)


def test_env_observes_the_robot_only_and_places_goals_around_its_start(env):
    observation, info = env.reset(seed=0)
    assert env.observation_space.shape == (10,) and observation.shape == (10,)
    assert env.observation_space.contains(observation)
    assert env.action_space.shape == (4,)
    assert info["goal_index"] == -1
    # the start varies with the seed, near FetchReach's fixed pose; the goals do not move
    assert np.abs(observation[:3] - env._fetch.initial_gripper_xpos).max() <= fg.START_JITTER
    np.testing.assert_allclose(env.goals, fg.goal_positions(env._fetch.initial_gripper_xpos))
    same, _ = env.reset(seed=0)
    other, _ = env.reset(seed=7)
    np.testing.assert_array_equal(observation, same)
    assert not np.allclose(observation, other)


def test_episode_lasts_fifty_steps_truncated_never_terminated(env):
    env.reset(seed=1)
    for step in range(1, fg.EPISODE_STEPS + 1):
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (step == fg.EPISODE_STEPS)
        assert reward in (0.0, 1.0, 2.0)


@pytest.mark.parametrize("goal_index", range(4))
def test_scripted_expert_reaches_each_goal_and_earns_its_reward(env, goal_index):
    expected = 2.0 if goal_index == 0 else 1.0
    for seed in range(3):
        rewards, infos, terminated, truncated = run_expert(env, goal_index, seed)
        assert len(rewards) == fg.EPISODE_STEPS and not terminated.any() and truncated[-1]
        assert infos[-1]["goal_index"] == goal_index
        assert rewards[-1] == expected
        assert set(np.unique(rewards)) <= {0.0, expected}  # it never passes through another goal
        assert rewards.sum() > 0.8 * expected * fg.EPISODE_STEPS


def test_expert_success_counts_final_arrivals(env):
    assert fg.expert_success(2, episodes=2, seed=0) == 1.0
    assert fg.expert_success(0, episodes=2, seed=0, noise=50.0) == 0.0  # a random walk ends elsewhere


@pytest.mark.parametrize("task", ["reach", "push", "pick"])
def test_the_registered_id_makes_the_task_with_its_50_step_limit(task):
    env = gym.make(envs.FETCH_FOUR_GOAL_IDS[task])
    observation, _ = env.reset(seed=0)
    assert env.unwrapped.task == fg.TASKS[task]
    assert observation.shape == (fg.TASKS[task].observation_dim,)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(4, np.float32))
        steps += 1
        assert not terminated
    assert steps == fg.EPISODE_STEPS
    env.close()


def test_dataset_has_one_expert_trajectory_per_goal_from_each_start_state():
    data = fg.make_dataset(starts=2, seed=3)
    size = 2 * fg.NUM_GOALS * fg.EPISODE_STEPS
    assert data["observations"].shape == (size, fg.OBSERVATION_DIM) and data["actions"].shape == (size, 4)
    episodes = data["observations"].reshape(2, fg.NUM_GOALS, fg.EPISODE_STEPS, fg.OBSERVATION_DIM)
    for start in range(2):  # the four trajectories of a start state begin in the same state
        assert np.allclose(episodes[start, :, 0], episodes[start, 0, 0])
    first_actions = data["actions"].reshape(2, fg.NUM_GOALS, fg.EPISODE_STEPS, 4)[:, :, 0, :2]
    assert (np.sign(first_actions) == fg.QUADRANT_SIGNS).all()  # four conflicting labels for one state
    assert data["timeouts"].reshape(-1, fg.EPISODE_STEPS)[:, -1].all() and data["timeouts"].sum() == 2 * 4
    assert not data["terminals"].any()
    assert (data["expert_success"] == 1.0).all()
    assert data["ref_min_score"] < 10 < 90 < data["ref_max_score"] <= 2 * fg.EPISODE_STEPS


def test_fetch_name_generates_the_data_once_and_scores_against_its_references(tmp_path):
    from utils.datasets import load_dataset

    first = load_dataset("FetchReach-FourGoal-v0", fetch_starts=2, seed=1, data_dir=tmp_path)
    (path,) = tmp_path.glob("*.hdf5")
    written = path.stat().st_mtime_ns
    again = load_dataset("fetchreach-fourgoal-v0", fetch_starts=2, seed=1, data_dir=tmp_path)
    assert path.stat().st_mtime_ns == written  # read back, not made again
    np.testing.assert_array_equal(first.actions, again.actions)
    assert first.eval_env_id == envs.FETCH_REACH_FOUR_GOAL_ID and first.size == 2 * 4 * fg.EPISODE_STEPS
    assert first.score.normalise(first.score.max_score) == 100.0 and first.score.normalise(first.score.min_score) == 0.0


def test_evaluation_logs_where_episodes_end(tmp_path):
    from utils.datasets import load_dataset
    from utils.evaluation import Evaluator

    dataset = load_dataset("fetchreach-fourgoal-v0", fetch_starts=1, seed=0, data_dir=tmp_path)
    evaluator = Evaluator(dataset, episodes=3, seed=5)
    goals = fg.goal_positions(np.array([1.34183502, 0.74910104, 0.53472395]))
    rng = np.random.default_rng(0)
    try:
        result = evaluator(lambda obs: np.stack([fg.scripted_reach_action(o, goals[2], rng) for o in obs]))
    finally:
        evaluator.close()
    assert [result[f"eval/goal_{k}_share"] for k in (1, 2, 3, 4)] == [0.0, 0.0, 1.0, 0.0]
    assert result["eval/episode_length"] == fg.EPISODE_STEPS


# ---- push and pick: the cube must reach a goal on the table ---------------------------------------------

TABLE_X, TABLE_Y = (1.05, 1.55), (0.40, 1.10)  # the table top in the Fetch scenes (centre 1.3, 0.75; half 0.25, 0.35)


def test_object_goals_lie_on_the_table_one_per_quadrant_around_the_cube_start(object_env):
    object_env.reset(seed=0)
    centre, goals = object_env.goal_centre(), object_env.goals
    assert centre[2] == pytest.approx(object_env._fetch.height_offset)  # the cube's centre, resting on the table
    np.testing.assert_allclose(goals, fg.goal_positions(centre, fg.OBJECT_GOAL_DISTANCE))
    np.testing.assert_allclose(goals[:, 2], object_env._fetch.height_offset)
    offsets = goals[:, :2] - centre[:2]
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=1), fg.OBJECT_GOAL_DISTANCE)
    assert (np.sign(offsets) == fg.QUADRANT_SIGNS).all()
    # on the table with room for the cube and for the pusher behind it (up to PUSH_STANDOFF further out)
    margin = fg.CUBE_HALF_SIZE + fg.PUSH_STANDOFF
    assert (goals[:, 0] > TABLE_X[0] + margin).all() and (goals[:, 0] < TABLE_X[1] - margin).all()
    assert (goals[:, 1] > TABLE_Y[0] + margin).all() and (goals[:, 1] < TABLE_Y[1] - margin).all()
    # no start of the cube (jitter included) is already in a reward disk
    assert fg.OBJECT_GOAL_DISTANCE - np.sqrt(2) * fg.OBJECT_JITTER > fg.GOAL_RADIUS


def test_object_start_varies_with_the_seed_cube_resting_below_the_gripper(object_env):
    observation, info = object_env.reset(seed=3)
    assert object_env.observation_space.shape == (25,) and observation.shape == (25,)
    assert object_env.action_space.shape == (4,) and info["goal_index"] == -1
    centre = object_env.goal_centre()
    gripper, cube = observation[fg.GRIPPER_POS], observation[fg.OBJECT_POS]
    assert np.abs(cube[:2] - centre[:2]).max() <= fg.OBJECT_JITTER
    assert cube[2] == pytest.approx(centre[2], abs=1e-3)
    relative = observation[fg.OBJECT_POS.stop:fg.OBJECT_POS.stop + 3]  # observed after the cube was placed
    np.testing.assert_allclose(relative, cube - gripper, atol=1e-6)
    assert gripper[2] - cube[2] > fg.ARM_START_HEIGHT - fg.START_JITTER - 0.015  # above it, fingers clear
    same, _ = object_env.reset(seed=3)
    other, _ = object_env.reset(seed=4)
    np.testing.assert_array_equal(observation, same)
    assert not np.allclose(observation[fg.OBJECT_POS], other[fg.OBJECT_POS])


def test_reward_follows_the_cube_two_at_goal_one_one_at_the_others_zero_elsewhere(object_env):
    object_env.reset(seed=0)
    goals = object_env.goals
    places = [*goals[:, :2], (goals[0, :2] + goals[1, :2]) / 2, goals[2, :2] + [fg.GOAL_RADIUS + 0.005, 0.0]]
    expected = [(2.0, 0), (1.0, 1), (1.0, 2), (1.0, 3), (0.0, -1), (0.0, -1)]
    for xy, (reward, index) in zip(places, expected):
        fg._place_cube(object_env._fetch, xy)
        observation, got, terminated, _, info = object_env.step(np.zeros(4, np.float32))  # the gripper stays clear
        assert (got, info["goal_index"]) == (reward, index) and not terminated
        np.testing.assert_allclose(info["tracked_pos"], observation[fg.OBJECT_POS])


@pytest.mark.parametrize("task", ["push", "pick"])
@pytest.mark.parametrize("goal_index", range(4))
def test_scripted_expert_brings_the_cube_to_each_goal(task, goal_index):
    assert fg.expert_success(goal_index, episodes=3, seed=0, task=task) == 1.0


def test_pick_expert_carries_the_cube_lifted_and_ends_holding_it_on_the_table():
    env = fg.FetchFourGoalEnv("pick")
    rewards, infos, _, _ = run_expert(env, goal_index=0, seed=1)
    env.close()
    heights = np.array([info["tracked_pos"][2] for info in infos]) - env.goals[0, 2]
    assert heights.max() > fg.CARRY_HEIGHT / 2  # lifted, not dragged
    assert abs(heights[-1]) < 0.01 and infos[-1]["goal_index"] == 0
    assert set(np.unique(rewards)) <= {0.0, 2.0} and rewards[-10:].sum() == 20.0


def test_push_expert_never_lifts_the_cube():
    env = fg.FetchFourGoalEnv("push")
    _, infos, _, _ = run_expert(env, goal_index=2, seed=1)
    env.close()
    heights = np.array([info["tracked_pos"][2] for info in infos]) - env.goals[2, 2]
    assert np.abs(heights).max() < 0.02 and infos[-1]["goal_index"] == 2


def test_push_data_file_round_trip(tmp_path):
    from utils.datasets import load_dataset

    first = load_dataset("fetchpush-fourgoal-v0", fetch_starts=2, data_dir=tmp_path)
    (path,) = tmp_path.glob("*.hdf5")
    assert path.name == f"fetchpush-fourgoal-v0_data{fg.DATA_VERSION}_seed0_starts2.hdf5"
    written = path.stat().st_mtime_ns
    again = load_dataset("FetchPush-FourGoal-v0", fetch_starts=2, data_dir=tmp_path)
    assert path.stat().st_mtime_ns == written  # read back, not made again
    np.testing.assert_array_equal(first.observations, again.observations)
    size = 2 * fg.NUM_GOALS * fg.EPISODE_STEPS
    assert first.observations.shape == (size, fg.OBJECT_OBSERVATION_DIM) and first.actions.shape == (size, 4)
    assert first.next_observations.shape == (size, fg.OBJECT_OBSERVATION_DIM)
    assert first.num_episodes == 2 * fg.NUM_GOALS and not first.terminals.any()
    assert first.episode_ends.reshape(-1, fg.EPISODE_STEPS)[:, -1].all() and first.episode_ends.sum() == 8
    assert first.eval_env_id == envs.FETCH_PUSH_FOUR_GOAL_ID
    episodes = first.observations.reshape(2, fg.NUM_GOALS, fg.EPISODE_STEPS, -1)
    assert np.allclose(episodes[:, :, 0], episodes[:, :1, 0])  # the four trajectories share the start state
    rewards = first.rewards.reshape(2, fg.NUM_GOALS, fg.EPISODE_STEPS)
    assert set(np.unique(rewards[:, 0])) == {0.0, 2.0} and set(np.unique(rewards[:, 1:])) == {0.0, 1.0}
    assert first.score.min_score < 5 < 30 < first.score.max_score <= 2 * fg.EPISODE_STEPS


def test_unknown_name_suggests_the_fetch_sets():
    from utils.datasets import load_dataset
    from utils.errors import UserInputError

    with pytest.raises(UserInputError, match="did you mean fetchpick-fourgoal-v0") as caught:
        load_dataset("fetchpick-fourgoal-v1")
    assert all(f"fetch{task}-fourgoal-v0" in str(caught.value) for task in ("reach", "push", "pick"))
