"""WCGAN: the weighted conditional GAN, a multi-modal baseline of the LOM paper (Wang, Jin & Montana 2024, arXiv
2412.03258, Appendix C.1, Eq. 39), from GOPlan (Wang et al., TMLR 2024).

1. V^{pi_b}(s), the value of the policy that collected the data, is learned by TD on the data's transitions;
   A(s, a) = r + gamma * V(s') - V(s) is each dataset pair's advantage under it (shared with WCVAE).
2. A discriminator D(s, a) tells dataset actions, each weighted by w = min(exp(A / beta), C), from the
   generator's actions G(s, z), z ~ N(0, I); the generator learns to fool it (Eq. 39), so its actions follow
   the weighted data distribution, every well-rewarded mode included.
3. It acts with the generator at the noise's mode, a = G(s, z = 0).
The paper leaves the networks, the advantage estimator and how to act open; docs/algorithms/wcgan.md says what
was chosen and why.
"""

import contextlib
from dataclasses import dataclass

import torch

from agents.base import Agent, adam, optimise
from agents.behaviour_value import BehaviourValueTD, BehaviourWeightSettings
from networks.critics import frozen
from networks.gan import Discriminator, Generator
from utils.buffer import Buffer
from utils.settings import setting


@dataclass
class WCGANSettings(BehaviourWeightSettings):
    noise_dim: int = setting(64, "dimension of the generator's noise z (GOPlan's)", at_least=1, at_most=4096)
    generator_lr: float = setting(1e-4, "learning rate of the generator (GOPlan's)", above=0)
    discriminator_lr: float = setting(1e-4, "learning rate of the discriminator (GOPlan's)", above=0)
    hidden: int = setting(512, "width of the two hidden layers of the generator and the discriminator (GOPlan's)",
                          at_least=1, at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights


@contextlib.contextmanager
def evaluation_mode(module: torch.nn.Module):
    """`module` in eval mode inside the block (BatchNorm then uses its running statistics), as it was after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class WCGAN(BehaviourValueTD, Agent):
    Settings = WCGANSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: WCGANSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s = settings
        self.init_behaviour_value(obs_dim)
        self.generator = Generator(obs_dim, act_dim, s.noise_dim, s.hidden)
        self.discriminator = Discriminator(obs_dim, act_dim, s.hidden)
        self.generator_optimiser = adam(self.generator.parameters(), s.generator_lr)
        self.discriminator_optimiser = adam(self.discriminator.parameters(), s.discriminator_lr)

    def generated_actions(self, states: torch.Tensor) -> torch.Tensor:
        """G(s, z), z ~ N(0, I): (B, A)."""
        return self.generator(states, states.new_empty(states.shape[0], self.settings.noise_dim).normal_())

    def discriminator_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """-mean_B w log D(s, a) - mean_B(w) * mean_B log(1 - D(s, G(s, z))): Eq. 39's inner maximisation as a
        loss, the generated term scaled by the batch's mean weight (as GOPlan), so that the generator's optimum is
        the weighted data distribution w p(a | s) / E[w] rather than a mixture depending on the weights' scale."""
        states, actions = buffer.observations[rows], buffer.actions[rows]
        advantage = self.behaviour_advantage(buffer, rows)
        weight = self.advantage_weight(advantage)
        with torch.no_grad():
            fake = self.generated_actions(states)
        real_term = (weight * self.discriminator(states, actions).log()).mean()
        fake_term = weight.mean() * (1.0 - self.discriminator(states, fake)).log().mean()
        return -(real_term + fake_term), {"advantage": advantage.mean(), "weight": weight.mean()}

    def generator_loss(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """mean_B log(1 - D(s, G(s, z))): Eq. 39's outer minimisation, through the frozen discriminator."""
        states = buffer.observations[rows]
        with frozen(self.discriminator):
            return (1.0 - self.discriminator(states, self.generated_actions(states))).log().mean()

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        rows = buffer.sample_td_indices(self.settings.batch_size)
        value_loss = self.value_step(buffer, rows, step_index)
        discriminator_loss, metrics = self.discriminator_loss(buffer, rows)  # weights from the V just updated
        optimise(self.discriminator_optimiser, discriminator_loss)
        generator_loss = self.generator_loss(buffer, rows)
        optimise(self.generator_optimiser, generator_loss)
        return {"value_loss": value_loss, "discriminator_loss": discriminator_loss.detach(),
                "generator_loss": generator_loss.detach(), **metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        """G(s, z = 0) with BatchNorm's running statistics: the generator at the mode of its noise."""
        with evaluation_mode(self.generator):
            return self.generator(states, states.new_zeros(states.shape[0], self.settings.noise_dim))
