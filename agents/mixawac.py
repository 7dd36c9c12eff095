"""mixAWAC: AWAC with a mixture-of-Gaussians policy, the multi-modal baseline released with DMPO (Osa et al.,
TMLR 2023, https://openreview.net/forum?id=zkRCp4RmAF; code github.com/TakaOsa/DMPO).

pi(a | s) = sum_k alpha_k(s) N(a; mu(s, e_k), sigma(s, e_k)^2): a gating network gives the mixture weights
alpha(s) over K latents, and one latent-conditioned network gives every component's mean and std.
1. Twin critics learn Q of the policy by TD, bootstrapping from min(Q1', Q2') at an action sampled from the
   target policy's most probable component.
2. Every `policy_freq` steps the policy maximises the advantage-weighted log-likelihood of the whole mixture
   on dataset actions (AWAC's projection step), with the advantage against one target-policy sample and
   DMPO's batch-range weight; the targets follow by Polyak averaging.
Acting returns the mean of the most probable component.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from agents.base import Agent, adam, optimise
from agents.twin_critics import TwinCriticSettings, TwinCriticTD
from networks.critics import CriticEnsemble, soft_update, target_copy
from networks.latent import LatentConditionedMLP
from networks.losses import batch_range_exp_weight
from networks.mlp import mlp
from networks.policies import gaussian_log_prob, soft_clamp
from utils.buffer import Buffer
from utils.settings import setting

NUM_CRITICS = 2
LOG_STD_RANGE = (-5.0, 0.0)


class GaussianMixturePolicy(nn.Module):
    """alpha(s) from a gating MLP; component k is N(tanh(m), exp(log sigma)) with (m, s) = f(s, e_k) and
    log sigma = soft_clamp(tanh(s), -5, 0). The released code squashes the log-std twice (tanh, then the soft
    clamp's own tanh), so it lies in (-4.40, -0.60), not (-5, 0); kept, since it sets how sharp the
    components can get."""

    def __init__(self, obs_dim: int, act_dim: int, num_components: int, hidden: tuple[int, ...]):
        super().__init__()
        self.act_dim, self.num_components = act_dim, num_components
        self.gating = mlp(obs_dim, hidden, num_components)
        self.components = LatentConditionedMLP(obs_dim, num_components, hidden, 2 * act_dim)

    def mixture_weights(self, states: torch.Tensor) -> torch.Tensor:
        """alpha(s): (B, K)."""
        return F.softmax(self.gating(states), dim=-1)

    def component_distribution(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the components from the network's outputs (..., 2A) -> (..., A), (..., A)."""
        mean, log_std = outputs.split(self.act_dim, dim=-1)
        return torch.tanh(mean), soft_clamp(torch.tanh(log_std), *LOG_STD_RANGE).exp()

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | s) = logsumexp_k (log alpha_k(s) + log N_k(a)), every component in one pass: (B,). The
        log-sum-exp keeps the gradient where every component is far from a (the released code sums the
        exponentials first, which underflows to its 1e-12 floor there and gives no gradient)."""
        mean, std = self.component_distribution(self.components.every_latent(states))  # (K, B, A)
        log_weights = F.log_softmax(self.gating(states), dim=-1).T  # (K, B)
        return torch.logsumexp(log_weights + gaussian_log_prob(actions, mean, std), dim=0)

    def most_probable_component(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the component with the largest alpha_k(s), at each state: (B, A), (B, A)."""
        best = F.one_hot(self.gating(states).argmax(dim=-1), self.num_components).to(states.dtype)
        return self.component_distribution(self.components(states, best))

    def sample(self, states: torch.Tensor) -> torch.Tensor:
        """A draw from the most probable component (as released: acting and targets use that component
        only), not clipped to the action box: (B, A)."""
        mean, std = self.most_probable_component(states)
        return mean + std * torch.randn_like(mean)

    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.most_probable_component(states)[0]


@dataclass
class MixAWACSettings(TwinCriticSettings):
    num_components: int = setting(8, "K, the number of Gaussian components", at_least=1, at_most=1024)
    scale: float = setting(10.0, "sharpness of the advantage weight exp(scale * (A - max A) / (max A - min A)) "
                           "(0: every weight 1)", at_least=0)
    policy_lr: float = setting(3e-4, "learning rate of the policy (gating and components)", above=0)


class MixAWAC(TwinCriticTD, Agent):
    Settings = MixAWACSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: MixAWACSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden, settings.hidden)
        self.policy = GaussianMixturePolicy(obs_dim, act_dim, s.num_components, hidden)
        self.policy_target = target_copy(self.policy)
        self.critic = CriticEnsemble(obs_dim, act_dim, NUM_CRITICS, hidden)
        self.critic_target = target_copy(self.critic)
        self.policy_optimiser = adam(self.policy.parameters(), s.policy_lr)
        self.critic_optimiser = adam(self.critic.parameters(), s.critic_lr)

    # ---- 1. policy evaluation (TwinCriticTD.critic_loss) --------------------------------------------------
    @torch.no_grad()
    def next_action(self, next_states: torch.Tensor) -> torch.Tensor:
        """a' drawn from the target policy's most probable component: (B, A)."""
        return self.policy_target.sample(next_states)

    # ---- 2. advantage-weighted maximum likelihood of the mixture ---------------------------------------
    @torch.no_grad()
    def advantage(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """A(s, a) = min(Q1', Q2')(s, a) - min(Q1', Q2')(s, a~), a~ one draw from the target policy, all with
        the target critics (as released): (B,)."""
        q = self.critic_target(states, actions).min(dim=0).values
        return q - self.critic_target(states, self.policy_target.sample(states)).min(dim=0).values

    def policy_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """-mean W(s, a) log pi(a | s) on dataset pairs, W the batch-range weight held fixed."""
        states, actions = buffer.observations[rows], buffer.actions[rows]
        advantage = self.advantage(states, actions)
        weight = batch_range_exp_weight(advantage, self.settings.scale)
        loss = -(weight * self.policy.log_prob(states, actions)).mean()
        return loss, {"advantage": advantage.mean(), "weight": weight.mean()}

    # ---- the policy step: TwinCriticTD.update runs the critic step and calls this ------------------------
    def policy_step(self, buffer: Buffer, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step of the policy on policy_loss, then the target policy follows by Polyak averaging."""
        policy_loss, policy_metrics = self.policy_loss(buffer, rows)
        optimise(self.policy_optimiser, policy_loss)
        soft_update(self.policy_target, self.policy, self.settings.tau)
        return {"policy_loss": policy_loss.detach(), **policy_metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.policy.act(states)
