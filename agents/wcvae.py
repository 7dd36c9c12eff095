"""WCVAE: the weighted conditional VAE, a multi-modal baseline of the LOM paper (Wang, Jin & Montana 2024, arXiv
2412.03258, Appendix C.1, Eq. 40), from GOPlan (Wang et al., TMLR 2024).

1. V^{pi_b}(s), the value of the policy that collected the data, is learned by TD on the data's transitions;
   A(s, a) = r + gamma * V(s') - V(s) is each dataset pair's advantage under it.
2. A conditional VAE of actions given states maximises the advantage-weighted evidence lower bound
   E[w(s, a) log D(a | z, s) - w(s, a) KL(E(z | s, a) || N(0, I))], w = min(exp(A / beta), C) (Eq. 40): the
   decoder keeps the data's modes, the well-rewarded ones most.
3. It acts with the decoder at the prior's mode, a = D(s, z = 0).
The paper leaves the networks, the advantage estimator and how to act open; docs/algorithms/wcvae.md says what
was chosen and why.
"""

from dataclasses import dataclass

import torch

from agents.base import Agent, adam, optimise
from agents.behaviour_value import BehaviourValueTD, BehaviourWeightSettings
from networks.cvae import ConditionalVAE, weighted_cvae_loss
from utils.buffer import Buffer
from utils.settings import setting

NUM_HIDDEN_LAYERS = 3  # the CVAE's encoder and decoder, as LAPO's


@dataclass
class WCVAESettings(BehaviourWeightSettings):
    kl_weight: float = setting(1.0, "weight of the KL term against the squared error (Eq. 40: 1)", at_least=0)
    latent_dim: int = setting(0, "dimension of the latent z; 0: twice the action dimension", at_least=0,
                              at_most=1024)
    vae_lr: float = setting(1e-3, "learning rate of the encoder and decoder", above=0)
    hidden: int = setting(256, "width of the three hidden layers of the encoder and the decoder", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam


class WCVAE(BehaviourValueTD, Agent):
    Settings = WCVAESettings

    def __init__(self, obs_dim: int, act_dim: int, settings: WCVAESettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s = settings
        self.init_behaviour_value(obs_dim)
        self.cvae = ConditionalVAE(obs_dim, act_dim, s.latent_dim or 2 * act_dim, (s.hidden,) * NUM_HIDDEN_LAYERS,
                                   tanh_output=True)
        self.cvae_optimiser = adam(self.cvae.parameters(), s.vae_lr)

    def cvae_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """-Eq. 40 as a loss: mean_B w * (||D(s, z) - a||^2 + kl_weight * KL(E(z | s, a) || N(0, I))), w fixed."""
        advantage = self.behaviour_advantage(buffer, rows)
        weight = self.advantage_weight(advantage)
        loss, metrics = weighted_cvae_loss(self.cvae, buffer.observations[rows], buffer.actions[rows], weight,
                                           self.settings.kl_weight)
        return loss, {**metrics, "advantage": advantage.mean(), "weight": weight.mean()}

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        rows = buffer.sample_td_indices(self.settings.batch_size)
        value_loss = self.value_step(buffer, rows, step_index)
        cvae_loss, metrics = self.cvae_loss(buffer, rows)  # weights from the V just updated
        optimise(self.cvae_optimiser, cvae_loss)
        return {"value_loss": value_loss, "cvae_loss": cvae_loss.detach(), **metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        """D(s, z = 0): the decoder at the mode of the prior."""
        return self.cvae.decoder(states, states.new_zeros(states.shape[0], self.cvae.latent_dim))
