"""Evaluation: `episodes` episodes side by side in a gymnasium vector env, one batched policy call per step."""

from typing import Callable

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the tasks we ship, so their ids resolve)
from utils.dataset import Dataset
from utils.errors import UserInputError

Policy = Callable[[np.ndarray], np.ndarray]


def make_eval_envs(dataset: Dataset, episodes: int) -> gym.vector.VectorEnv:
    """One sub-env per episode; fails early, with the fix, if the env cannot host the dataset's policy."""
    name = getattr(dataset.eval_env_id, "id", dataset.eval_env_id)
    try:
        vector_env = gym.make_vec(dataset.eval_env_id, num_envs=episodes, vectorization_mode="sync",
                                  **dataset.eval_env_kwargs)
    except Exception as error:  # gymnasium raises many types here: unknown id, missing module, bad kwargs
        raise UserInputError(f"cannot create the evaluation env {name!r}: {error}") from None
    obs_shape = vector_env.single_observation_space.shape
    act_shape = vector_env.single_action_space.shape
    if obs_shape != dataset.observations.shape[1:] or act_shape != dataset.actions.shape[1:]:
        vector_env.close()
        raise UserInputError(
            f"the evaluation env {name!r} has observations {obs_shape} and actions {act_shape}, but the dataset "
            f"has {dataset.observations.shape[1:]} and {dataset.actions.shape[1:]}; pick a matching --eval_env")
    return vector_env


class Evaluator:
    """Runs a deterministic policy for a fixed set of seeded episodes and scores it."""

    def __init__(self, dataset: Dataset, episodes: int, seed: int):
        self.envs = make_eval_envs(dataset, episodes)
        self.episodes, self.seed, self.score = episodes, seed, dataset.score
        self.num_goals = count_goals(self.envs)

    def __call__(self, policy: Policy) -> dict[str, float]:
        # The same seed at every evaluation: scores over training differ by the policy, not the start states.
        observations, _ = self.envs.reset(seed=self.seed)
        returns = np.zeros(self.episodes)
        lengths = np.zeros(self.episodes, dtype=np.int64)
        running = np.ones(self.episodes, dtype=bool)
        final_goals = np.full(self.episodes, -1)
        while running.any():
            observations, rewards, terminated, truncated, infos = self.envs.step(policy(observations))
            # A finished sub-env auto-resets on its next step; those steps belong to no counted episode.
            returns += np.where(running, rewards, 0.0)
            lengths += running
            ending = running & (terminated | truncated)
            if self.num_goals:
                final_goals[ending] = infos["goal_index"][ending]
            running &= ~ending
        result = {"eval/return": float(returns.mean()), "eval/return_std": float(returns.std()),
                  "eval/episode_length": float(lengths.mean())}
        for goal in range(self.num_goals):  # multi-goal tasks: where the episodes ended
            result[f"eval/goal_{goal + 1}_share"] = float(np.mean(final_goals == goal))
        if self.score is not None:
            scores = self.score.normalise(returns)
            result["eval/normalised_score"] = float(np.mean(scores))
            result["eval/normalised_score_std"] = float(np.std(scores))
        return result

    def close(self) -> None:
        self.envs.close()


def count_goals(vector_env: gym.vector.VectorEnv) -> int:
    """How many goals a multi-goal task has (its `goals` attribute), 0 for any other env."""
    try:
        return len(vector_env.get_attr("goals")[0])
    except AttributeError:
        return 0


def torch_policy(act: Callable[[torch.Tensor], torch.Tensor], normalise: Callable, device: torch.device) -> Policy:
    """Wraps an agent's act on normalised tensors as numpy-in, numpy-out for the environment."""

    @torch.no_grad()
    def policy(observations: np.ndarray) -> np.ndarray:
        states = normalise(torch.as_tensor(observations, dtype=torch.float32, device=device))
        return act(states).cpu().numpy()

    return policy
