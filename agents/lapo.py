"""LAPO: latent-variable advantage-weighted policy optimisation (Chen, Ghadirzadeh, Yu, Wang, Gao, Li, Bin, Finn &
Zhang, NeurIPS 2022, arXiv 2203.08949), as the authors' released code implements it (pcchenxi/LAPO-offlienRL,
`algos/algos_vae.py`, `Latent.train`).

1. A critic module learns twin Q(s, a) and V(s): Q regresses r + gamma * V(s'); V regresses the target twin Q
   at the action the target latent policy decodes to, clipped to the range of possible returns.
2. A conditional VAE models the dataset's actions, each pair weighted by an expectile indicator of its
   advantage (0.9 if A > 0, else 0.1): the decoder covers the data's modes, the well-rewarded ones most.
3. A deterministic latent policy z = pi(s) maximises Q_1(s, D'(s, pi(s))) through the frozen target decoder:
   the policy chooses among the actions the decoder can produce, so it stays on the data's support.
Acting decodes pi(s) with the target decoder. Actions are z-scored inside the agent, rewards divided by their
maximum; both are settings, the original's choice the default (docs/algorithms/lapo.md).
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from agents.base import Agent, AgentSettings, adam, optimise
from networks.critics import CriticEnsemble, StateValue, ensemble_mse, frozen, soft_update, target_copy
from networks.cvae import ConditionalVAE, weighted_cvae_loss
from networks.losses import expectile_weight, td_target
from networks.policies import DeterministicPolicy
from utils.buffer import Buffer
from utils.errors import UserInputError
from utils.settings import setting

NUM_CRITICS = 2
NUM_HIDDEN_LAYERS = 3  # the released code's networks are all 256-256-256
ACTION_STD_FLOOR = 1e-6  # the released code's epsilon on the action std


@dataclass
class LAPOSettings(AgentSettings):
    expectile: float = setting(0.9, "CVAE weight of a pair with positive advantage; 1 - expectile otherwise",
                               at_least=0, at_most=1)
    kl_beta: float = setting(1.0, "weight of the KL term in the CVAE loss", at_least=0)
    max_latent_action: float = setting(2.0, "the latent policy's output is max_latent_action * tanh(.)", above=0)
    doubleq_min: float = setting(1.0, "target Q = doubleq_min * min(Q1, Q2) + (1 - doubleq_min) * max(Q1, Q2)",
                                 at_least=0, at_most=1)
    target_noise: float = setting(0.1, "std of the Gaussian noise on the target latent action in V's target",
                                  at_least=0)
    target_noise_clip: float = setting(0.2, "that noise is clipped to [-target_noise_clip, target_noise_clip]",
                                       at_least=0)
    latent_dim: int = setting(0, "dimension of the CVAE's latent space; 0: twice the action dimension",
                              at_least=0, at_most=4096)  # 1000x the largest D4RL MuJoCo action dimension
    batch_size: int = setting(512, "batch size of every update (one batch a step)", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    vae_lr: float = setting(2e-4, "learning rate of the CVAE", above=0)
    actor_lr: float = setting(2e-4, "learning rate of the latent policy", above=0)
    critic_lr: float = setting(2e-4, "learning rate of the critic module (twin Q and V)", above=0)
    tau: float = setting(0.005, "Polyak coefficient of the target critic, latent policy and CVAE decoder "
                         "(every step)", above=0, at_most=1)
    hidden: int = setting(256, "width of the three hidden layers of every network", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam
    normalise_actions: bool = setting(True, "1: z-score actions with the dataset's mean and std (+1e-6) and act "
                                      "in that space; 0: raw actions")
    reward_scale: str = setting("max", "max: divide rewards by their maximum; none: raw rewards", ("max", "none"))

    def check(self, run) -> None:
        if run.discount >= 1:
            raise UserInputError("LAPO bounds V by min(r) / (1 - gamma) and max(r) / (1 - gamma): "
                                 "give --discount below 1")


class LAPO(Agent):
    Settings = LAPOSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: LAPOSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden,) * NUM_HIDDEN_LAYERS
        self.latent_dim = s.latent_dim or 2 * act_dim
        self.critic = CriticEnsemble(obs_dim, act_dim, NUM_CRITICS, hidden)
        self.value = StateValue(obs_dim, hidden)
        self.cvae = ConditionalVAE(obs_dim, act_dim, self.latent_dim, hidden, tanh_output=False)
        self.latent_policy = DeterministicPolicy(obs_dim, self.latent_dim, hidden)
        # Targets; the CVAE's encoder has none because only the target decoder is ever read.
        self.critic_target = target_copy(self.critic)
        self.latent_policy_target = target_copy(self.latent_policy)
        self.decoder_target = target_copy(self.cvae.decoder)
        self.critic_optimiser = adam([*self.critic.parameters(), *self.value.parameters()], s.critic_lr)
        self.cvae_optimiser = adam(self.cvae.parameters(), s.vae_lr)
        self.latent_policy_optimiser = adam(self.latent_policy.parameters(), s.actor_lr)
        # Computed from the data by finish_pretraining; the identity until then.
        self.register_buffer("action_mean", torch.zeros(act_dim), persistent=False)
        self.register_buffer("action_std", torch.ones(act_dim), persistent=False)
        self.reward_scale, self.v_min, self.v_max = 1.0, -torch.inf, torch.inf

    # ---- preprocessing, once from the data -------------------------------------------------------
    @torch.no_grad()
    def finish_pretraining(self, buffer: Buffer) -> None:
        """Action statistics, the reward scale 1 / max(r) and the value range [min(r), max(r)] / (1 - gamma)."""
        s = self.settings
        if s.normalise_actions:
            self.action_mean = buffer.actions.mean(dim=0)
            self.action_std = buffer.actions.std(dim=0, correction=0) + ACTION_STD_FLOOR
        low, high = buffer.rewards.min().item(), buffer.rewards.max().item()
        if s.reward_scale == "max":
            self.reward_scale = 1.0 / high  # check_data made sure it is positive
        self.v_min = self.reward_scale * low / (1.0 - self.discount)
        self.v_max = self.reward_scale * high / (1.0 - self.discount)

    def check_data(self, buffer: Buffer) -> None:
        high = buffer.rewards.max().item()
        if self.settings.reward_scale == "max" and high <= 0:
            raise UserInputError(f"--reward_scale max divides rewards by their maximum, but every reward is "
                                 f"<= 0 (the largest is {high:g}); use --reward_scale none")

    def normalise_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    def unnormalise_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.action_std + self.action_mean

    # ---- shared pieces -----------------------------------------------------------------------------
    def latent_action(self, policy: DeterministicPolicy, states: torch.Tensor) -> torch.Tensor:
        """z = max_latent_action * tanh(MLP(s))."""
        return self.settings.max_latent_action * policy(states)

    def mixed_q(self, q_values: torch.Tensor) -> torch.Tensor:
        """doubleq_min * min(Q1, Q2) + (1 - doubleq_min) * max(Q1, Q2), from (2, B) to (B,)."""
        w = self.settings.doubleq_min
        low, high = q_values.aminmax(dim=0)
        return w * low + (1.0 - w) * high

    @torch.no_grad()
    def target_policy_values(self, states: torch.Tensor, next_states: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Qmix'(s, D'(s, pi'(s) + noise)), the regression target of V before clipping, and
        Qmix'(s', D'(s', pi'(s'))), which the advantage bootstraps from: (B,), (B,). The target networks do not
        change within a step, so both come from one pass over the 2B states."""
        s, batch = self.settings, len(states)
        both = torch.cat([states, next_states])
        latents = self.latent_action(self.latent_policy_target, both)
        noise = (s.target_noise * torch.randn_like(latents[:batch])).clamp(-s.target_noise_clip,
                                                                            s.target_noise_clip)
        latents = torch.cat([latents[:batch] + noise, latents[batch:]])  # noise on the V target only
        values = self.mixed_q(self.critic_target(both, self.decoder_target(both, latents)))
        return values[:batch], values[batch:]

    # ---- 1. the critic module: twin Q and V --------------------------------------------------------
    def critic_loss(self, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                    terminals: torch.Tensor, next_states: torch.Tensor, target_value: torch.Tensor
                    ) -> tuple[torch.Tensor, dict]:
        """sum_k MSE(Q_k(s, a), r + gamma (1 - d) V(s')) + MSE(V(s), clip(target_value, V_min, V_max)); the Q
        target reads the online V, without a gradient."""
        with torch.no_grad():
            q_target = td_target(rewards, terminals, self.value(next_states), self.discount)
        q_loss = ensemble_mse(self.critic(states, actions), q_target)
        v_loss = F.mse_loss(self.value(states), target_value.clamp(self.v_min, self.v_max))
        return q_loss + v_loss, {"q_loss": q_loss.detach(), "v_loss": v_loss.detach()}

    # ---- 2. advantage-weighted CVAE ----------------------------------------------------------------
    @torch.no_grad()
    def advantage(self, states: torch.Tensor, rewards: torch.Tensor, terminals: torch.Tensor,
                  next_q: torch.Tensor) -> torch.Tensor:
        """A(s, a) = r + gamma (1 - d) Qmix'(s', D'(s', pi'(s'))) - V(s), V after this step's critic update."""
        return td_target(rewards, terminals, next_q, self.discount) - self.value(states)

    def advantage_weight(self, advantage: torch.Tensor) -> torch.Tensor:
        """w = expectile if A > 0 else 1 - expectile: an indicator of the advantage's sign, not exp(A)."""
        return expectile_weight(advantage, self.settings.expectile)

    def cvae_loss(self, states: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor
                  ) -> tuple[torch.Tensor, dict]:
        """mean_B w * (||D(s, z) - a||^2 + kl_beta * KL(q(z | s, a) || N(0, I))), z ~ q(z | s, a); w fixed."""
        return weighted_cvae_loss(self.cvae, states, actions, weights, self.settings.kl_beta)

    # ---- 3. latent policy ----------------------------------------------------------------------------
    def latent_policy_loss(self, states: torch.Tensor) -> torch.Tensor:
        """-mean_B Q_1(s, D'(s, pi(s))): gradients reach pi through the frozen target decoder."""
        actions = self.decoder_target(states, self.latent_action(self.latent_policy, states))
        return -self.critic.first(states, actions).mean()

    # ---- one step, in the released code's order ----------------------------------------------------
    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        s = self.settings
        rows = buffer.sample_td_indices(s.batch_size)
        states, next_states = buffer.observations[rows], buffer.next_observations[rows]
        actions = self.normalise_actions(buffer.actions[rows])
        rewards, terminals = self.reward_scale * buffer.rewards[rows], buffer.terminals[rows]

        target_value, next_q = self.target_policy_values(states, next_states)
        critic_loss, critic_metrics = self.critic_loss(states, actions, rewards, terminals, next_states,
                                                       target_value)
        optimise(self.critic_optimiser, critic_loss)

        advantage = self.advantage(states, rewards, terminals, next_q)
        weights = self.advantage_weight(advantage)
        cvae_loss, cvae_metrics = self.cvae_loss(states, actions, weights)
        optimise(self.cvae_optimiser, cvae_loss)

        # The policy's gradient passes through Q_1 to its input; the critic's own weights need none.
        with frozen(self.critic):
            policy_loss = self.latent_policy_loss(states)
            optimise(self.latent_policy_optimiser, policy_loss)

        soft_update(self.critic_target, self.critic, s.tau)
        soft_update(self.latent_policy_target, self.latent_policy, s.tau)
        soft_update(self.decoder_target, self.cvae.decoder, s.tau)
        return {"critic_loss": critic_loss.detach(), **critic_metrics, "cvae_loss": cvae_loss.detach(),
                **cvae_metrics, "advantage": advantage.mean(),
                "advantage_positive": (advantage > 0).float().mean(), "policy_loss": policy_loss.detach()}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        """D'(s, pi(s)) back in the dataset's action units, clipped to [-1, 1]."""
        actions = self.decoder_target(states, self.latent_action(self.latent_policy, states))
        return self.unnormalise_actions(actions).clamp(-1.0, 1.0)
