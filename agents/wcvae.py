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

from agents.base import Agent, AgentSettings, adam, optimise
from agents.behaviour_value import BehaviourValueTD
from networks.critics import StateValue, soft_update, target_copy
from networks.cvae import ConditionalVAE, weighted_cvae_loss
from networks.losses import exp_clip_weight
from utils.buffer import Buffer
from utils.settings import setting

NUM_HIDDEN_LAYERS = 3  # the CVAE's encoder and decoder, as LAPO's


@dataclass
class WCVAESettings(AgentSettings):
    beta: float = setting(0.2, "advantage temperature: weight min(exp(A / beta), C) (Eq. 40); 0.2 weighs the data "
                          "as LOM's default exp(5 A) does", above=0)
    C: float = setting(50.0, "upper clip of the advantage weight (LOM's default)", above=0)
    kl_weight: float = setting(1.0, "weight of the KL term against the squared error (Eq. 40: 1)", at_least=0)
    latent_dim: int = setting(0, "dimension of the latent z; 0: twice the action dimension", at_least=0,
                              at_most=1024)
    vae_lr: float = setting(1e-3, "learning rate of the encoder and decoder", above=0)
    value_lr: float = setting(1e-3, "learning rate of V (GOPlan's)", above=0)
    batch_size: int = setting(512, "batch size (GOPlan's)", at_least=1, at_most=1_000_000)
    tau: float = setting(0.005, "Polyak coefficient of V's target", above=0, at_most=1)
    value_target_every: int = setting(2, "steps between updates of V's target (GOPlan's)", at_least=1)
    hidden: int = setting(256, "width of the three hidden layers of the encoder and the decoder", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam
    value_hidden: int = setting(512, "width of the two hidden layers of V (GOPlan's)", at_least=1, at_most=8192)


class WCVAE(BehaviourValueTD, Agent):
    Settings = WCVAESettings

    def __init__(self, obs_dim: int, act_dim: int, settings: WCVAESettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s = settings
        self.value = StateValue(obs_dim, (s.value_hidden, s.value_hidden))
        self.value_target = target_copy(self.value)
        self.cvae = ConditionalVAE(obs_dim, act_dim, s.latent_dim or 2 * act_dim, (s.hidden,) * NUM_HIDDEN_LAYERS,
                                   tanh_output=True)
        self.value_optimiser = adam(self.value.parameters(), s.value_lr)
        self.cvae_optimiser = adam(self.cvae.parameters(), s.vae_lr)

    def advantage_weight(self, advantage: torch.Tensor) -> torch.Tensor:
        """w(s, a) = min(exp(A / beta), C) (Eq. 40's exp_clip)."""
        return exp_clip_weight(advantage / self.settings.beta, self.settings.C)

    def cvae_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """-Eq. 40 as a loss: mean_B w * (||D(s, z) - a||^2 + kl_weight * KL(E(z | s, a) || N(0, I))), w fixed."""
        advantage = self.behaviour_advantage(buffer, rows)
        weight = self.advantage_weight(advantage)
        loss, metrics = weighted_cvae_loss(self.cvae, buffer.observations[rows], buffer.actions[rows], weight,
                                           self.settings.kl_weight)
        return loss, {**metrics, "advantage": advantage.mean(), "weight": weight.mean()}

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        s = self.settings
        rows = buffer.sample_td_indices(s.batch_size)
        value_loss = self.value_loss(buffer, rows)
        optimise(self.value_optimiser, value_loss)
        if step_index % s.value_target_every == 0:
            soft_update(self.value_target, self.value, s.tau)
        cvae_loss, metrics = self.cvae_loss(buffer, rows)  # weights from the V just updated
        optimise(self.cvae_optimiser, cvae_loss)
        return {"value_loss": value_loss.detach(), "cvae_loss": cvae_loss.detach(), **metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        """D(s, z = 0): the decoder at the mode of the prior."""
        return self.cvae.decoder(states, states.new_zeros(states.shape[0], self.cvae.latent_dim))
