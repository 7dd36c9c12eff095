"""MAHALO: modality-agnostic adversarial hypothesis adaptation for learning from observations (Li et al.,
"MAHALO: Unifying Offline Reinforcement Learning and Imitation Learning from Observations", ICML 2023, arXiv
2303.17156), as the authors' code (AnqiLi/mahalo, on lightATAC) computes it.

Two datasets: D_a (s, a, s') without rewards and D_r (s, s', r) without actions (either may be the other's
superset in some scenarios; MAHALO reads neither D_a's rewards nor D_r's actions). ATAC's game gains a reward
hypothesis g(s, s', d): the critics and g solve
    min_{f, g}  E_Da[f(s, pi) - f(s, a)] + beta E_Da[(f(s, a) - g - gamma f(s', pi))^2] + alpha E_Dr[(g - r)^2]
and the actor maximises f under an entropy bonus. g is fitted to D_r's rewards and kept Bellman-consistent with
the pessimistic f on D_a (a "pessimistic reward"); rho = alpha / beta.
A. Reward warm start: g regresses D_r's rewards.
B. Joint pretraining: ATAC's behaviour pretraining on D_a with r^ = clip(g) as the reward, g learning from that
   loss and from 1e5 times its regression loss.
C. Main phase (`update`): critics and g on NS(L_pess, L_Qbell, beta) + NS(L_gbell, L_r, rho) with split gradients
   (Q sees a fixed reward, g a fixed future value), then the actor as in ATAC.
"""

from dataclasses import dataclass

import torch
from torch import nn

from agents.atac import ATAC, ATACSettings, TransitionNet, normalized_sum
from agents.base import adam, optimise
from utils.buffer import Buffer
from utils.settings import setting

# The joint pretraining's weight of g's regression loss (fixed in the original's pretraining, not a flag).
PRETRAIN_REWARD_WEIGHT = 1e5


def reward_regression_loss(reward_model: TransitionNet, reward_set: Buffer, rows: torch.Tensor) -> torch.Tensor:
    """E_Dr[(g(s, s', d) - r)^2]: g fitted to the reward set's labels."""
    predicted = reward_model(reward_set.observations[rows], reward_set.next_observations[rows],
                             reward_set.terminals[rows])
    return (predicted - reward_set.rewards[rows]).square().mean()


@dataclass
class MAHALOSettings(ATACSettings):
    needs_reward_set_actions = ""  # MAHALO never reads them: every scenario works

    alpha_beta_ratio: float = setting(1e5, "rho = alpha / beta, the weight of g's regression loss against its "
                                      "Bellman loss (NS(L_gbell, L_r, rho))", above=0)
    warmstart_steps: int = setting(100_000, "steps of the reward warm start (g regresses the reward set) before "
                                   "the joint pretraining", at_least=0)


class MAHALO(ATAC):
    Settings = MAHALOSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: MAHALOSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        self.reward_model = TransitionNet(obs_dim, 1, self.hidden, squash=False)
        # One Adam over Q and g: the same steps as one each (Adam works per parameter), at the critics' rate.
        self.critic_optimiser = adam([*self.critic.parameters(), *self.reward_model.parameters()], settings.fast_lr)

    @property
    def label_steps(self) -> int:
        """Phase A runs where ATAC's pretraining trains its label models."""
        return self.settings.warmstart_steps

    def label_models(self) -> dict[str, nn.Module]:
        return {"reward_model": self.reward_model}

    def reward_hypothesis(self, states: torch.Tensor, next_states: torch.Tensor,
                          terminals: torch.Tensor) -> torch.Tensor:
        """r^ = g(s, s', d) on D_a rows, with gradient: (B,)."""
        return self.reward_model(states, next_states, terminals)

    def action_set_batch(self, buffer: Buffer) -> tuple[torch.Tensor, ...]:
        """s, a, s', d of B rows of D_a; never its rewards."""
        rows = buffer.sample_td_indices(self.settings.batch_size)
        return buffer.observations[rows], buffer.actions[rows], buffer.next_observations[rows], buffer.terminals[rows]

    # ---- A and B: pretraining --------------------------------------------------------------------------
    def start_pretraining(self, buffer: Buffer) -> None:
        super().start_pretraining(buffer)
        # Phase B: g takes the critics' Bellman gradient through r^ and its own regression loss.
        self.pretraining_optimisers["behaviour"] = adam(
            [*self.policy.parameters(), *self.critic.parameters(), *self.reward_model.parameters()],
            self.settings.fast_lr)

    def label_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        """Phase A, the reward warm start: min_g E_Dr[(g - r)^2]."""
        loss = reward_regression_loss(self.reward_model, buffer.reward_set,
                                      buffer.reward_set.sample_td_indices(self.settings.batch_size))
        optimise(self.pretraining_optimisers["labels"], loss)
        return {"warmstart_reward_loss": loss.detach()}

    def behaviour_pretraining_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        """Phase B: ATAC's behaviour pretraining on D_a with r^ = clip(g(s, s', d), r_min, r_max) (g learns where
        r^ is not clipped), plus 1e5 E_Dr[(g - r)^2]; one step of policy, critics and g."""
        states, actions, next_states, terminals = self.action_set_batch(buffer)
        reward_hat = self.reward_hypothesis(states, next_states, terminals).clamp(*self.reward_range)
        losses = self.behaviour_losses(states, actions, next_states, terminals, reward_hat)
        losses["reward_loss"] = reward_regression_loss(
            self.reward_model, buffer.reward_set, buffer.reward_set.sample_td_indices(self.settings.batch_size))
        optimise(self.pretraining_optimisers["behaviour"], losses["cloning_loss"] + losses["bellman_loss"]
                 + PRETRAIN_REWARD_WEIGHT * losses["reward_loss"])
        return {key: value.detach() for key, value in losses.items()}

    def finish_pretraining(self, buffer: Buffer) -> None:
        """The reward and value ranges; the target critics stay the pretraining's; the main phase's optimisers
        and temperature are fresh."""
        self.read_ranges(buffer)
        self.pretraining_optimisers = {}

    # ---- C. main phase -------------------------------------------------------------------------------------
    def q_backup(self, reward_hat: torch.Tensor, terminals: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
        """y_Q = clip(r^, r_min, r_max) + gamma (1 - d) clamp(Q(s', a'), V_min, V_max), r^ held fixed: the critics'
        target. The clamp is on Q(s', a'), not on the whole target as in ATAC."""
        future = self.discount * (1.0 - terminals) * next_q.clamp(*self.value_range)
        return reward_hat.clamp(*self.reward_range).detach() + future

    def g_backup(self, reward_hat: torch.Tensor, terminals: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
        """y_g = r^ + gamma (1 - d) clamp(Q(s', a'), V_min, V_max), the future held fixed and r^ unclipped: g's
        target."""
        return reward_hat + (self.discount * (1.0 - terminals) * next_q.clamp(*self.value_range)).detach()

    def q_bellman_loss(self, q_data: torch.Tensor, q_next: torch.Tensor, next_q_target: torch.Tensor,
                       reward_hat: torch.Tensor, terminals: torch.Tensor) -> torch.Tensor:
        """L_Qbell = sum_i w1 MSE(Q_i(s, a), y_Q(Qbar)) + w2 MSE(Q_i(s, a), y_Q(Q_i(s', a'))): no gradient to g."""
        return self.bellman_loss(q_data, self.q_backup(reward_hat, terminals, next_q_target),
                                 self.q_backup(reward_hat, terminals, q_next))

    def g_bellman_loss(self, q_data: torch.Tensor, q_next: torch.Tensor, next_q_target: torch.Tensor,
                       reward_hat: torch.Tensor, terminals: torch.Tensor) -> torch.Tensor:
        """L_gbell = sum_i w1 MSE(Q_i(s, a), y_g(Qbar)) + w2 MSE(Q_i(s, a), y_g(Q_i(s', a'))), Q held fixed: g's
        Bellman consistency with the pessimistic critics, no gradient to Q."""
        return self.bellman_loss(q_data.detach(), self.g_backup(reward_hat, terminals, next_q_target),
                                 self.g_backup(reward_hat, terminals, q_next))

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        s = self.settings
        states, actions, next_states, terminals = self.action_set_batch(buffer)
        reward_hat = self.reward_hypothesis(states, next_states, terminals)
        next_actions, next_q_target = self.next_step(next_states)
        policy_actions, log_pi = self.policy.rsample(states)
        q_data, q_next, q_policy = self.critic_values(states, actions, next_states, next_actions,
                                                      policy_actions.detach())
        q_bellman = self.q_bellman_loss(q_data, q_next, next_q_target, reward_hat, terminals)
        g_bellman = self.g_bellman_loss(q_data, q_next, next_q_target, reward_hat, terminals)
        pessimism = self.pessimism_loss(q_data, q_policy)
        reward_loss = reward_regression_loss(self.reward_model, buffer.reward_set,
                                             buffer.reward_set.sample_td_indices(s.batch_size))
        loss = (normalized_sum(pessimism, q_bellman, s.beta)
                + normalized_sum(g_bellman, reward_loss, s.alpha_beta_ratio))
        self.critic_step(loss)
        return {"critic_reward_loss": loss.detach(), "q_bellman_loss": q_bellman.detach(),
                "g_bellman_loss": g_bellman.detach(), "pessimism_loss": pessimism.detach(),
                "reward_loss": reward_loss.detach(), "reward_hat": reward_hat.detach().mean(),
                "q_data": q_data.detach().mean(), **self.actor_step(states, policy_actions, log_pi)}
