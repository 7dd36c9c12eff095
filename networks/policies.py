"""Unimodal policies: deterministic (the released code's LOM policy) and Gaussian (paper Eq. 18, BC)."""

import torch
from torch import nn

from networks.mdn import LOG_SQRT_2PI
from networks.mlp import mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class DeterministicPolicy(nn.Module):
    """pi(s) = tanh(MLP(s))."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(states))

    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self(states)


class GaussianPolicy(nn.Module):
    """N(tanh(mu(s)), sigma(s)); acts with its mean."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, hidden, 2 * act_dim)

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, A) in [-1, 1] and standard deviation (B, A)."""
        mean, log_std = self.net(states).split(self.act_dim, dim=-1)
        return torch.tanh(mean), log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | s), summed over action dimensions: (B,)."""
        mean, std = self(states)
        return (-0.5 * ((actions - mean) / std).square() - std.log() - LOG_SQRT_2PI).sum(-1)

    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self(states)[0]

    def sample(self, states: torch.Tensor) -> torch.Tensor:
        """a = mean + std * noise, clipped to the action range [-1, 1]; differentiable in the policy's
        parameters (reparameterised), so callers that need no gradient wrap it in torch.no_grad()."""
        mean, std = self(states)
        return (mean + std * torch.randn_like(mean)).clamp(-1.0, 1.0)
