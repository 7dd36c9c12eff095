"""ATAC: adversarially trained actor-critic (Cheng, Xie, Jiang & Agarwal, ICML 2022), as MAHALO's code runs it
(the authors' lightATAC, its first version), and the pieces MAHALO (agents/mahalo.py) and the baselines of its
paper (agents/mahalo_baselines.py) share.

ATAC is a Stackelberg game: the actor maximises a pessimistic critic's value, the critics minimise
    E[Q(s, pi(s)) - Q(s, a)]  +  beta * E[Bellman error],
so Q is pushed down on the policy's actions relative to the data's while staying Bellman-consistent.
1. Behaviour pretraining: the policy clones the data's actions (maximum likelihood plus an entropy term with a
   tuned temperature), and the twin critics learn its value by TD and residual Bellman errors; one Adam over
   the policy and the critics.
2. Main phase, every step: the critics' loss sum_i NS(pessimism_i, Bellman_i, beta) at the fast learning rate,
   each critic layer projected back into a Frobenius-norm ball, Polyak targets; then the entropy temperature,
   then the actor on the second critic at a learning rate 1000x slower.
The `atac` agent is the paper's "ATAC" baseline: all of this on the reward set with its own actions.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from agents.base import Agent, AgentSettings, adam, optimise
from networks.critics import CriticEnsemble, ensemble_mse, frozen, soft_update, target_copy
from networks.losses import td_target
from networks.mlp import EnsembleLinear, mlp
from networks.policies import TanhGaussianPolicy
from utils.buffer import Buffer
from utils.settings import setting

NUM_CRITICS = 2
HIDDEN_LAYERS = 3
LOG_STD_RANGE = (math.log(1e-5), math.log(10.0))  # lightATAC's clamp of the policy's log sigma
TD_WEIGHT = RESIDUAL_WEIGHT = 0.5  # w1, w2: each Bellman loss mixes the TD and the residual error equally
# The original's evaluation protocol: 50 episodes every 50k steps, on raw states (it fits no normaliser).
RUN_DEFAULTS = {"scenario": "rl_sample", "normalise": False, "eval_every": 50_000, "eval_episodes": 50}
LABEL_CHUNK = 65_536  # rows labelled per network call: bounds the activations when a whole dataset is labelled


def normalized_sum(x: torch.Tensor, y: torch.Tensor, w) -> torch.Tensor:
    """NS(x, y, w) = x / w + y if w > 1, else x + w y: a weighted sum whose larger weight is 1, so a large
    weight never scales the gradients up. `w` a number, or a 0-dim tensor (no host sync: both are computed)."""
    if isinstance(w, torch.Tensor):
        return torch.where(w > 1, x / w + y, x + w * y)
    return x / w + y if w > 1 else x + w * y


@torch.no_grad()
def project_weights(module: nn.Module, max_norm: float) -> None:
    """W <- W min(1, c / ||W||_F) for the weight of every layer of every ensemble member, in place: keeps the
    critics Lipschitz, as ATAC's analysis assumes. Biases are not projected."""
    for layer in module.modules():
        if isinstance(layer, EnsembleLinear):  # weight (K, in, out): one norm per member
            norms = layer.weight.flatten(1).norm(dim=1)
            layer.weight.mul_((max_norm / norms).clamp(max=1.0).view(-1, 1, 1))


def value_range(reward_range: tuple[float, float], discount: float, clip_v: bool) -> tuple[float, float]:
    """[V_min, V_max] = [min(-1, 2 r_min) / (1 - gamma), max(1, 2 r_max) / (1 - gamma)] with clip_v, else
    unbounded. gamma = 1 leaves it unbounded too."""
    if not clip_v or discount >= 1:
        return -math.inf, math.inf
    r_min, r_max = reward_range
    return min(-1.0, 2.0 * r_min) / (1.0 - discount), max(1.0, 2.0 * r_max) / (1.0 - discount)


class TransitionNet(nn.Module):
    """A network of a transition [s, s', d] (2 obs + 1 inputs, d the terminal flag): MAHALO's reward model
    g(s, s', d) (linear output), or the baselines' inverse dynamics (tanh output, an action)."""

    def __init__(self, obs_dim: int, out_dim: int, hidden: tuple[int, ...], squash: bool):
        super().__init__()
        self.net = mlp(2 * obs_dim + 1, hidden, out_dim)
        self.squash = squash

    def forward(self, states: torch.Tensor, next_states: torch.Tensor, terminals: torch.Tensor) -> torch.Tensor:
        """(B, obs), (B, obs), (B,) -> (B, out), or (B,) for one output."""
        out = self.net(torch.cat([states, next_states, terminals.unsqueeze(-1)], dim=-1))
        out = torch.tanh(out) if self.squash else out
        return out.squeeze(-1) if out.shape[-1] == 1 else out


@dataclass
class Transitions:
    """The rows ATAC trains on, (N, ...) tensors on the training device: one dataset's rows with a defined next
    state, or the union of two. The baselines choose the rows and write the labels."""

    observations: torch.Tensor
    actions: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    rewards: torch.Tensor

    @classmethod
    def of(cls, buffer: Buffer, rows: torch.Tensor | None = None) -> "Transitions":
        """The given rows of a Buffer (by default those with a defined next state), with its own labels."""
        rows = buffer.td_rows if rows is None else rows
        return cls(buffer.observations[rows], buffer.actions[rows], buffer.next_observations[rows],
                   buffer.terminals[rows], buffer.rewards[rows])

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, field.name) for field in dataclasses.fields(self)]

    def __len__(self) -> int:
        return len(self.rewards)

    def __add__(self, other: "Transitions") -> "Transitions":
        return Transitions(*(torch.cat(pair) for pair in zip(self.tensors(), other.tensors())))

    def sample(self, batch_size: int) -> "Transitions":
        """Uniform rows: over a union, each dataset in proportion to its rows."""
        rows = torch.randint(len(self), (batch_size,), device=self.rewards.device)
        return Transitions(*(tensor[rows] for tensor in self.tensors()))

    @torch.no_grad()
    def labels(self, model: TransitionNet) -> torch.Tensor:
        """model(s, s', d) for every row, LABEL_CHUNK rows per call."""
        return torch.cat([model(*chunk) for chunk in zip(self.observations.split(LABEL_CHUNK),
                                                           self.next_observations.split(LABEL_CHUNK),
                                                           self.terminals.split(LABEL_CHUNK))])


def behaviour_cloning_loss(policy: TanhGaussianPolicy, states: torch.Tensor, actions: torch.Tensor,
                           log_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """NS(-E log pi(a | s), -H, alpha), H = -E log pi(a~ | s) with a~ ~ pi(. | s) reparameterised (its log pi
    given, (B,)): maximum likelihood of the data's actions with an entropy bonus."""
    return normalized_sum(-policy.log_prob(states, actions).mean(), log_pi.mean(), alpha)


def temperature_loss(log_alpha: torch.Tensor, log_pi: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """log alpha * (H - target entropy), H = -E log pi(a~ | s) held fixed: alpha shrinks while H is above target."""
    return log_alpha * (-log_pi.detach().mean() - target_entropy)


def tuned_cloning_losses(policy: TanhGaussianPolicy, log_alpha: torch.Tensor, alpha_optimiser: torch.optim.Optimizer,
                         target_entropy: float, states: torch.Tensor,
                         actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """The temperature stepped first, then the cloning loss with the new alpha (the order of ATAC's actor step):
    {cloning_loss (with gradient), alpha_loss, alpha, log_pi}."""
    _, log_pi = policy.rsample(states)
    alpha_loss = temperature_loss(log_alpha, log_pi, target_entropy)
    optimise(alpha_optimiser, alpha_loss)
    alpha = log_alpha.detach().exp()
    return {"cloning_loss": behaviour_cloning_loss(policy, states, actions, log_pi, alpha),
            "alpha_loss": alpha_loss.detach(), "alpha": alpha, "log_pi": log_pi.detach().mean()}


@dataclass
class ATACSettings(AgentSettings):
    learns_from_two_datasets: ClassVar[bool] = True
    needs_reward_set_actions: ClassVar[str] = "trains on them"

    beta: float = setting(10.0, "beta, the weight of the Bellman error against the pessimism term (NS(pessimism, "
                          "Bellman, beta)); the paper tunes it per task (its appendix, not available here)", above=0)
    fast_lr: float = setting(5e-4, "Adam learning rate of the critics, the temperature and all pretraining",
                             above=0, at_most=1)
    slow_lr: float = setting(5e-7, "Adam learning rate of the actor in the main phase (1000x slower than the "
                             "critics: the actor is the Stackelberg leader)", above=0, at_most=1)
    tau: float = setting(5e-3, "Polyak coefficient of the critic targets (updated every step)", above=0, at_most=1)
    norm_constraint: float = setting(100.0, "c: every critic layer's weight is projected to Frobenius norm <= c "
                                     "after each critic step", above=0)
    clip_v: bool = setting(True, "1: Q targets clamped to [V_min, V_max] = [min(-1, 2 r_min), max(1, 2 r_max)] "
                           "/ (1 - gamma) (the original's --clip_v, used in all its commands); 0: unbounded")
    batch_size: int = setting(256, "rows per step from each dataset", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    hidden: int = setting(256, "width of the three hidden layers of every network", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam
    behaviour_steps: int = setting(100_000, "behaviour pretraining steps (cloning plus TD/residual critics) before "
                                   "the main phase", at_least=0)


class ATAC(Agent):
    Settings = ATACSettings
    run_defaults = RUN_DEFAULTS
    label_steps = 0  # pretraining steps of label models before the behaviour pretraining (the baselines')

    def __init__(self, obs_dim: int, act_dim: int, settings: ATACSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, self.hidden = settings, (settings.hidden,) * HIDDEN_LAYERS
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, self.hidden, LOG_STD_RANGE, zero_log_std_init=True)
        self.critic = CriticEnsemble(obs_dim, act_dim, NUM_CRITICS, self.hidden)
        self.critic_target = target_copy(self.critic)
        # Two temperatures, each alpha = 1 at the start: the pretraining's (cloning) and the main phase's (actor).
        self.pretrain_log_alpha = nn.Parameter(torch.zeros(()))
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = -float(act_dim)
        # The main phase's optimisers, untouched until its first step: fresh after pretraining.
        self.critic_optimiser = adam(self.critic.parameters(), s.fast_lr)
        self.alpha_optimiser = adam([self.log_alpha], s.fast_lr)
        self.policy_optimiser = adam(self.policy.parameters(), s.slow_lr)
        # Pretraining's optimisers live only while it runs (made in start_pretraining), so no checkpoint holds them.
        self.pretraining_optimisers: dict[str, torch.optim.Optimizer] = {}
        self.pretrain_calls = 0
        self.training_set: Transitions | None = None  # built by training_rows once the labels are known
        self.pretrain_steps = self.label_steps + s.behaviour_steps
        self.reward_range = self.value_range = (-math.inf, math.inf)  # read from the data (read_ranges)

    def read_ranges(self, buffer: Buffer) -> None:
        self.reward_range = buffer.reward_range
        self.value_range = value_range(buffer.reward_range, self.discount, self.settings.clip_v)

    # ---- what ATAC trains on: the baselines override these ----------------------------------------------
    def training_rows(self, buffer: Buffer) -> Transitions:
        """The reward set with its own actions and rewards (the paper's "ATAC" baseline)."""
        return Transitions.of(buffer.reward_set)

    def label_models(self) -> dict[str, nn.Module]:
        """Networks that label the data, trained before the behaviour pretraining; ATAC has none."""
        return {}

    # ---- 1. behaviour pretraining ------------------------------------------------------------------------
    def start_pretraining(self, buffer: Buffer) -> None:
        s = self.settings
        self.read_ranges(buffer)
        self.pretrain_calls = 0  # an interrupted pretraining starts again from its first step
        self.pretraining_optimisers = {"behaviour": adam([*self.policy.parameters(), *self.critic.parameters()],
                                                         s.fast_lr),
                                       "alpha": adam([self.pretrain_log_alpha], s.fast_lr)}
        labels = [parameter for model in self.label_models().values() for parameter in model.parameters()]
        if labels:  # one Adam over every label model: the same steps as one Adam each
            self.pretraining_optimisers["labels"] = adam(labels, s.fast_lr)

    def pretrain_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        """The label models' steps first (baselines), then behaviour pretraining on the rows they label."""
        self.pretrain_calls += 1
        if self.pretrain_calls <= self.label_steps:
            return self.label_step(buffer)
        return self.behaviour_pretraining_step(buffer)

    def behaviour_pretraining_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        """One step of behaviour pretraining on the training rows (labelled once, at its first step)."""
        if self.pretrain_calls == self.label_steps + 1:
            self.training_set = self.training_rows(buffer)
        batch = self.training_set.sample(self.settings.batch_size)
        return self.behaviour_step(batch.observations, batch.actions, batch.next_observations, batch.terminals,
                                   batch.rewards)

    def pretraining_bellman_loss(self, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor,
                                 terminals: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """sum_i w1 AL2(y - Q_i(s, a)) + w2 AL2(y_i - Q_i(s, a)), AL2 at 0.5 = half the squared error;
        y = clamp(r + gamma (1 - d) min_k Qbar_k(s', a')), y_i the same with Q_i(s', a') (gradient kept), clamped
        to [V_min, V_max]; a' ~ pi(. | s') without gradient. Rewards keep their gradient (MAHALO's r^)."""
        next_actions, next_q_target = self.next_step(next_states)
        q = self.critic(torch.cat([states, next_states]), torch.cat([actions, next_actions])).unflatten(1, (2, -1))
        q_data, q_next = q.unbind(1)  # (K, B) each
        return 0.5 * self.bellman_loss(q_data, self.bellman_backup(rewards, terminals, next_q_target),
                                       self.bellman_backup(rewards, terminals, q_next))

    def behaviour_losses(self, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor,
                         terminals: torch.Tensor, rewards: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pretraining's losses on one batch, in the order the step takes them: the temperature (stepped
        first, its new value used), then cloning and the critics' Bellman loss, the target EMA before them."""
        cloning = tuned_cloning_losses(self.policy, self.pretrain_log_alpha, self.pretraining_optimisers["alpha"],
                                       self.target_entropy, states, actions)
        soft_update(self.critic_target, self.critic, self.settings.tau)
        bellman = self.pretraining_bellman_loss(states, actions, next_states, terminals, rewards)
        return {"cloning_loss": cloning["cloning_loss"], "bellman_loss": bellman, "log_pi": cloning["log_pi"]}

    def behaviour_step(self, *batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step of behaviour pretraining: min cloning + Bellman loss over the policy and the critics."""
        losses = self.behaviour_losses(*batch)
        optimise(self.pretraining_optimisers["behaviour"], losses["cloning_loss"] + losses["bellman_loss"])
        return {key: value.detach() for key, value in losses.items()}

    def pretrained_modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy, "critic": self.critic, "critic_target": self.critic_target,
                **self.label_models()}

    def pretrain_signature(self) -> dict:
        s = self.settings
        return {"behaviour_steps": s.behaviour_steps, "label_steps": self.label_steps, "batch_size": s.batch_size,
                "hidden": s.hidden, "fast_lr": s.fast_lr, "tau": s.tau, "clip_v": s.clip_v, "discount": self.discount}

    def finish_pretraining(self, buffer: Buffer) -> None:
        """The V range and the training rows (labelled by the pretrained label models); pretraining's optimisers
        go: the main phase has its own, fresh, and its own temperature at alpha = 1."""
        self.read_ranges(buffer)
        self.training_set = self.training_rows(buffer)
        self.pretraining_optimisers = {}

    # ---- 2. main phase -----------------------------------------------------------------------------------
    def bellman_backup(self, rewards: torch.Tensor, terminals: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
        """clamp(r + gamma (1 - d) Q(s', a'), V_min, V_max): ATAC clamps the whole target."""
        return td_target(rewards, terminals, next_q, self.discount).clamp(*self.value_range)

    def critic_values(self, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor,
                      next_actions: torch.Tensor, policy_actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Q_i(s, a), Q_i(s', a'), Q_i(s, a~) from one pass of both critics over the 3B pairs: three (K, B)."""
        q = self.critic(torch.cat([states, next_states, states]),
                        torch.cat([actions, next_actions, policy_actions]))
        return q.unflatten(1, (3, -1)).unbind(1)

    def bellman_loss(self, q_data: torch.Tensor, target: torch.Tensor, residual_target: torch.Tensor) -> torch.Tensor:
        """sum_i w1 MSE(Q_i(s, a), y) + w2 MSE(Q_i(s, a), y_i): the TD error to the target critics' backup and
        the residual error to each critic's own backup (differentiated through Q_i(s', a'))."""
        return TD_WEIGHT * ensemble_mse(q_data, target) + RESIDUAL_WEIGHT * ensemble_mse(q_data, residual_target)

    @staticmethod
    def pessimism_loss(q_data: torch.Tensor, q_policy: torch.Tensor) -> torch.Tensor:
        """sum_i E[Q_i(s, a~) - Q_i(s, a)], a~ ~ pi(. | s) held fixed: the policy's actions valued below the data's."""
        return (q_policy - q_data).mean(dim=1).sum()

    @torch.no_grad()
    def next_step(self, next_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a' ~ pi(. | s') and min_k Qbar_k(s', a'), without gradient: (B, A), (B,)."""
        next_actions, _ = self.policy.rsample(next_states)
        return next_actions, self.critic_target(next_states, next_actions).min(dim=0).values

    def critic_step(self, loss: torch.Tensor) -> None:
        """One Adam step, then the norm projection of every critic layer and the Polyak update of the targets."""
        optimise(self.critic_optimiser, loss)
        project_weights(self.critic, self.settings.norm_constraint)
        soft_update(self.critic_target, self.critic, self.settings.tau)

    def actor_loss(self, states: torch.Tensor, policy_actions: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
        """NS(-E Q_2(s, a~), -H, alpha), H = -E log pi(a~ | s), through a~ (reparameterised) into the policy:
        the actor reads the second critic only, frozen."""
        with frozen(self.critic):
            q_second = self.critic.q.member(torch.cat([states, policy_actions], dim=-1), 1).squeeze(-1)
        return normalized_sum(-q_second.mean(), log_pi.mean(), self.log_alpha.detach().exp())

    def actor_step(self, states: torch.Tensor, policy_actions: torch.Tensor,
                   log_pi: torch.Tensor) -> dict[str, torch.Tensor]:
        """The temperature first (MAHALO's and lightATAC's order), then the actor with the new alpha."""
        alpha_loss = temperature_loss(self.log_alpha, log_pi, self.target_entropy)
        optimise(self.alpha_optimiser, alpha_loss)
        policy_loss = self.actor_loss(states, policy_actions, log_pi)
        optimise(self.policy_optimiser, policy_loss)
        return {"policy_loss": policy_loss.detach(), "alpha_loss": alpha_loss.detach(),
                "alpha": self.log_alpha.detach().exp(), "log_pi": log_pi.detach().mean()}

    def critic_loss(self, batch: Transitions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """sum_i NS(pessimism_i, Bellman_i, beta) (NS is linear for a fixed beta, so the sums go inside).
        Returns the loss, a~ and log pi(a~ | s) for the actor, and the parts."""
        next_actions, next_q_target = self.next_step(batch.next_observations)
        policy_actions, log_pi = self.policy.rsample(batch.observations)
        q_data, q_next, q_policy = self.critic_values(batch.observations, batch.actions, batch.next_observations,
                                                      next_actions, policy_actions.detach())
        bellman = self.bellman_loss(q_data, self.bellman_backup(batch.rewards, batch.terminals, next_q_target),
                                    self.bellman_backup(batch.rewards, batch.terminals, q_next))
        pessimism = self.pessimism_loss(q_data, q_policy)
        loss = normalized_sum(pessimism, bellman, self.settings.beta)
        return loss, policy_actions, log_pi, {"bellman_loss": bellman.detach(), "pessimism_loss": pessimism.detach(),
                                              "q_data": q_data.detach().mean()}

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        batch = self.training_set.sample(self.settings.batch_size)
        loss, policy_actions, log_pi, metrics = self.critic_loss(batch)
        self.critic_step(loss)
        return {"critic_loss": loss.detach(), **metrics, **self.actor_step(batch.observations, policy_actions, log_pi)}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.policy.act(states)
