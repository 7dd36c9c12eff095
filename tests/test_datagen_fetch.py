"""The four-goal Fetch data (datagen/fetch.py): the scripted experts, the generated dataset and its file."""

import h5py
import numpy as np
import pytest

import envs
from datagen import fetch as experts
from envs import fetch_fourgoal as fg
from utils.dataset import ScoreReference, transitions_from_arrays

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


def test_scripted_action_saturates_toward_the_goal_until_close_and_leaves_the_fingers_alone():
    rng = np.random.default_rng(0)
    observation = np.concatenate([START, np.zeros(7)])
    for goal, signs in zip(fg.goal_positions(START), fg.QUADRANT_SIGNS):
        action = experts.scripted_reach_action(observation, goal, rng, noise=0.0)
        assert action.shape == (4,) and action[3] == 0.0
        np.testing.assert_array_equal(action[:2], signs)  # full speed: a corner of [-1, 1]^2 (paper's Fig. 4)
        assert action[2] == 0.0  # the goals are at the start height
    near = experts.scripted_reach_action(observation, START + [0.02, -0.01, 0.0], rng, noise=0.0)
    np.testing.assert_allclose(near[:3], experts.EXPERT_GAIN * np.array([0.02, -0.01, 0.0]), rtol=1e-6)
    slow = experts.scripted_reach_action(observation, START + [0.02, -0.01, 0.0], rng, noise=0.0, gain=fg.GAIN)
    np.testing.assert_allclose(slow[:3], fg.GAIN * np.array([0.02, -0.01, 0.0]), rtol=1e-6)


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


def test_start_only_dataset_has_one_expert_trajectory_per_goal_from_each_start_state():
    data = experts.make_dataset(starts=2, seed=3, layout=experts.START_ONLY)
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
    np.testing.assert_array_equal(data["branch_ids"].reshape(2, 4, -1)[:, :, 0], [[0] * 4, [1] * 4])
    assert (data["branch_ids"].reshape(2, 4, -1)[:, :, 1:] == -1).all()
    assert experts.branch_label_share(data["goal_labels"], data["branch_ids"]) == 8 / size


def test_fetch_name_generates_the_data_once_and_scores_against_its_references(tmp_path):
    from datasources import load_dataset

    first = load_dataset("FetchReach-FourGoal-v0", fetch_starts=2, seed=1, data_dir=tmp_path, fetch_data="start_only")
    (path,) = tmp_path.glob("*.hdf5")
    assert path.name == "fetchreach-fourgoal-v0_data2_seed1_starts2.hdf5"  # the earlier data's file name
    written = path.stat().st_mtime_ns
    again = load_dataset("fetchreach-fourgoal-v0", fetch_starts=2, seed=1, data_dir=tmp_path, fetch_data="start_only")
    assert path.stat().st_mtime_ns == written  # read back, not made again
    np.testing.assert_array_equal(first.actions, again.actions)
    assert first.eval_env_id == envs.FETCH_REACH_FOUR_GOAL_ID and first.size == 2 * 4 * fg.EPISODE_STEPS
    assert first.eval_env_kwargs == {"goal_distance": fg.START_ONLY_GOAL_DISTANCE}  # evaluated on its own goals
    assert first.score.normalise(first.score.max_score) == 100.0 and first.score.normalise(first.score.min_score) == 0.0


def test_evaluation_logs_where_episodes_end(tmp_path):
    from datasources import load_dataset
    from utils.evaluation import Evaluator

    dataset = load_dataset("fetchreach-fourgoal-v0", fetch_starts=1, seed=0, data_dir=tmp_path, fetch_data="start_only")
    evaluator = Evaluator(dataset, episodes=3, seed=5)
    goals = fg.goal_positions(np.array([1.34183502, 0.74910104, 0.53472395]), fg.START_ONLY_GOAL_DISTANCE)
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

    first = load_dataset("fetchpush-fourgoal-v0", fetch_starts=2, data_dir=tmp_path, fetch_data="start_only")
    (path,) = tmp_path.glob("*.hdf5")
    assert path.name == f"fetchpush-fourgoal-v0_data{experts.START_ONLY.version}_seed0_starts2.hdf5"
    written = path.stat().st_mtime_ns
    again = load_dataset("FetchPush-FourGoal-v0", fetch_starts=2, data_dir=tmp_path, fetch_data="start_only")
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


# ---- the branching data: the paper's layout ----------------------------------------------------------------


@pytest.fixture(scope="module")
def branching_reach():
    """Branching reach data from one start state."""
    return experts.make_dataset(starts=1, seed=2)


def test_a_snapshot_returns_the_simulator_exactly_to_where_it_was(reach_env):
    rng = np.random.default_rng(0)
    reach_env.reset(seed=4)
    for _ in range(3):
        reach_env.step(rng.uniform(-1, 1, 4))
    snapshot = reach_env.snapshot()
    actions = rng.uniform(-1, 1, (fg.EPISODE_STEPS - 3, 4))
    first = [reach_env.step(action) for action in actions]
    reach_env.restore(snapshot)
    again = [reach_env.step(action) for action in actions]
    for (obs, reward, _, truncated, _), (obs_again, reward_again, _, truncated_again, _) in zip(first, again):
        np.testing.assert_allclose(obs_again, obs, atol=1e-6)
        assert (reward_again, truncated_again) == (reward, truncated)
    assert again[-1][3] and not again[-2][3]  # the step count came back too: truncated at step 50 again


def test_branching_data_gives_every_state_of_the_experts_one_label_per_goal(branching_reach):
    data = branching_reach
    # Per main trajectory: its 50 rows, and at each step t three continuations of min(3, 50 - t) rows.
    continuation_rows = 3 * (48 * 3 + 2 + 1)
    assert len(data["observations"]) == fg.NUM_GOALS * (fg.EPISODE_STEPS + continuation_rows)
    ids = data["branch_ids"]
    np.testing.assert_array_equal(np.unique(ids[ids >= 0]), np.arange(fg.NUM_GOALS * fg.EPISODE_STEPS))
    for branch in (0, 1, 49, 150):
        rows = np.flatnonzero(ids == branch)
        assert len(rows) == fg.NUM_GOALS and sorted(data["goal_labels"][rows]) == [0, 1, 2, 3]
        np.testing.assert_array_equal(data["observations"][rows], data["observations"][rows[:1]].repeat(4, 0))
    assert data["timeouts"].sum() == fg.NUM_GOALS + fg.NUM_GOALS * fg.EPISODE_STEPS * 3  # every piece ends in one
    share = fg.NUM_GOALS * fg.NUM_GOALS * fg.EPISODE_STEPS / len(ids)
    assert experts.branch_label_share(data["goal_labels"], ids) == pytest.approx(share)  # 40.7 %
    assert (data["expert_success"] == 1.0).all()


def test_a_moving_state_gets_a_full_speed_label_toward_each_goal(branching_reach):
    data = branching_reach
    ids, labels = data["branch_ids"], data["goal_labels"]
    moving = ids[2]  # the third state of the first trajectory (to goal 1): under way, 2 steps from the start
    assert np.abs(data["observations"][2, 5:8]).max() > 0.01  # the gripper moves
    for row in np.flatnonzero(ids == moving):
        if labels[row] != 0:  # the other goals are still far: a corner of [-1, 1]^2 toward each
            np.testing.assert_array_equal(data["actions"][row, :2], fg.QUADRANT_SIGNS[labels[row]])


def test_each_branch_label_keeps_its_next_action_for_the_critics(branching_reach):
    keys = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
    dataset = transitions_from_arrays("branching", **{key: branching_reach[key] for key in keys},
                                      eval_env_id=envs.FETCH_REACH_FOUR_GOAL_ID, score=ScoreReference(0, 1, "test"),
                                      source="test")
    branch_rows = np.flatnonzero(branching_reach["branch_ids"] >= 0)
    step = branching_reach["branch_ids"][branch_rows] % fg.EPISODE_STEPS  # each trajectory's ids run 0-49 in order
    assert dataset.has_td_target[branch_rows[step < fg.EPISODE_STEPS - 1]].all()
    assert not dataset.has_td_target[branch_rows[step == fg.EPISODE_STEPS - 1]].any()  # the episode's last step


def test_neighbourhood_share_on_a_hand_made_dataset():
    # Two states, three rows each, and a constant third dimension (dropped); z-scored they sit at -1 and +1.
    observations = np.array([[0.0, 0.0, 7.0]] * 3 + [[4.0, 4.0, 7.0]] * 3, np.float32)
    goal_labels = np.array([0, 1, 2, 0, 0, 1])
    rng = np.random.default_rng(0)
    share = experts.neighbourhood_label_share
    assert share(observations, goal_labels, radius=0.1, queries=6, rng=rng) == 0.5  # only the first state
    assert share(observations, goal_labels, radius=0.1, queries=6, rng=rng, min_goals=2) == 1.0
    assert share(observations, goal_labels, radius=1.99, queries=6, rng=rng) == 0.5  # RMS gap between them: 2
    assert share(observations, goal_labels, radius=2.01, queries=6, rng=rng) == 1.0


def test_exact_share_counts_rows_of_states_with_three_or_more_goals():
    branch_ids = np.array([0, 0, 0, -1, 1, 1, 1, 1, -1, 2, 2])
    goal_labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 1])
    assert experts.branch_label_share(goal_labels, branch_ids) == 7 / 11
    assert experts.branch_label_share(goal_labels, branch_ids, min_goals=4) == 4 / 11


def test_branching_file_keeps_the_labels_and_evaluates_on_its_own_goals(tmp_path):
    from datasources import generated, load_dataset

    dataset = load_dataset("fetchreach-fourgoal-v0", fetch_starts=1, seed=2, data_dir=tmp_path)
    path = generated.fetch_file("fetchreach-fourgoal-v0", 1, 2, tmp_path)
    assert path.name == f"fetchreach-fourgoal-v0_data{experts.BRANCHING.version}_seed2_starts1.hdf5"
    goal_labels, branch_ids = generated.read_fetch_labels(path)
    fresh = experts.make_dataset(starts=1, seed=2)
    np.testing.assert_array_equal(goal_labels, fresh["goal_labels"])
    np.testing.assert_array_equal(branch_ids, fresh["branch_ids"])
    np.testing.assert_array_equal(dataset.actions, fresh["actions"])
    assert dataset.eval_env_kwargs == {"goal_distance": fg.GOAL_DISTANCE}
    with h5py.File(path) as file:
        assert file.attrs["generation_seconds"] > 0
