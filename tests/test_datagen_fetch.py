"""The four-goal Fetch data (datagen/fetch.py): the scripted experts, the generated dataset and its file."""

import numpy as np
import pytest

import envs
from datagen import fetch as experts
from envs import fetch_fourgoal as fg

START = np.array([1.34, 0.75, 0.53])
TASK_NAMES = {task: name for name, task in fg.TASKS.items()}


def run_expert(env, goal_index, seed, noise=experts.EXPERT_NOISE):
    """One scripted episode; returns rewards, the info of every step, terminated and truncated flags."""
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    rewards, infos, terminated, truncated = [], [], [], []
    while not truncated or not truncated[-1]:
        action = experts.EXPERTS[TASK_NAMES[env.task]](observation, env.goals[goal_index], rng, noise)
        observation, reward, term, trunc, info = env.step(action)
        for record, value in zip((rewards, infos, terminated, truncated), (reward, info, term, trunc)):
            record.append(value)
    return np.array(rewards), infos, np.array(terminated), np.array(truncated)


def test_scripted_action_points_at_the_goal_is_clipped_and_leaves_the_fingers_alone():
    rng = np.random.default_rng(0)
    observation = np.concatenate([START, np.zeros(7)])
    goals = fg.goal_positions(START)
    for goal in goals:
        action = experts.scripted_reach_action(observation, goal, rng, noise=0.0)
        assert action.shape == (4,) and action[3] == 0.0
        np.testing.assert_allclose(action[:3], fg.GAIN * (goal - START), rtol=1e-6)
        assert np.all(np.abs(action[:3]) < 1.0)  # unsaturated at the start: its direction names the goal
    far = experts.scripted_reach_action(observation, START + 1.0, rng, noise=0.5)
    np.testing.assert_array_equal(far[:3], 1.0)


@pytest.mark.parametrize("goal_index", range(4))
def test_scripted_expert_reaches_each_goal_and_earns_its_reward(reach_env, goal_index):
    expected = 2.0 if goal_index == 0 else 1.0
    for seed in range(3):
        rewards, infos, terminated, truncated = run_expert(reach_env, goal_index, seed)
        assert len(rewards) == fg.EPISODE_STEPS and not terminated.any() and truncated[-1]
        assert infos[-1]["goal_index"] == goal_index
        assert rewards[-1] == expected
        assert set(np.unique(rewards)) <= {0.0, expected}  # it never passes through another goal
        assert rewards.sum() > 0.8 * expected * fg.EPISODE_STEPS


def test_expert_success_counts_final_arrivals(reach_env):
    assert experts.expert_success(2, episodes=2, seed=0) == 1.0
    assert experts.expert_success(0, episodes=2, seed=0, noise=50.0) == 0.0  # a random walk ends elsewhere


def test_dataset_has_one_expert_trajectory_per_goal_from_each_start_state():
    data = experts.make_dataset(starts=2, seed=3)
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
    from datasources import load_dataset

    first = load_dataset("FetchReach-FourGoal-v0", fetch_starts=2, seed=1, data_dir=tmp_path)
    (path,) = tmp_path.glob("*.hdf5")
    written = path.stat().st_mtime_ns
    again = load_dataset("fetchreach-fourgoal-v0", fetch_starts=2, seed=1, data_dir=tmp_path)
    assert path.stat().st_mtime_ns == written  # read back, not made again
    np.testing.assert_array_equal(first.actions, again.actions)
    assert first.eval_env_id == envs.FETCH_REACH_FOUR_GOAL_ID and first.size == 2 * 4 * fg.EPISODE_STEPS
    assert first.score.normalise(first.score.max_score) == 100.0 and first.score.normalise(first.score.min_score) == 0.0


def test_evaluation_logs_where_episodes_end(tmp_path):
    from datasources import load_dataset
    from utils.evaluation import Evaluator

    dataset = load_dataset("fetchreach-fourgoal-v0", fetch_starts=1, seed=0, data_dir=tmp_path)
    evaluator = Evaluator(dataset, episodes=3, seed=5)
    goals = fg.goal_positions(np.array([1.34183502, 0.74910104, 0.53472395]))
    rng = np.random.default_rng(0)
    try:
        result = evaluator(lambda obs: np.stack([experts.scripted_reach_action(o, goals[2], rng) for o in obs]))
    finally:
        evaluator.close()
    assert [result[f"eval/goal_{k}_share"] for k in (1, 2, 3, 4)] == [0.0, 0.0, 1.0, 0.0]
    assert result["eval/episode_length"] == fg.EPISODE_STEPS


@pytest.mark.parametrize("task", ["push", "pick"])
@pytest.mark.parametrize("goal_index", range(4))
def test_scripted_expert_brings_the_cube_to_each_goal(task, goal_index):
    assert experts.expert_success(goal_index, episodes=3, seed=0, task=task) == 1.0


def test_pick_expert_carries_the_cube_lifted_and_ends_holding_it_on_the_table():
    env = fg.FetchFourGoalEnv("pick")
    rewards, infos, _, _ = run_expert(env, goal_index=0, seed=1)
    env.close()
    heights = np.array([info["tracked_pos"][2] for info in infos]) - env.goals[0, 2]
    assert heights.max() > experts.CARRY_HEIGHT / 2  # lifted, not dragged
    assert abs(heights[-1]) < 0.01 and infos[-1]["goal_index"] == 0
    assert set(np.unique(rewards)) <= {0.0, 2.0} and rewards[-10:].sum() == 20.0


def test_push_expert_never_lifts_the_cube():
    env = fg.FetchFourGoalEnv("push")
    _, infos, _, _ = run_expert(env, goal_index=2, seed=1)
    env.close()
    heights = np.array([info["tracked_pos"][2] for info in infos]) - env.goals[2, 2]
    assert np.abs(heights).max() < 0.02 and infos[-1]["goal_index"] == 2


def test_push_data_file_round_trip(tmp_path):
    from datasources import load_dataset

    first = load_dataset("fetchpush-fourgoal-v0", fetch_starts=2, data_dir=tmp_path)
    (path,) = tmp_path.glob("*.hdf5")
    assert path.name == f"fetchpush-fourgoal-v0_data{experts.DATA_VERSION}_seed0_starts2.hdf5"
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
    from datasources import load_dataset
    from utils.errors import UserInputError

    with pytest.raises(UserInputError, match="did you mean fetchpick-fourgoal-v0") as caught:
        load_dataset("fetchpick-fourgoal-v1")
    assert all(f"fetch{task}-fourgoal-v0" in str(caught.value) for task in ("reach", "push", "pick"))
