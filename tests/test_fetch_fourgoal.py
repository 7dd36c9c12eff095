"""The four-goal FetchReach: goal geometry, reward, observation, episode length, the scripted expert."""

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


def run_expert(env, goal_index, seed, noise=fg.EXPERT_NOISE):
    """One scripted episode; returns rewards, the info of every step, terminated and truncated flags."""
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    rewards, infos, terminated, truncated = [], [], [], []
    while not truncated or not truncated[-1]:
        action = fg.scripted_reach_action(observation, env.goals[goal_index], rng, noise)
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


def test_the_registered_id_makes_the_task_with_its_50_step_limit():
    env = gym.make(envs.FETCH_REACH_FOUR_GOAL_ID)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (fg.OBSERVATION_DIM,)
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
