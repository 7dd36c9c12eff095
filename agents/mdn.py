"""MDN behaviour cloning: a mixture density network fitted to every dataset action by maximum likelihood.

The multi-modal counterpart of BC, and the behaviour model of LOM (Wang, Jin & Montana, arXiv 2412.03258,
Eq. 15) used as a policy on its own: it acts with the mean of its most likely component, so it picks the
most frequent mode instead of averaging the modes, but it never asks which mode earns more.
"""

from dataclasses import dataclass

import torch

from agents.base import Agent, AgentSettings, adam, optimise
from networks.mdn import MDN_INITS, MixtureDensityNetwork
from utils.buffer import Buffer
from utils.settings import setting


@dataclass
class MDNSettings(AgentSettings):
    num_mixtures: int = setting(5, "M, the number of Gaussian components of the MDN", at_least=1,
                                at_most=100)  # 10x the LOM paper's M, as LOM's bound
    batch_size: int = setting(256, "batch size", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    policy_lr: float = setting(1e-3, "learning rate of the MDN", above=0)
    mdn_hidden: int = setting(512, "width of the MDN's two hidden layers", at_least=1,
                              at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam
    mdn_init: str = setting("plain", "plain: the usual initialisation; spread: each component's mean starts "
                            "at its own action (networks/mdn.py), against mode collapse", choices=MDN_INITS)


class MDN(Agent):
    Settings = MDNSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: MDNSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s = settings
        self.mdn = MixtureDensityNetwork(obs_dim, act_dim, s.num_mixtures, (s.mdn_hidden, s.mdn_hidden), s.mdn_init)
        self.mdn_optimiser = adam(self.mdn.parameters(), s.policy_lr)

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        rows = buffer.sample_indices(self.settings.batch_size)
        loss = self.mdn.nll(buffer.observations[rows], buffer.actions[rows])
        optimise(self.mdn_optimiser, loss)
        return {"policy_loss": loss.detach()}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        # A sample or the mixture's mean could land between modes; the likeliest component's mean cannot.
        return self.mdn(states).most_likely_mean()
