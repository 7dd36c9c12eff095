"""The critic step shared by agents whose twin critics learn Q of their own policy by TD3's clipped double
Q-learning (TD3+BC, DMPO, mixAWAC): each agent says only which next action the target bootstraps from."""

from dataclasses import dataclass

import torch

from agents.base import AgentSettings, optimise
from networks.critics import ensemble_mse, soft_update
from networks.losses import td_target
from utils.buffer import Buffer
from utils.settings import setting


@dataclass
class TwinCriticSettings(AgentSettings):
    """The settings of that critic step and its cadence, with the released codes' common defaults."""

    policy_freq: int = setting(2, "critic steps per policy step; the targets move on policy steps only",
                               at_least=1)
    critic_lr: float = setting(3e-4, "learning rate of the twin critics", above=0)
    batch_size: int = setting(256, "batch size, shared by the critic and the policy step", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    tau: float = setting(0.005, "Polyak coefficient of the target policy and critics", above=0, at_most=1)
    hidden: int = setting(256, "width of the two hidden layers of every network", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam


@dataclass
class SmoothedTargetSettings(TwinCriticSettings):
    """TD3's target policy smoothing on top (TD3+BC, DMPO)."""

    policy_noise: float = setting(0.2, "std of the Gaussian noise on the target action (target policy "
                                  "smoothing)", at_least=0)
    noise_clip: float = setting(0.5, "the target-action noise is clipped to [-noise_clip, noise_clip]",
                                at_least=0)


class TwinCriticTD:
    """For an Agent with `critic`, `critic_target` (CriticEnsemble), `critic_optimiser`, `discount` and
    TwinCriticSettings. It defines `next_action(next_states)`, the action a' of the target below, and
    `policy_step(buffer, rows)`, which steps the policy and moves the policy's own targets."""

    def next_action(self, next_states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def policy_step(self, buffer: Buffer, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        """One critic step; every `policy_freq` steps (TD3's delayed update) a policy step on the same batch,
        through the critics just updated, then the critics' targets follow by Polyak averaging."""
        s = self.settings
        rows = buffer.sample_td_indices(s.batch_size)
        critic_loss = self.critic_loss(buffer, rows)
        optimise(self.critic_optimiser, critic_loss)
        metrics = {"critic_loss": critic_loss.detach()}
        if step_index % s.policy_freq == 0:
            metrics |= self.policy_step(buffer, rows)
            soft_update(self.critic_target, self.critic, s.tau)
        return metrics

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
