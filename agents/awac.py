"""AWAC, offline: advantage-weighted actor-critic (Nair, Gupta, Dalal & Levine, arXiv 2006.09359, Algorithm 1).

1. Twin critics learn Q of the current policy by TD: the target bootstraps from min_k Q_target,k(s', a')
   with a' ~ pi(. | s'), and the targets follow the critics by Polyak averaging every step.
2. The policy maximises exp(A(s, a) / lambda) * log pi(a | s) on dataset actions: the closed-form
   solution of a KL-constrained improvement step, projected by weighted maximum likelihood, so it stays
   on the data's support. A(s, a) = Q(s, a) - V(s) with V(s) = Q(s, a_pi).
A unimodal Gaussian policy: on multi-modal data it can shift weight toward the better mode but still
averages whatever modes keep a weight. Settings and networks follow CORL's implementation (Tarasov et al.,
arXiv 2210.07105): three hidden layers of 256 for the policy and each critic, a Gaussian whose mean is not
squashed and whose log-std is one state-independent parameter in [-20, 2], one batch for both steps.
"""

from dataclasses import dataclass

import torch

from agents.base import Agent, AgentSettings, adam, optimise
from networks.critics import CriticEnsemble, ensemble_mse, soft_update, target_copy
from networks.losses import exp_clip_weight, td_target
from networks.policies import FixedStdGaussianPolicy
from utils.buffer import Buffer
from utils.settings import setting

NUM_CRITICS = 2
HIDDEN_LAYERS = 3
LOG_STD_RANGE = (-20.0, 2.0)


@dataclass
class AWACSettings(AgentSettings):
    awac_lambda: float = setting(1.0, "lambda, the advantage temperature: weight exp(A / lambda)", above=0)
    exp_adv_max: float = setting(100.0, "upper clip of the advantage weight", above=0)
    batch_size: int = setting(256, "batch size, one batch for the critic and the policy step", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    critic_lr: float = setting(3e-4, "learning rate of the twin critics", above=0)
    policy_lr: float = setting(3e-4, "learning rate of the policy", above=0)
    tau: float = setting(0.005, "Polyak coefficient of the critic targets (updated every step)", above=0)
    hidden: int = setting(256, "width of the three hidden layers of the critics and the policy", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam


class AWAC(Agent):
    Settings = AWACSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: AWACSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden,) * HIDDEN_LAYERS
        self.critic = CriticEnsemble(obs_dim, act_dim, NUM_CRITICS, hidden)
        self.critic_target = target_copy(self.critic)
        self.policy = FixedStdGaussianPolicy(obs_dim, act_dim, hidden, squash_mean=False, log_std_range=LOG_STD_RANGE)
        self.critic_optimiser = adam(self.critic.parameters(), s.critic_lr)
        self.policy_optimiser = adam(self.policy.parameters(), s.policy_lr)

    # ---- 1. policy evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def td_target(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """r + gamma * (1 - done) * min_k Q_target,k(s', a'), a' ~ pi(. | s'): (B,)."""
        next_states = buffer.next_observations[rows]
        next_q = self.critic_target(next_states, self.policy.sample(next_states)).min(dim=0).values
        return td_target(buffer.rewards[rows], buffer.terminals[rows], next_q, self.discount)

    def value_loss(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """Each critic's squared TD error to the shared target, summed over the two critics."""
        return ensemble_mse(self.critic(buffer.observations[rows], buffer.actions[rows]),
                            self.td_target(buffer, rows))

    # ---- 2. advantage-weighted policy improvement ------------------------------------------------
    def advantage(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """A(s, a) = Q(s, a) - Q(s, a_pi), a_pi ~ pi(. | s), both with the minimum of the twin critics
        (as CORL does): one policy sample per state estimates V(s). (B,)."""
        q = self.critic(states, actions).min(dim=0).values
        v = self.critic(states, self.policy.sample(states)).min(dim=0).values
        return q - v

    def advantage_weight(self, advantage: torch.Tensor) -> torch.Tensor:
        """exp(A / lambda), clipped at exp_adv_max so a few large advantages cannot dominate the batch."""
        return exp_clip_weight(advantage / self.settings.awac_lambda, self.settings.exp_adv_max)

    def policy_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """-E[w(s, a) log pi(a | s)] over dataset pairs, the weights held fixed."""
        states, actions = buffer.observations[rows], buffer.actions[rows]
        with torch.no_grad():
            advantage = self.advantage(states, actions)
            weight = self.advantage_weight(advantage)
        loss = -(weight * self.policy.log_prob(states, actions)).mean()
        return loss, {"advantage": advantage.mean(), "weight": weight.mean(),
                      "weight_clipped": (weight >= self.settings.exp_adv_max).float().mean()}

    # ---- one step --------------------------------------------------------------------------------
    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        s = self.settings
        rows = buffer.sample_td_indices(s.batch_size)
        value_loss = self.value_loss(buffer, rows)
        optimise(self.critic_optimiser, value_loss)
        policy_loss, policy_metrics = self.policy_loss(buffer, rows)  # after the critic step, on its batch
        optimise(self.policy_optimiser, policy_loss)
        soft_update(self.critic_target, self.critic, s.tau)
        return {"value_loss": value_loss.detach(), "policy_loss": policy_loss.detach(), **policy_metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.policy.act(states)
