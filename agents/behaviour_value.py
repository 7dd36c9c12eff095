"""The behaviour policy's state value, learned by TD on the dataset's own transitions, the one-step advantage it
gives each dataset pair, and the clipped exponential weight of that advantage: the weighted generative baselines
(WCVAE, WCGAN) share all three, with the same settings."""

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from agents.base import AgentSettings, adam, optimise
from networks.critics import StateValue, soft_update, target_copy
from networks.losses import exp_clip_weight, td_target
from utils.buffer import Buffer
from utils.settings import setting


@dataclass
class BehaviourWeightSettings(AgentSettings):
    beta: float = setting(0.2, "advantage temperature: weight min(exp(A / beta), C) (Eq. 39, 40); 0.2 weighs the "
                          "data as LOM's default exp(5 A) does", above=0)
    C: float = setting(50.0, "upper clip of the advantage weight (LOM's default)", above=0)
    value_lr: float = setting(1e-3, "learning rate of V (GOPlan's)", above=0)
    value_hidden: int = setting(512, "width of the two hidden layers of V (GOPlan's)", at_least=1, at_most=8192)
    tau: float = setting(0.005, "Polyak coefficient of V's target", above=0, at_most=1)
    value_target_every: int = setting(2, "steps between updates of V's target (GOPlan's)", at_least=1)
    batch_size: int = setting(512, "batch size (GOPlan's)", at_least=1, at_most=1_000_000)


class BehaviourValueTD:
    """For an Agent with BehaviourWeightSettings that calls `init_behaviour_value` in its constructor. The data's
    own next states make V the value V^{pi_b} of the policy that collected the data, as GOPlan's value
    function is."""

    def init_behaviour_value(self, obs_dim: int) -> None:
        s = self.settings
        self.value = StateValue(obs_dim, (s.value_hidden, s.value_hidden))
        self.value_target = target_copy(self.value)
        self.value_optimiser = adam(self.value.parameters(), s.value_lr)

    def value_step(self, buffer: Buffer, rows: torch.Tensor, step_index: int) -> torch.Tensor:
        """One step of V on value_loss; every `value_target_every` steps, V's target follows by Polyak."""
        loss = self.value_loss(buffer, rows)
        optimise(self.value_optimiser, loss)
        if step_index % self.settings.value_target_every == 0:
            soft_update(self.value_target, self.value, self.settings.tau)
        return loss.detach()

    def value_loss(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """mean_B (V(s) - y)^2, y = r + gamma * (1 - d) * V'(s') from the target network."""
        with torch.no_grad():
            target = td_target(buffer.rewards[rows], buffer.terminals[rows],
                               self.value_target(buffer.next_observations[rows]), self.discount)
        return F.mse_loss(self.value(buffer.observations[rows]), target)

    @torch.no_grad()
    def behaviour_advantage(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """A(s, a) = r + gamma * (1 - d) * V(s') - V(s), with the online V: (B,)."""
        next_value = td_target(buffer.rewards[rows], buffer.terminals[rows],
                               self.value(buffer.next_observations[rows]), self.discount)
        return next_value - self.value(buffer.observations[rows])

    def advantage_weight(self, advantage: torch.Tensor) -> torch.Tensor:
        """w(s, a) = min(exp(A / beta), C), the exp_clip of Eq. 39 and 40."""
        return exp_clip_weight(advantage / self.settings.beta, self.settings.C)
