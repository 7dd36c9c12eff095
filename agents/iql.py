"""IQL: Implicit Q-Learning (Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit
Q-Learning", ICLR 2022, arXiv 2110.06169, Algorithm 1).

1. V(s) fits an upper expectile of Q_target(s, a) over the dataset's actions at s (Eq. 5): an estimate of
   the best action's value that only ever evaluates actions in the data.
2. The twin critics regress onto r + gamma * V(s') (Eq. 6), a backup with no maximisation over actions.
3. The policy is extracted by advantage-weighted regression: the log-likelihood of dataset actions weighted
   by exp(beta * (Q_target(s, a) - V(s))), clipped (Eq. 7).
Defaults follow the authors' JAX code: its update order (V first; the policy and the critics then read the
new V), raw states, and rewards scaled by 1000 / (return range of the data's episodes). CORL's order is a
setting (`update_order`).
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from agents.base import Agent, AgentSettings, adam, optimise
from networks.critics import CriticEnsemble, StateValue, ensemble_mse, soft_update, target_copy
from networks.losses import exp_clip_weight, expectile_loss, td_target
from networks.policies import FixedStdGaussianPolicy
from utils.buffer import Buffer
from utils.settings import setting

NUM_CRITICS = 2  # clipped double Q: V and the advantage read min(Q1, Q2)
LOG_STD_RANGE = (-5.0, 2.0)  # the authors' clamp of the policy's log-std
RETURN_RANGE_TARGET = 1000.0  # return_range scaling: the data's episode returns then span 1000
ACTOR_GROUP = 0  # the policy's parameter group in the optimiser it shares with the critics


@dataclass
class IQLSettings(AgentSettings):
    expectile: float = setting(0.7, "tau, the expectile of Q over dataset actions that V fits (0.5: the mean)",
                               above=0, below=1)
    beta: float = setting(3.0, "beta, the inverse temperature of the policy weight exp(beta * A) "
                          "(0: behaviour cloning)", at_least=0)
    exp_adv_max: float = setting(100.0, "upper clip of the policy weight exp(beta * A)", above=0)
    batch_size: int = setting(256, "batch size, one batch shared by the V, policy and critic updates", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    critic_lr: float = setting(3e-4, "learning rate of the twin critics", above=0)
    value_lr: float = setting(3e-4, "learning rate of V", above=0)
    actor_lr: float = setting(3e-4, "initial learning rate of the policy (cosine-decayed to 0)", above=0)
    actor_lr_decay_steps: int = setting(1_000_000, "updates over which the policy's learning rate decays to 0 "
                                        "on a cosine, then stays 0; 0: no decay", at_least=0)
    tau: float = setting(0.005, "Polyak coefficient of the critic targets (updated every step)", above=0,
                         at_most=1)
    hidden: int = setting(256, "width of the two hidden layers of the critics, V and the policy", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam
    reward_scale: str = setting(
        "return_range", "return_range: rewards x 1000 / (max - min episode return of the data) (the authors' "
        "code); none: raw rewards", ("return_range", "none"))
    update_order: str = setting(
        "original", "original: the policy weight and the critics' target read V after its update (the authors' "
        "code); corl: before it (CORL)", ("original", "corl"))


class Batch(NamedTuple):
    """One TD batch, shared by the three updates of a step; rewards already scaled."""

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminals: torch.Tensor
    next_states: torch.Tensor


class IQL(Agent):
    Settings = IQLSettings
    run_defaults = {"normalise": False}  # the authors' code trains on raw states

    def __init__(self, obs_dim: int, act_dim: int, settings: IQLSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden, settings.hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, NUM_CRITICS, hidden)
        self.critic_target = target_copy(self.critic)
        self.value = StateValue(obs_dim, hidden)
        self.actor = FixedStdGaussianPolicy(obs_dim, act_dim, hidden, squash_mean=True, log_std_range=LOG_STD_RANGE)
        self.value_optimiser = adam(self.value.parameters(), s.value_lr)
        # Adam for the policy and the critics together, each with its own learning rate: they share no
        # parameters and neither loss reads the other's network, so one step on the sum of the two losses is
        # exactly the two separate steps of Algorithm 1, with one backward pass and one optimiser call fewer.
        self.actor_critic_optimiser = adam([{"params": self.actor.parameters(), "lr": s.actor_lr},  # ACTOR_GROUP
                                            {"params": self.critic.parameters(), "lr": s.critic_lr}], s.critic_lr)
        self.reward_factor: float | None = None  # set from the data by finish_pretraining

    # ---- data preprocessing ----------------------------------------------------------------------
    def finish_pretraining(self, buffer: Buffer) -> None:
        self.reward_factor = return_range_factor(buffer) if self.settings.reward_scale == "return_range" else 1.0

    def batch(self, buffer: Buffer, rows: torch.Tensor) -> Batch:
        """The given rows' transitions, rewards times reward_factor."""
        return Batch(buffer.observations[rows], buffer.actions[rows], buffer.rewards[rows] * self.reward_factor,
                     buffer.terminals[rows], buffer.next_observations[rows])

    # ---- 1. expectile value ----------------------------------------------------------------------
    @torch.no_grad()
    def target_q(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """min_k Qhat_k(s, a) with the target critics, as both V and the policy weight use it: (B,)."""
        return self.critic_target(states, actions).min(dim=0).values

    def value_loss(self, states: torch.Tensor, target_q: torch.Tensor) -> torch.Tensor:
        """L_V = E[L2_tau(min_k Qhat_k(s, a) - V(s))] (Eq. 5): V fits the tau-expectile of Qhat over the
        dataset's actions at s."""
        return expectile_loss(target_q - self.value(states), self.settings.expectile)

    @torch.no_grad()
    def state_values(self, states: torch.Tensor, next_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V(s) for the policy weight and V(s') for the critics' target, in one pass: (B,), (B,)."""
        return self.value(torch.cat([states, next_states])).split(len(states))

    # ---- 2. critics ------------------------------------------------------------------------------
    def q_loss(self, batch: Batch, next_v: torch.Tensor) -> torch.Tensor:
        """L_Q = sum_k E[(r + gamma (1 - d) V(s') - Q_k(s, a))^2] (Eq. 6)."""
        target = td_target(batch.rewards, batch.terminals, next_v, self.discount)
        return ensemble_mse(self.critic(batch.states, batch.actions), target)

    # ---- 3. policy extraction by advantage-weighted regression -----------------------------------
    def actor_loss(self, states: torch.Tensor, actions: torch.Tensor,
                   advantage: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """L_pi = -E[min(exp(beta A), exp_adv_max) log pi(a | s)] (Eq. 7), A = Qhat(s, a) - V(s) computed
        without a gradient, so the weight is held fixed. The actions need no clipping inside (-1, 1): the
        policy is a Gaussian around a tanh mean, not a tanh-squashed distribution, so log pi is finite at +-1."""
        s = self.settings
        weight = exp_clip_weight(s.beta * advantage, s.exp_adv_max)
        loss = -(weight * self.actor.log_prob(states, actions)).mean()
        return loss, {"advantage": advantage.mean(), "weight": weight.mean(),
                      "weight_clipped": (weight >= s.exp_adv_max).float().mean()}

    def actor_lr_at(self, step_index: int) -> float:
        """Cosine decay from actor_lr at the first update to 0 after actor_lr_decay_steps updates, then 0, as
        the authors' optax schedule (which counts from 0 at the first update); a pure function of the step so
        a resumed run continues the same schedule."""
        s = self.settings
        if s.actor_lr_decay_steps == 0:
            return s.actor_lr
        progress = min(step_index - 1, s.actor_lr_decay_steps) / s.actor_lr_decay_steps
        return s.actor_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    # ---- one step --------------------------------------------------------------------------------
    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        s = self.settings
        batch = self.batch(buffer, buffer.sample_td_indices(s.batch_size))
        target_q = self.target_q(batch.states, batch.actions)  # the targets move only at the end of the step
        if s.update_order == "corl":  # CORL: the policy and the critics read V from before its update
            v, next_v = self.state_values(batch.states, batch.next_states)

        value_loss = self.value_loss(batch.states, target_q)
        optimise(self.value_optimiser, value_loss)
        if s.update_order == "original":  # the authors' code: they read the V just updated
            v, next_v = self.state_values(batch.states, batch.next_states)

        # The policy step (Eq. 7) and the critic step (Eq. 6) as one Adam step on the summed losses (see __init__).
        actor_loss, actor_metrics = self.actor_loss(batch.states, batch.actions, target_q - v)
        q_loss = self.q_loss(batch, next_v)
        self.actor_critic_optimiser.param_groups[ACTOR_GROUP]["lr"] = self.actor_lr_at(step_index)
        optimise(self.actor_critic_optimiser, actor_loss + q_loss)
        soft_update(self.critic_target, self.critic, s.tau)
        return {"value_loss": value_loss.detach(), "q_loss": q_loss.detach(), "actor_loss": actor_loss.detach(),
                "v": v.mean(), **actor_metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.actor.act(states)


def return_range_factor(buffer: Buffer) -> float:
    """1000 / (max - min undiscounted episode return), the authors' reward scaling for MuJoCo; 1 when every
    episode has the same return (one episode, or constant returns), where the range says nothing."""
    returns = buffer.episode_returns()
    spread = (returns.max() - returns.min()).item()
    return RETURN_RANGE_TARGET / spread if spread > 0 else 1.0
