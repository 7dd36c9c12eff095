"""The built-in one-step task: mode geometry, reward, the random-policy reference, the env (its data:
test_datagen_toy.py)."""

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import toy_multimodal as toy


def test_mode_centres_sit_one_per_quadrant_at_the_mode_radius():
    states = np.linspace(-1.0, 1.0, 9)
    centres = toy.mode_centres(states)
    assert centres.shape == (9, 4, 2)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), toy.MODE_RADIUS)
    quadrant_signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    assert (np.sign(centres) == quadrant_signs).all()
    np.testing.assert_allclose(toy.mode_centres(np.zeros(1))[0, 0], toy.MODE_RADIUS * np.sqrt(0.5) * np.ones(2))


def test_reward_is_one_at_the_quadrant_1_mode_half_at_quadrant_3_and_zero_elsewhere():
    states = np.array([-0.7, 0.0, 0.4])
    centres = toy.mode_centres(states)
    np.testing.assert_array_equal(toy.reward(states, centres[:, 0]), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(toy.reward(states, centres[:, 2]), [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(toy.reward(states, centres[:, 1]), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(toy.reward(states, centres[:, 3]), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(toy.reward(states, np.zeros((3, 2))), [0.0, 0.0, 0.0])  # the modes' average
    just_inside = centres[:, 0] + [toy.REWARD_RADIUS - 1e-6, 0.0]
    just_outside = centres[:, 0] + [toy.REWARD_RADIUS + 1e-6, 0.0]
    np.testing.assert_array_equal(toy.reward(states, just_inside), 1.0)
    np.testing.assert_array_equal(toy.reward(states, just_outside), 0.0)


def test_random_policy_reward_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    n = 400_000
    rewards = toy.reward(rng.uniform(-1, 1, n), rng.uniform(-1, 1, (n, 2)))
    standard_error = rewards.std() / np.sqrt(n)
    assert abs(rewards.mean() - toy.RANDOM_POLICY_REWARD) < 4 * standard_error
    assert toy.RANDOM_POLICY_REWARD == pytest.approx(1.5 * np.pi * 0.25**2 / 4)


def test_env_is_one_step_and_pays_the_reward_of_the_state_it_showed():
    env = gym.make(envs.TOY_ENV_ID)
    observation, _ = env.reset(seed=5)
    centre = toy.mode_centres(observation.astype(np.float64))[0, 0]
    _, reward, terminated, _, _ = env.step(centre.astype(np.float32))
    assert reward == 1.0 and terminated
    assert env.observation_space.shape == (1,) and env.action_space.shape == (2,)
