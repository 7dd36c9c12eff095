"""The behaviour policy's state value, learned by TD on the dataset's own transitions, and the one-step advantage
it gives each dataset pair: the weights of the weighted generative baselines (WCVAE, WCGAN) come from it."""

import torch
from torch.nn import functional as F

from networks.losses import td_target
from utils.buffer import Buffer


class BehaviourValueTD:
    """For an Agent with `value` and `value_target` (StateValue) and `discount`. The data's own next states
    make this V^{pi_b}, the value of the policy that collected the data, as GOPlan's value function is."""

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
