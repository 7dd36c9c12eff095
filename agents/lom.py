"""LOM: weighted imitation learning on one mode (Wang, Jin & Montana, arXiv 2412.03258, Algorithm 1).

1. Fit the behaviour policy as a GMM with a mixture density network and freeze it (Eq. 15).
2. Learn Q of the behaviour policy by SARSA (Eq. 16) and the hyper Q-function Q_phi(s, u), the value of
   drawing the action from component u (Eq. 17).
3. Pick u* = argmax_u Q_phi(s, u) (Eq. 7) and imitate actions of that component alone, weighted by their
   advantage (Eq. 18).
Defaults follow the authors' released code; the paper's variants are settings (`policy_loss`, `adv_baseline`).
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from agents.base import Agent, AgentSettings, adam, optimise
from networks.critics import HYPER_Q_FORMS, CriticEnsemble, ensemble_mse, soft_update, target_copy
from networks.losses import exp_clip_weight, td_target
from networks.mdn import MDN_INITS, GaussianMixture, MixtureDensityNetwork
from networks.policies import DeterministicPolicy, GaussianPolicy
from utils.buffer import Buffer
from utils.settings import setting

TABLE_CHUNK = 65_536
HELD_OUT_MAX_ROWS = 20_000  # enough for a stable NLL estimate; more only slows the checks


@dataclass
class LOMSettings(AgentSettings):
    num_mixtures: int = setting(5, "M, the number of Gaussian components of the behaviour MDN", at_least=1,
                                at_most=100)  # 10x the paper's M; the MDN's table holds N x M x A floats of each kind
    K: int = setting(1, "number of value critics; the TD target takes their minimum", at_least=1,
                     at_most=1000)  # 2x the largest offline-RL ensemble (SAC-N's 500); each critic is small
    beta: float = setting(5.0, "advantage temperature: weight exp(beta*A) (mse) or exp(A/beta) (nll)",
                         above=0)
    C: float = setting(50.0, "upper clip of the advantage weight", above=0)
    ac_rand: float = setting(0.0, "std of Gaussian noise added to the imitated action a^", at_least=0)
    smooth_noise: float = setting(0.2, "std of the target smoothing noise on the next action", at_least=0)
    noise_clip: float = setting(0.5, "clip of the target smoothing noise", at_least=0)
    gmm_steps: int = setting(200_000, "MDN pretraining steps at most (the cap of early stopping)", at_least=0)
    gmm_holdout: float = setting(0.05, "share of the rows held out to measure the MDN's NLL for early stopping "
                                 f"(at most {HELD_OUT_MAX_ROWS} rows); 0: no early stopping", at_least=0, below=1)
    gmm_check_every: int = setting(1000, "MDN steps between held-out NLL checks", at_least=1)
    gmm_patience: int = setting(10, "held-out checks without improvement before MDN pretraining stops",
                                at_least=1)
    gmm_batch_size: int = setting(512, "MDN pretraining batch size", at_least=1,
                                  at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    gmm_lr: float = setting(1e-3, "MDN learning rate", above=0)
    value_batch_size: int = setting(256, "batch size of the value (SARSA) update", at_least=1,
                                    at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    value_lr: float = setting(3e-4, "learning rate of the value critics", above=0)
    hyper_batch_size: int = setting(1024, "states per hyper Q update (each with all M components)", at_least=1,
                                    at_most=100_000)  # each state passes the critic M times: a tenth of the batch bound
    hyper_lr: float = setting(1e-3, "learning rate of the hyper Q-function", above=0)
    policy_batch_size: int = setting(256, "batch size of the policy update", at_least=1,
                                     at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    policy_lr: float = setting(1e-3, "learning rate of the policy", above=0)
    tau: float = setting(0.005, "Polyak coefficient of the critic targets", above=0)
    target_update_every: int = setting(2, "steps between Polyak updates of the critic targets", at_least=1)
    policy_loss: str = setting(
        "mse", "mse: deterministic policy, weighted squared error (released code); "
        "nll: Gaussian policy, weighted log-likelihood (paper Eq. 18)", ("mse", "nll"))
    adv_baseline: str = setting(
        "policy", "advantage baseline: Q(s, pi(s)) (released code) or Q(s, mean of the selected "
        "component) (paper Algorithm 1)", ("policy", "mode_mean"))
    mode_min_weight: float = setting(
        0.0, "components whose mixing weight at a state is below this are not candidates for u* (the most "
        "likely one always is); 0: every component, as in the paper and released code", at_least=0, below=1)
    hyper_q: str = setting(
        "multihead", "form of Q_phi: multihead, s -> M values (one pass per state; picks the same components "
        "as onehot, see docs/performance.md); onehot, (s, one-hot(u)) -> 1 (released code)", ("multihead", "onehot"))
    mdn_hidden: int = setting(512, "width of the MDN's two hidden layers", at_least=1,
                              at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam
    mdn_init: str = setting("plain", "plain: the paper's MDN; spread: each component's mean starts at its own "
                            "action (networks/mdn.py), against mode collapse", choices=MDN_INITS)
    hidden: int = setting(256, "width of the two hidden layers of critics, hyper Q and policy", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam


class LOM(Agent):
    Settings = LOMSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: LOMSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden, settings.hidden)
        self.behaviour_mdn = MixtureDensityNetwork(obs_dim, act_dim, s.num_mixtures, (s.mdn_hidden,) * 2,
                                                   s.mdn_init)
        self.critic = CriticEnsemble(obs_dim, act_dim, s.K, hidden)
        self.critic_target = target_copy(self.critic)
        self.hyper_q = HYPER_Q_FORMS[s.hyper_q](obs_dim, s.num_mixtures, hidden)
        policy_class = DeterministicPolicy if s.policy_loss == "mse" else GaussianPolicy
        self.policy = policy_class(obs_dim, act_dim, hidden)
        self.mdn_optimiser = adam(self.behaviour_mdn.parameters(), s.gmm_lr)
        self.critic_optimiser = adam(self.critic.parameters(), s.value_lr)
        self.hyper_q_optimiser = adam(self.hyper_q.parameters(), s.hyper_lr)
        self.policy_optimiser = adam(self.policy.parameters(), s.policy_lr)
        self.pretrain_steps, self.pretrain_check_every, self.pretrain_patience = (
            s.gmm_steps, s.gmm_check_every, s.gmm_patience)
        # The frozen MDN's components at every dataset state, filled by finish_pretraining: (N, M, A).
        self.register_buffer("component_means", torch.empty(0), persistent=False)
        self.register_buffer("component_stds", torch.empty(0), persistent=False)
        self.register_buffer("component_weights", torch.empty(0), persistent=False)  # (N, M)

    # ---- 1. the behaviour MDN, trained "until convergence" (Sec. 5.1) ----------------------------
    def start_pretraining(self, buffer: Buffer) -> None:
        self.mdn_rows, self.held_out_rows = buffer.split_rows(self.settings.gmm_holdout, HELD_OUT_MAX_ROWS)

    def pretrain_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        rows = buffer.sample_among(self.mdn_rows, self.settings.gmm_batch_size)
        loss = self.behaviour_mdn.nll(buffer.observations[rows], buffer.actions[rows])  # Eq. 15
        optimise(self.mdn_optimiser, loss)
        return {"mdn_nll": loss.detach()}

    @torch.no_grad()
    def held_out_loss(self, buffer: Buffer) -> torch.Tensor | None:
        if len(self.held_out_rows) == 0:
            return None
        rows = self.held_out_rows.split(TABLE_CHUNK)
        total = sum(-self.behaviour_mdn(buffer.observations[r]).log_prob(buffer.actions[r]).sum() for r in rows)
        return total / len(self.held_out_rows)

    def pretrained_modules(self):
        return {"behaviour_mdn": self.behaviour_mdn}

    def pretrain_signature(self) -> dict:
        s = self.settings
        return {"num_mixtures": s.num_mixtures, "gmm_steps": s.gmm_steps, "gmm_batch_size": s.gmm_batch_size,
                "gmm_lr": s.gmm_lr, "mdn_hidden": s.mdn_hidden, "gmm_holdout": s.gmm_holdout,
                "gmm_check_every": s.gmm_check_every, "gmm_patience": s.gmm_patience, "mdn_init": s.mdn_init}

    @torch.no_grad()
    def finish_pretraining(self, buffer: Buffer) -> None:
        """Freeze the MDN and evaluate it once at every dataset state: it never changes again."""
        self.behaviour_mdn.requires_grad_(False)
        mixtures = [self.behaviour_mdn(states) for states in buffer.observations.split(TABLE_CHUNK)]
        self.component_means = torch.cat([m.means for m in mixtures])
        self.component_stds = torch.cat([m.stds for m in mixtures])
        self.component_weights = torch.cat([m.logits.softmax(dim=-1) for m in mixtures])

    def components_at(self, rows: torch.Tensor) -> GaussianMixture:
        """The frozen MDN's components at dataset rows (their mixing weights: `component_weights`)."""
        return GaussianMixture(logits=None, means=self.component_means[rows], stds=self.component_stds[rows])

    # ---- 2. value and hyper Q --------------------------------------------------------------------
    def value_loss(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """SARSA TD error on the dataset's own next action, with target smoothing (Eq. 16)."""
        s = self.settings
        with torch.no_grad():
            next_actions = buffer.next_actions[rows]
            noise = (s.smooth_noise * torch.randn_like(next_actions)).clamp(-s.noise_clip, s.noise_clip)
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            next_q = self.critic_target(buffer.next_observations[rows], next_actions).min(dim=0).values
            target = td_target(buffer.rewards[rows], buffer.terminals[rows], next_q, self.discount)
        return ensemble_mse(self.critic(buffer.observations[rows], buffer.actions[rows]), target)

    def hyper_q_loss(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """Q_phi(s, u) regresses Q_1(s, a_u), a_u ~ component u, for every u at once (Eq. 17)."""
        states = buffer.observations[rows]                                 # (B, obs)
        with torch.no_grad():
            component_actions = self.components_at(rows).sample_components()  # (B, M, A)
            repeated_states = states.unsqueeze(1).expand(-1, component_actions.shape[1], -1)
            target = self.critic.first(repeated_states, component_actions)  # (B, M)
        return F.mse_loss(self.hyper_q(states), target)

    # ---- 3. mode selection and weighted imitation ------------------------------------------------
    def select_mode(self, states: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The greedy hyper-policy u* = argmax_u Q_phi(s, u) (Eq. 7): (B,).

        With `mode_min_weight` > 0 only components carrying that much of the behaviour mixture at s compete:
        a component with almost no weight models no data, and its samples are actions the data never took
        (`weights`: the mixing weights at `states`, computed from the MDN when not given)."""
        values = self.hyper_q(states)
        threshold = self.settings.mode_min_weight
        if threshold > 0:
            if weights is None:
                weights = self.behaviour_mdn(states).logits.softmax(dim=-1)
            eligible = weights >= weights.max(dim=-1, keepdim=True).values.clamp(max=threshold)
            values = values.masked_fill(~eligible, -torch.inf)
        return values.argmax(dim=-1)

    def advantage_weight(self, advantage: torch.Tensor) -> torch.Tensor:
        """exp(beta*A) (released code) or exp(A/beta) (paper), clipped to (0, C]."""
        s = self.settings
        exponent = s.beta * advantage if s.policy_loss == "mse" else advantage / s.beta
        return exp_clip_weight(exponent, s.C)

    def policy_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Advantage-weighted imitation of actions drawn from the selected component (Eq. 18)."""
        s = self.settings
        states = buffer.observations[rows]
        policy_actions = self.policy.act(states)
        with torch.no_grad():
            components = self.components_at(rows)
            chosen = self.select_mode(states, self.component_weights[rows])
            batch = torch.arange(len(rows), device=rows.device)
            mode_mean, mode_std = components.means[batch, chosen], components.stds[batch, chosen]
            imitated = (mode_mean + mode_std * torch.randn_like(mode_mean)).clamp(-1.0, 1.0)
            imitated = imitated + s.ac_rand * torch.randn_like(imitated)
            baseline_action = policy_actions if s.adv_baseline == "policy" else mode_mean
            advantage = self.critic.first(states, imitated) - self.critic.first(states, baseline_action)
            weight = self.advantage_weight(advantage)
        if s.policy_loss == "mse":
            loss = (weight * (policy_actions - imitated).square().mean(dim=-1)).mean()
        else:
            loss = -(weight * self.policy.log_prob(states, imitated)).mean()
        return loss, {"advantage": advantage.mean(), "weight": weight.mean(),
                      "weight_clipped": (weight >= s.C).float().mean()}

    # ---- one step of Algorithm 1's main loop ---------------------------------------------------
    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        s = self.settings
        value_loss = self.value_loss(buffer, buffer.sample_td_indices(s.value_batch_size))
        optimise(self.critic_optimiser, value_loss)
        hyper_q_loss = self.hyper_q_loss(buffer, buffer.sample_indices(s.hyper_batch_size))
        optimise(self.hyper_q_optimiser, hyper_q_loss)
        policy_loss, policy_metrics = self.policy_loss(buffer, buffer.sample_indices(s.policy_batch_size))
        optimise(self.policy_optimiser, policy_loss)
        if step_index % s.target_update_every == 0:
            soft_update(self.critic_target, self.critic, s.tau)
        return {"value_loss": value_loss.detach(), "hyper_q_loss": hyper_q_loss.detach(),
                "policy_loss": policy_loss.detach(), **policy_metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.policy.act(states)
