"""The dataset as tensors on the training device, states normalised once, sampled with torch.randint there."""

import numpy as np
import torch

from utils.dataset import Dataset

STD_FLOOR = 1e-3  # keeps constant features finite; the authors' code adds noise instead (`scaler_noise`)


class StateNormaliser:
    """z-scores states with the dataset's statistics; the identity when normalisation is off."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, device: torch.device):
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device)

    @classmethod
    def fit(cls, observations: np.ndarray, enabled: bool, device: torch.device, noise: float = 0.0,
            seed: int = 0) -> "StateNormaliser":
        """The data's mean and std + STD_FLOOR; with `noise` > 0, the mean and std of the states plus
        noise * N(0, 1) drawn from default_rng(seed), as the authors' code fits its scaler (there 0.05)."""
        if not enabled:
            dim = observations.shape[1]
            return cls(np.zeros(dim), np.ones(dim), device)
        if noise > 0:
            noisy = observations + noise * np.random.default_rng(seed).standard_normal(observations.shape)
            return cls(noisy.mean(0), noisy.std(0), device)
        return cls(observations.mean(0), observations.std(0) + STD_FLOOR, device)

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        return (states - self.mean) / self.std

    def state_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}


class Buffer:
    """Every transition of a Dataset on one device.

    `observations`, `next_observations` are normalised; actions stay in [-1, 1]; rewards are unscaled.
    Rows whose SARSA target is undefined (an episode cut by a timeout or by the end of the data) are
    kept for imitation but never drawn by `sample_td_indices`.

    A dataset with a reward set (two datasets, as MAHALO learns from) gives `reward_set`, a Buffer of those
    rows scaled by this one's normaliser, `reward_range`, and `expert_copy_size`: how many rows at the end of
    this buffer copy the reward set's (MAHALO's il and rl_expert append them); for any other dataset None, None, 0.
    """

    def __init__(self, dataset: Dataset, device: torch.device, normalise: bool, scaler_noise: float = 0.0,
                 seed: int = 0, normaliser: StateNormaliser | None = None):
        self.device = device
        self.size = len(dataset.observations)
        self.obs_dim = dataset.observations.shape[1]
        self.act_dim = dataset.actions.shape[1]
        self.normaliser = normaliser or StateNormaliser.fit(dataset.observations, normalise, device, scaler_noise,
                                                            seed)

        def on_device(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)

        self.observations = self.normaliser(on_device(dataset.observations))
        self.next_observations = self.normaliser(on_device(dataset.next_observations))
        self.actions = on_device(dataset.actions)
        self.next_actions = on_device(dataset.next_actions)
        self.rewards = on_device(dataset.rewards)
        self.terminals = on_device(dataset.terminals)
        self.td_rows = torch.as_tensor(np.flatnonzero(dataset.has_td_target), device=device)
        self.episode_ends = torch.as_tensor(dataset.episode_ends, device=device)
        self.reward_set = None if dataset.reward_set is None else Buffer(dataset.reward_set, device, normalise,
                                                                          normaliser=self.normaliser)
        self.reward_range = dataset.reward_range
        self.expert_copy_size = dataset.parts.get("action_set", {}).get("expert_copy", 0)

    def episode_returns(self) -> torch.Tensor:
        """The undiscounted return of every episode, summed in float64 (episodes end at a terminal, a timeout
        or where the next row starts another episode): (E,). For reward scalings that use return ranges."""
        ends = self.episode_ends.nonzero().flatten()
        totals = torch.cat([self.rewards.new_zeros(1, dtype=torch.float64),
                            self.rewards.cumsum(0, dtype=torch.float64)])[ends + 1]
        return totals.diff(prepend=totals.new_zeros(1))

    def sample_indices(self, batch_size: int) -> torch.Tensor:
        """Uniform rows of the whole dataset (for imitation and the hyper Q)."""
        return torch.randint(self.size, (batch_size,), device=self.device)

    def sample_td_indices(self, batch_size: int) -> torch.Tensor:
        """Uniform rows among those whose SARSA target is defined (for the value function)."""
        return self.sample_among(self.td_rows, batch_size)

    def sample_among(self, rows: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Uniform draws from a given set of rows."""
        return rows[torch.randint(len(rows), (batch_size,), device=self.device)]

    def split_rows(self, fraction: float, max_held_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random (kept, held-out) partition of the rows; the held-out part is `fraction` of them, capped."""
        held_out = min(int(fraction * self.size), max_held_out)
        permutation = torch.randperm(self.size, device=self.device)
        return permutation[held_out:], permutation[:held_out]
