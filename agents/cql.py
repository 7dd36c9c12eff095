"""CQL: conservative Q-learning, continuous CQL(H) on soft actor-critic (Kumar, Zhou, Tucker & Levine,
"Conservative Q-Learning for Offline Reinforcement Learning", NeurIPS 2020, arXiv 2006.04779: Eq. 4,
Algorithm 1, Appendix F).

1. Twin critics learn by TD from actions the policy samples at the next state, plus the CQL(H) regulariser
   (Eq. 4): cql_alpha * (soft maximum of Q(s, .) - Q(s, a_data)). It pushes Q down wherever its soft maximum
   puts weight and up at the dataset's actions, so away from the data Q under-estimates instead of
   over-estimating.
2. The soft maximum log sum_a exp Q(s, a) is estimated by importance sampling (Appendix F): n uniform actions
   and n actions from pi(. | s) and from pi(. | s'), each Q value minus the log-density it was drawn with.
3. The policy is SAC's: minimise alpha log pi(a~ | s) - min_k Q_k(s, a~), alpha tuned to a target entropy;
   for the first bc_warmup_steps it maximises the dataset actions' log-likelihood instead.
Optional Lagrange form (Appendix F): a multiplier alpha' on the regulariser, tuned so that the weighted gap
stays at a threshold. Defaults follow the authors' rlkit code run with their README's MuJoCo command.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from agents.base import Agent, AgentSettings, adam, optimise
from networks.critics import CriticEnsemble, ensemble_mse, soft_update, target_copy
from networks.losses import td_target
from networks.policies import TanhGaussianPolicy, gaussian_log_prob
from utils.buffer import Buffer
from utils.errors import UserInputError
from utils.settings import setting

NUM_CRITICS = 2  # clipped double Q: the TD target and the policy read min(Q1, Q2)
NUM_LAYERS = 3  # hidden layers of the critics and the policy, as in the authors' code
LOG_STD_RANGE = (-5.0, 2.0)  # the authors' clamp of the policy's log-std
# The authors' log-likelihood of dataset actions (behaviour-cloning warm start): atanh(a) with 1 +- a floored
# at this, the Jacobian as log(1 - a^2 + this), the Gaussian mean clamped to MEAN_RANGE. Finite at a = +-1.
DATA_ACTION_EPS = 1e-6
MEAN_RANGE = (-9.0, 9.0)
ALPHA_PRIME_MAX = 1e6  # the authors' clamp of the Lagrange multiplier


@dataclass
class CQLSettings(AgentSettings):
    cql_alpha: float = setting(5.0, "alpha, weight of the conservative term (the authors' min_q_weight; their "
                               "README: 5 or 10 for MuJoCo)", at_least=0)
    lagrange_threshold: float = setting(-1.0, "tau of the Lagrange form: a multiplier alpha' on the conservative "
                                        "term is tuned so that cql_alpha * gap stays at tau; negative (-1): off, "
                                        "as in the authors' MuJoCo runs", at_least=-1)
    num_sampled_actions: int = setting(10, "n: actions drawn per state from each of uniform, pi(.|s) and "
                                       "pi(.|s') to estimate the soft maximum of Q", at_least=1,
                                       at_most=1000)  # 3n critic passes per state: 1000 is 12x a hopper step
    cql_temperature: float = setting(1.0, "T of the soft maximum T * logsumexp(Q / T)", above=0)
    importance_sampling: bool = setting(True, "1: subtract each sampled action's log-density before the "
                                        "logsumexp (CQL(H), the authors' min_q_version 3); 0: plain logsumexp over "
                                        "the sampled and the data actions (min_q_version 2)")
    backup_entropy: bool = setting(False, "1: the TD target subtracts alpha * log pi(a'|s') (SAC's soft backup); "
                                   "0: no entropy in the target (the authors' MuJoCo command)")
    bc_warmup_steps: int = setting(40_000, "first steps in which the policy maximises the dataset actions' "
                                   "log-likelihood (plus entropy) instead of Q (the authors' policy_eval_start)",
                                   at_least=0)
    batch_size: int = setting(256, "batch size, one batch shared by every loss of a step", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    critic_lr: float = setting(3e-4, "learning rate of the twin critics (and of the Lagrange multiplier)", above=0)
    policy_lr: float = setting(1e-4, "learning rate of the policy (and of the entropy temperature)", above=0)
    tau: float = setting(0.005, "Polyak coefficient of the critic targets (updated every step)", above=0, at_most=1)
    hidden: int = setting(256, "width of the three hidden layers of the critics and the policy", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam

    def check(self, run) -> None:
        if self.lagrange_threshold >= 0 and self.cql_alpha == 0:
            raise UserInputError("--lagrange_threshold tunes a multiplier of cql_alpha * gap, which is 0 with "
                                 "--cql_alpha 0; set --cql_alpha > 0 or --lagrange_threshold -1")


class CQL(Agent):
    Settings = CQLSettings
    run_defaults = {"normalise": False}  # the authors' code trains on raw states

    def __init__(self, obs_dim: int, act_dim: int, settings: CQLSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden,) * NUM_LAYERS
        self.critic = CriticEnsemble(obs_dim, act_dim, NUM_CRITICS, hidden)
        self.critic_target = target_copy(self.critic)
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, hidden, LOG_STD_RANGE)
        self.log_alpha = nn.Parameter(torch.zeros(()))  # alpha = 1 at the start, as in the authors' code
        self.target_entropy = -float(act_dim)
        self.uniform_log_density = act_dim * math.log(0.5)  # of uniform actions in [-1, 1]^A
        self.critic_optimiser = adam(self.critic.parameters(), s.critic_lr)
        self.policy_optimiser = adam(self.policy.parameters(), s.policy_lr)
        self.alpha_optimiser = adam([self.log_alpha], s.policy_lr)
        self.lagrange = s.lagrange_threshold >= 0
        if self.lagrange:
            self.log_alpha_prime = nn.Parameter(torch.zeros(()))
            self.alpha_prime_optimiser = adam([self.log_alpha_prime], s.critic_lr)

    # ---- policy samples ---------------------------------------------------------------------------
    def sample_policy(self, states: torch.Tensor, next_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """n + 1 reparameterised actions per state at s and at s', from one pass of the policy over both.
        Sample 0 at s feeds the policy and entropy losses (with gradient), sample 0 at s' the TD target; the
        other n at s and n at s' are the policy's proposals for the soft maximum, all evaluated at s. Every
        loss sees its own independent draws, as in the authors' code, where each comes from a separate call.
        Returns actions (B, A) and log pi (B,) at s; next actions and log pi at s'; proposals (2n, B, A),
        alternately from pi(. | s) and pi(. | s'), and their log pi (2n, B); no gradient in the last four."""
        batch, n = len(states), self.settings.num_sampled_actions
        actions, log_pi = self.policy.rsample(torch.cat([states, next_states]), n + 1)
        proposals, proposal_log_pi = actions[1:].detach(), log_pi[1:].detach()  # (n, 2B, A): s then s'
        return (actions[0, :batch], log_pi[0, :batch], actions[0, batch:].detach(), log_pi[0, batch:].detach(),
                proposals.reshape(2 * n, batch, -1), proposal_log_pi.reshape(2 * n, batch))

    # ---- 1. entropy temperature and policy (SAC) ----------------------------------------------------
    def alpha_loss(self, log_pi: torch.Tensor) -> torch.Tensor:
        """-log alpha * (log pi(a~ | s) + target entropy): alpha grows while the entropy is below target."""
        return -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()

    def data_log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | s) of dataset actions, computed as the authors' policy does (see DATA_ACTION_EPS): (B,)."""
        mean, std = self.policy(states)
        pre_tanh = 0.5 * ((1 + actions).clamp(min=DATA_ACTION_EPS).log()
                          - (1 - actions).clamp(min=DATA_ACTION_EPS).log())
        log_jacobian = (1 - actions.square() + DATA_ACTION_EPS).log().sum(-1)
        return gaussian_log_prob(pre_tanh, mean.clamp(*MEAN_RANGE), std) - log_jacobian

    def policy_loss(self, states: torch.Tensor, data_actions: torch.Tensor, actions: torch.Tensor,
                    log_pi: torch.Tensor, alpha: torch.Tensor, step_index: int) -> torch.Tensor:
        """E[alpha log pi(a~ | s) - min_k Q_k(s, a~)], a~ ~ pi(. | s) reparameterised (SAC); during the
        warm start, E[alpha log pi(a~ | s) - log pi(a_data | s)] instead (Q is not yet meaningful)."""
        if step_index <= self.settings.bc_warmup_steps:
            return (alpha * log_pi - self.data_log_prob(states, data_actions)).mean()
        return (alpha * log_pi - self.critic(states, actions).min(dim=0).values).mean()

    # ---- 2. conservative policy evaluation ----------------------------------------------------------
    @torch.no_grad()
    def q_target(self, rewards: torch.Tensor, terminals: torch.Tensor, next_states: torch.Tensor,
                 next_actions: torch.Tensor, next_log_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """y = r + gamma (1 - d) (min_k Qbar_k(s', a') [- alpha log pi(a' | s') if backup_entropy]): (B,)."""
        next_q = self.critic_target(next_states, next_actions).min(dim=0).values
        if self.settings.backup_entropy:
            next_q = next_q - alpha * next_log_pi
        return td_target(rewards, terminals, next_q, self.discount)

    def proposals_with_uniform(self, policy_actions: torch.Tensor,
                               policy_log_pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3n proposals per state: n uniform in [-1, 1]^A, then the 2n policy actions; with the
        log-density each was drawn from: (3n, B, A), (3n, B)."""
        n, batch = self.settings.num_sampled_actions, policy_actions.shape[1]
        uniform = torch.empty(n, batch, self.act_dim, device=policy_actions.device).uniform_(-1.0, 1.0)
        return (torch.cat([uniform, policy_actions]),
                torch.cat([policy_log_pi.new_full((n, batch), self.uniform_log_density), policy_log_pi]))

    def critic_values(self, states: torch.Tensor, data_actions: torch.Tensor,
                      proposals: torch.Tensor) -> torch.Tensor:
        """Q_k(s, a) for the data action and every proposal of every state in one pass of both critics:
        (K, 1 + 3n, B); index 0 along the middle axis is the data action."""
        actions = torch.cat([data_actions.unsqueeze(0), proposals])
        states = states.expand(len(actions), *states.shape)
        return self.critic(states.reshape(-1, states.shape[-1]),
                           actions.reshape(-1, actions.shape[-1])).view(NUM_CRITICS, *actions.shape[:2])

    def cql_gap(self, q: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
        """Per critic, E_s[T logsumexp_j(Q(s, a_j) / T) - Q(s, a_data)] (Eq. 4's regulariser). With importance
        sampling the sum runs over the 3n proposals, each Q minus its (detached) log-density (Appendix F);
        without, over the plain Q values of the proposals and the data action. (K,)."""
        s = self.settings
        soft_max_terms = q[:, 1:] - log_density if s.importance_sampling else q
        soft_max = s.cql_temperature * torch.logsumexp(soft_max_terms / s.cql_temperature, dim=1)
        return (soft_max - q[:, 0]).mean(dim=1)

    def alpha_prime(self) -> torch.Tensor:
        return self.log_alpha_prime.exp().clamp(0.0, ALPHA_PRIME_MAX)

    def conservative_loss(self, gap: torch.Tensor) -> torch.Tensor:
        """cql_alpha * gap summed over the critics; in the Lagrange form alpha' (cql_alpha * gap - tau), alpha'
        held fixed (its own loss tunes it)."""
        s = self.settings
        if self.lagrange:
            return (self.alpha_prime().detach() * (s.cql_alpha * gap - s.lagrange_threshold)).sum()
        return s.cql_alpha * gap.sum()

    def alpha_prime_loss(self, gap: torch.Tensor) -> torch.Tensor:
        """-alpha' (cql_alpha * gap - tau), averaged over the critics: alpha' grows while the gap is above tau."""
        s = self.settings
        return -(self.alpha_prime() * (s.cql_alpha * gap.detach() - s.lagrange_threshold)).mean()

    # ---- one step --------------------------------------------------------------------------------
    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        s = self.settings
        rows = buffer.sample_td_indices(s.batch_size)
        states, data_actions = buffer.observations[rows], buffer.actions[rows]
        actions, log_pi, next_actions, next_log_pi, policy_proposals, policy_log_pi = self.sample_policy(
            states, buffer.next_observations[rows])

        # The authors step alpha first and use the new value in the other losses.
        alpha_loss = self.alpha_loss(log_pi)
        optimise(self.alpha_optimiser, alpha_loss)
        alpha = self.log_alpha.detach().exp()

        # Every loss reads the networks as they were before this step; the policy's backward pass leaves
        # gradients on the critics, which the critic step discards (optimise zeroes them first).
        policy_loss = self.policy_loss(states, data_actions, actions, log_pi, alpha, step_index)
        target = self.q_target(buffer.rewards[rows], buffer.terminals[rows], buffer.next_observations[rows],
                               next_actions, next_log_pi, alpha)
        proposals, log_density = self.proposals_with_uniform(policy_proposals, policy_log_pi)
        q = self.critic_values(states, data_actions, proposals)
        td_loss = ensemble_mse(q[:, 0], target)
        gap = self.cql_gap(q, log_density)
        q_loss = td_loss + self.conservative_loss(gap)

        optimise(self.policy_optimiser, policy_loss)
        optimise(self.critic_optimiser, q_loss)
        metrics = {}
        if self.lagrange:
            metrics["alpha_prime"] = self.alpha_prime().detach()  # the value this step's critic loss used
            alpha_prime_loss = self.alpha_prime_loss(gap)
            optimise(self.alpha_prime_optimiser, alpha_prime_loss)
            metrics["alpha_prime_loss"] = alpha_prime_loss.detach()
        soft_update(self.critic_target, self.critic, s.tau)
        return {"q_loss": q_loss.detach(), "td_loss": td_loss.detach(), "cql_gap": gap.detach().mean(),
                "q_data": q[:, 0].detach().mean(), "policy_loss": policy_loss.detach(),
                "alpha_loss": alpha_loss.detach(), "alpha": alpha, "log_pi": log_pi.detach().mean(), **metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.policy.act(states)
