"""Behaviour cloning: a unimodal Gaussian policy fitted to every dataset action by maximum likelihood.

The reference point for multi-modal data: one Gaussian averages the modes.
"""

from dataclasses import dataclass

import torch

from agents.base import Agent, AgentSettings, adam, optimise
from networks.policies import GaussianPolicy
from utils.buffer import Buffer
from utils.settings import setting


@dataclass
class BCSettings(AgentSettings):
    batch_size: int = setting(256, "batch size", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    policy_lr: float = setting(1e-3, "learning rate of the policy", above=0)
    hidden: int = setting(256, "width of the policy's two hidden layers", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam


class BC(Agent):
    Settings = BCSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: BCSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        self.policy = GaussianPolicy(obs_dim, act_dim, (settings.hidden, settings.hidden))
        self.policy_optimiser = adam(self.policy.parameters(), settings.policy_lr)

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        rows = buffer.sample_indices(self.settings.batch_size)
        loss = -self.policy.log_prob(buffer.observations[rows], buffer.actions[rows]).mean()
        optimise(self.policy_optimiser, loss)
        return {"policy_loss": loss.detach()}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.policy.act(states)
