"""TD3+BC: TD3 with a behaviour-cloning term in the actor loss (Fujimoto & Gu, "A Minimalist Approach to Offline
Reinforcement Learning", NeurIPS 2021, arXiv 2106.06860).

1. Twin critics learn Q of the current deterministic policy as in TD3: clipped double Q-learning with target
   policy smoothing, bootstrapping from min(Q1', Q2') at a noisy target-policy action.
2. Every `policy_freq` steps (TD3's delayed update) the actor maximises lambda * Q1(s, pi(s)) - (pi(s) - a)^2
   on the same batch (Eq. 3), lambda = alpha / mean |Q1(s, pi(s))| holding the trade-off fixed whatever the
   scale of Q; then the target actor and target critics follow by Polyak averaging.
The paper's other change, z-scored states, is the run setting `normalise` (on by default).
"""

from dataclasses import dataclass

import torch

from agents.base import Agent, adam, optimise
from agents.twin_critics import SmoothedTargetSettings, TwinCriticTD
from networks.critics import CriticEnsemble, frozen, soft_update, target_copy
from networks.losses import target_policy_smoothing
from networks.policies import DeterministicPolicy
from utils.buffer import Buffer
from utils.settings import setting

NUM_CRITICS = 2  # TD3's clipped double Q-learning


@dataclass
class TD3BCSettings(SmoothedTargetSettings):
    alpha: float = setting(2.5, "alpha: lambda = alpha / mean|Q|, the weight of Q against the BC term "
                           "(0: pure behaviour cloning)", at_least=0)
    actor_lr: float = setting(3e-4, "learning rate of the actor", above=0)


class TD3BC(TwinCriticTD, Agent):
    Settings = TD3BCSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: TD3BCSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden, settings.hidden)
        self.actor = DeterministicPolicy(obs_dim, act_dim, hidden)
        self.actor_target = target_copy(self.actor)
        self.critic = CriticEnsemble(obs_dim, act_dim, NUM_CRITICS, hidden)
        self.critic_target = target_copy(self.critic)
        self.actor_optimiser = adam(self.actor.parameters(), s.actor_lr)
        self.critic_optimiser = adam(self.critic.parameters(), s.critic_lr)

    # ---- 1. the critics: TD3's clipped double Q-learning (TwinCriticTD.critic_loss) ------------------------
    @torch.no_grad()
    def next_action(self, next_states: torch.Tensor) -> torch.Tensor:
        """Target policy smoothing: clip(pi'(s') + clip(sigma * N(0, I), -c, c), -1, 1), (B, A)."""
        s = self.settings
        return target_policy_smoothing(self.actor_target(next_states), s.policy_noise, s.noise_clip)

    # ---- 2. the actor: deterministic policy gradient plus behaviour cloning -----------------------
    def bc_lambda(self, q: torch.Tensor) -> torch.Tensor:
        """lambda = alpha / mean |Q|, a constant of the actor loss: left in the graph, lambda * mean Q would be
        exactly alpha whenever the batch's Q values share a sign, and the Q term would give no gradient at all."""
        return self.settings.alpha / q.abs().mean().detach()

    def q1_of_actor(self, states: torch.Tensor, policy_actions: torch.Tensor) -> torch.Tensor:
        """Q1(s, pi(s)), differentiable in the action only: the actor step leaves the critics alone, so the
        gradients for their parameters (which the released code computes and then discards) are not built."""
        with frozen(self.critic):
            return self.critic.first(states, policy_actions)

    def actor_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """-lambda * mean Q1(s, pi(s)) + mean (pi(s) - a)^2, the square averaged over the batch and the action
        dimensions (Eq. 3, as a loss)."""
        states, actions = buffer.observations[rows], buffer.actions[rows]
        policy_actions = self.actor(states)
        q = self.q1_of_actor(states, policy_actions)
        bc_lambda, q_mean = self.bc_lambda(q), q.mean()
        loss = -bc_lambda * q_mean + (policy_actions - actions).square().mean()
        return loss, {"bc_lambda": bc_lambda, "q_mean": q_mean.detach()}

    # ---- the policy step: TwinCriticTD.update runs the critic step and calls this ------------------------
    def policy_step(self, buffer: Buffer, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """One actor step on actor_loss, then the target actor follows by Polyak averaging."""
        actor_loss, actor_metrics = self.actor_loss(buffer, rows)
        optimise(self.actor_optimiser, actor_loss)
        soft_update(self.actor_target, self.actor, self.settings.tau)
        return {"actor_loss": actor_loss.detach(), **actor_metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.actor.act(states)
