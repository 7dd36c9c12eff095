"""utils/evaluation.py: returns, lengths and scores of seeded vector-env evaluations, checked by hand."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers ToyMultimodal-v0)
from envs import toy_multimodal
from datasources import load_dataset
from utils.dataset import ScoreReference, transitions_from_arrays
from utils.errors import UserInputError
from utils.evaluation import Evaluator, torch_policy

pytestmark = pytest.mark.filterwarnings("ignore:.*Hopper-v4 is out of date:DeprecationWarning")

HOPPER_SCORE = ScoreReference(-20.272305, 3234.3, "D4RL")


def fake_dataset(obs_dim: int, act_dim: int, env_id: str, score=None):
    rows = 4
    return transitions_from_arrays("fake", np.zeros((rows, obs_dim)), np.zeros((rows, act_dim)), np.zeros(rows),
                                   np.zeros(rows), eval_env_id=env_id, score=score, source="test")


def mode_zero_policy(observations: np.ndarray) -> np.ndarray:
    return toy_multimodal.mode_centres(observations[:, 0])[:, 0]


def test_toy_policy_on_a_rewarded_mode_scores_100():
    dataset = load_dataset("toy-multimodal", toy_size=100)
    evaluator = Evaluator(dataset, episodes=5, seed=3)
    try:
        result = evaluator(mode_zero_policy)
    finally:
        evaluator.close()
    assert result["eval/return"] == 1.0 and result["eval/return_std"] == 0.0
    assert result["eval/episode_length"] == 1.0
    assert result["eval/normalised_score"] == pytest.approx(100.0)
    assert result["eval/normalised_score_std"] == pytest.approx(0.0)


def test_toy_zero_policy_gets_no_reward_and_a_negative_score():
    dataset = load_dataset("toy-multimodal", toy_size=100)
    evaluator = Evaluator(dataset, episodes=5, seed=3)
    try:
        result = evaluator(lambda observations: np.zeros((len(observations), 2)))
    finally:
        evaluator.close()
    random_reward = toy_multimodal.RANDOM_POLICY_REWARD
    assert result["eval/return"] == 0.0 and result["eval/episode_length"] == 1.0
    assert result["eval/normalised_score"] == pytest.approx(100 * (0 - random_reward) / (1 - random_reward))


def test_toy_unrewarded_mode_gets_zero_return():
    """Mode 1 (quadrant 2) is a behaviour mode but earns nothing."""
    dataset = load_dataset("toy-multimodal", toy_size=100)
    evaluator = Evaluator(dataset, episodes=4, seed=0)
    try:
        result = evaluator(lambda observations: toy_multimodal.mode_centres(observations[:, 0])[:, 1])
    finally:
        evaluator.close()
    assert result["eval/return"] == 0.0


def hand_hopper_episode(seed: int) -> tuple[float, int]:
    env = gym.make("Hopper-v4")
    env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, _ = env.step(np.zeros(3))
        total, steps = total + reward, steps + 1
        if terminated or truncated:
            env.close()
            return total, steps


def test_multistep_returns_equal_separate_seeded_episodes_without_auto_reset_steps():
    seed, episodes = 7, 3
    dataset = fake_dataset(11, 3, "Hopper-v4", HOPPER_SCORE)
    evaluator = Evaluator(dataset, episodes=episodes, seed=seed)
    try:
        result = evaluator(lambda observations: np.zeros((len(observations), 3)))
        again = evaluator(lambda observations: np.zeros((len(observations), 3)))
    finally:
        evaluator.close()
    by_hand = [hand_hopper_episode(seed + i) for i in range(episodes)]
    returns = np.array([r for r, _ in by_hand])
    lengths = np.array([n for _, n in by_hand])
    assert len(set(lengths.tolist())) == episodes  # episodes end at different steps: auto-resets happen
    assert result["eval/return"] == pytest.approx(returns.mean(), rel=1e-9)
    assert result["eval/return_std"] == pytest.approx(returns.std(), rel=1e-9)
    assert result["eval/episode_length"] == pytest.approx(lengths.mean())
    scores = 100 * (returns - HOPPER_SCORE.min_score) / (HOPPER_SCORE.max_score - HOPPER_SCORE.min_score)
    assert result["eval/normalised_score"] == pytest.approx(scores.mean(), rel=1e-9)
    assert result["eval/normalised_score_std"] == pytest.approx(scores.std(), rel=1e-9)
    assert again == result  # every evaluation starts from the same seeded states


def test_no_score_reference_reports_raw_returns_only():
    dataset = fake_dataset(11, 3, "Hopper-v4", score=None)
    evaluator = Evaluator(dataset, episodes=1, seed=0)
    try:
        result = evaluator(lambda observations: np.zeros((len(observations), 3)))
    finally:
        evaluator.close()
    assert set(result) == {"eval/return", "eval/return_std", "eval/episode_length"}
    assert result["eval/return"] == pytest.approx(hand_hopper_episode(0)[0], rel=1e-9)


def test_observation_dim_mismatch_raises_user_input_error():
    with pytest.raises(UserInputError, match=r"Hopper-v4.*\(11,\).*\(5,\)"):
        Evaluator(fake_dataset(5, 3, "Hopper-v4"), episodes=1, seed=0)


def test_action_dim_mismatch_raises_user_input_error():
    with pytest.raises(UserInputError, match="--eval_env"):
        Evaluator(fake_dataset(11, 2, "Hopper-v4"), episodes=1, seed=0)


def test_unknown_env_id_raises_user_input_error():
    with pytest.raises(UserInputError, match="NoSuchEnv-v0"):
        Evaluator(fake_dataset(11, 3, "NoSuchEnv-v0"), episodes=1, seed=0)


def test_torch_policy_normalises_then_acts_and_returns_numpy():
    policy = torch_policy(lambda states: 2 * states, lambda states: states - 1, torch.device("cpu"))
    actions = policy(np.array([[1.0, 3.0], [0.5, -1.0]]))
    assert isinstance(actions, np.ndarray) and actions.dtype == np.float32
    np.testing.assert_array_equal(actions, [[0.0, 4.0], [-1.0, -4.0]])
