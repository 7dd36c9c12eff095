"""The four-goal Fetch tasks (reach, push, pick) as envs: goal geometry, reward, observation, start states,
episode length. Their data makers are tested in test_datagen_fetch.py."""

import gymnasium as gym
import numpy as np
import pytest

import envs
from datagen import fetch as experts
from envs import fetch_fourgoal as fg

START = np.array([1.34, 0.75, 0.53])
TABLE_X, TABLE_Y = (1.05, 1.55), (0.40, 1.10)  # the table top in the Fetch scenes (centre 1.3, 0.75; half 0.25, 0.35)


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


def test_reach_goals_are_the_corners_of_fetchreachs_own_goal_box_and_the_env_takes_the_earlier_layout(reach_env):
    np.testing.assert_allclose(np.abs(reach_env.goals - reach_env.goal_centre())[:, :2], 0.15)  # target_range
    reach_env._fetch.np_random = np.random.default_rng(0)
    sampled = np.array([reach_env._fetch._sample_goal() for _ in range(200)]) - reach_env.goal_centre()
    assert np.abs(sampled[:, :2]).max() <= 0.15  # FetchReach's own goals never go further out
    earlier = fg.FetchFourGoalEnv("reach", goal_distance=fg.START_ONLY_GOAL_DISTANCE)
    earlier.reset(seed=0)
    np.testing.assert_allclose(np.linalg.norm((earlier.goals - earlier.goal_centre())[:, :2], axis=1), 0.12)
    earlier.close()


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


def test_env_observes_the_robot_only_and_places_goals_around_its_start(reach_env):
    observation, info = reach_env.reset(seed=0)
    assert reach_env.observation_space.shape == (10,) and observation.shape == (10,)
    assert reach_env.observation_space.contains(observation)
    assert reach_env.action_space.shape == (4,)
    assert info["goal_index"] == -1
    # the start varies with the seed, near FetchReach's fixed pose; the goals do not move
    assert np.abs(observation[:3] - reach_env._fetch.initial_gripper_xpos).max() <= fg.START_JITTER
    np.testing.assert_allclose(reach_env.goals, fg.goal_positions(reach_env._fetch.initial_gripper_xpos))
    same, _ = reach_env.reset(seed=0)
    other, _ = reach_env.reset(seed=7)
    np.testing.assert_array_equal(observation, same)
    assert not np.allclose(observation, other)


def test_episode_lasts_fifty_steps_truncated_never_terminated(reach_env):
    reach_env.reset(seed=1)
    for step in range(1, fg.EPISODE_STEPS + 1):
        _, reward, terminated, truncated, _ = reach_env.step(reach_env.action_space.sample())
        assert not terminated
        assert truncated == (step == fg.EPISODE_STEPS)
        assert reward in (0.0, 1.0, 2.0)


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
    margin = fg.CUBE_HALF_SIZE + experts.PUSH_STANDOFF
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
