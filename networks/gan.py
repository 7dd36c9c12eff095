"""A conditional GAN of actions given states: a generator G(s, z) with batch normalisation and a discriminator
D(s, a) that outputs a probability, with GOPlan's sizes (Wang et al., TMLR 2024)."""

import torch
from torch import nn

DISCRIMINATOR_CLIP = 1e-4  # D stays in [1e-4, 1 - 1e-4], so log D and log(1 - D) stay finite


class Generator(nn.Module):
    """a = tanh(MLP([s, z])) with BatchNorm after each hidden layer: (B, obs), (B, noise) -> (B, act). In train
    mode the normalisation uses the batch's statistics, in eval mode their running averages."""

    def __init__(self, obs_dim: int, act_dim: int, noise_dim: int, hidden: int):
        super().__init__()
        self.noise_dim = noise_dim
        self.net = nn.Sequential(nn.Linear(obs_dim + noise_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, act_dim))

    def forward(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(torch.cat([states, noise], dim=-1)))


class Discriminator(nn.Module):
    """D(s, a) = sigmoid(MLP([s, a])) with LeakyReLU hidden layers, clipped away from 0 and 1: (B,)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim + act_dim, hidden), nn.LeakyReLU(),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1))

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        probability = torch.sigmoid(self.net(torch.cat([states, actions], dim=-1)).squeeze(-1))
        return probability.clamp(DISCRIMINATOR_CLIP, 1.0 - DISCRIMINATOR_CLIP)
