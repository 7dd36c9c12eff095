"""The critic step shared by agents whose twin critics learn Q of their own policy by TD3's clipped double
Q-learning (TD3+BC, DMPO, mixAWAC): each agent says only which next action the target bootstraps from."""

import torch

from networks.critics import ensemble_mse
from networks.losses import td_target
from utils.buffer import Buffer


class TwinCriticTD:
    """For an Agent with `critic` and `critic_target` (CriticEnsemble) and `discount`; it defines
    `next_action(next_states)`, the action a' of the target below."""

    def next_action(self, next_states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def critic_target_value(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """y = r + gamma * (1 - d) * min(Q1', Q2')(s', a'), (B,)."""
        next_states = buffer.next_observations[rows]
        next_q = self.critic_target(next_states, self.next_action(next_states)).min(dim=0).values
        return td_target(buffer.rewards[rows], buffer.terminals[rows], next_q, self.discount)

    def critic_loss(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """MSE(Q1(s, a), y) + MSE(Q2(s, a), y) on dataset pairs."""
        return ensemble_mse(self.critic(buffer.observations[rows], buffer.actions[rows]),
                            self.critic_target_value(buffer, rows))
