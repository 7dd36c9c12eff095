"""DMPO: deterministic mixture policy optimisation (Osa, Hayashi, Deo, Morihira & Yoshiike, "Offline Reinforcement
Learning with Mixture of Deterministic Policies", TMLR 2023, https://openreview.net/forum?id=zkRCp4RmAF).

The policy is K deterministic sub-policies mu(s, z) in one network, z one of K one-hot latents; a posterior
q(z | s, a) assigns each dataset pair to a latent, so each sub-policy imitates one region of the data.
1. Twin critics learn Q of the mixture as in TD3: the target bootstraps at the best latent's target action,
   smoothed with clipped noise.
2. Every `policy_freq` steps the actor and the posterior minimise an advantage-weighted variational objective:
   the weighted squared error of mu(s, z~) to the data action, z~ a Gumbel-softmax sample of q(z | s, a), plus
   the weighted KL from q(z | s, a) to a prior that is the softmax over latents of Q(s, mu(s, z)).
3. Acting picks z* = argmax_z min(Q1, Q2)(s, mu(s, z)) and returns mu(s, z*), so the policy acts on one mode.
Every "for all latents" is one batched pass over K x B rows. The optional mutual-information term (`info_reg`)
asks a second posterior to recover z from mu(s, z). docs/algorithms/dmpo.md says which released-code behaviours
are kept and which are behind flags.
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from agents.base import Agent, adam, optimise
from agents.twin_critics import SmoothedTargetSettings, TwinCriticTD
from networks.critics import CriticEnsemble, soft_update, target_copy
from networks.latent import LatentDeterministicPolicy, LatentPosterior, gumbel_noise, gumbel_softmax
from networks.losses import batch_range_exp_weight, exp_clip_weight, target_policy_smoothing
from utils.buffer import Buffer
from utils.errors import UserInputError
from utils.settings import setting

NUM_CRITICS = 2
CLIPPED_WEIGHT_MAX = 100.0  # the released code's ceiling for the clipped weight
KL_EPS = 1e-12  # inside the KL's logarithms, as released: a latent of probability 0 adds 0, not NaN


@dataclass
class DMPOSettings(SmoothedTargetSettings):
    num_latents: int = setting(8, "K, the number of one-hot latents (deterministic sub-policies)", at_least=1,
                               at_most=1024)
    latent_embedding: int = setting(0, "width of the actor's embedding of z (0: the state's dimension, as "
                                    "released)", at_least=0, at_most=8192)
    temperature: float = setting(0.67, "temperature of the Gumbel-softmax sample of q(z | s, a)", above=0)
    scale: float = setting(10.0, "sharpness of the advantage weight (10 for MuJoCo v2, 5 for antmaze in the "
                           "released README; 0: every weight 1)", at_least=0)
    weight: str = setting("normalised", "the advantage weight: normalised (exp of the batch's min-max-rescaled "
                          "advantage, divided by its batch mean, as released) or clipped (min(exp(scale * A), "
                          "100))", choices=("normalised", "clipped"))
    kl_weight: float = setting(1.0, "beta, the weight of the KL from q(z | s, a) to the Q-softmax prior",
                               at_least=0)
    actor_lr: float = setting(3e-4, "learning rate of the actor and the posterior (one Adam)", above=0)
    info_reg: bool = setting(False, "add the mutual-information term: a second posterior learns to recover z "
                             "from mu(s, z), and its cross-entropy also trains the actor")
    info_lr: float = setting(5e-7, "learning rate of the mutual-information step (actor and second "
                             "posterior)", above=0)
    info_reg_released: bool = setting(False, "the released code's mutual-information term: labels drawn from "
                                      "the first K-1 latents only, and the cross-entropy applied to "
                                      "probabilities instead of logits")

    def check(self, run) -> None:
        if self.info_reg_released and not self.info_reg:
            raise UserInputError("--info_reg_released changes the mutual-information term, which is off: "
                                 "add --info_reg 1, or drop --info_reg_released")


class DMPO(TwinCriticTD, Agent):
    Settings = DMPOSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: DMPOSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden, settings.hidden)
        self.actor = LatentDeterministicPolicy(obs_dim, act_dim, s.num_latents, hidden, s.latent_embedding or None)
        self.actor_target = target_copy(self.actor)
        self.posterior = LatentPosterior(obs_dim, act_dim, s.num_latents, hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, NUM_CRITICS, hidden)
        self.critic_target = target_copy(self.critic)
        self.critic_optimiser = adam(self.critic.parameters(), s.critic_lr)
        self.actor_optimiser = adam([*self.posterior.parameters(), *self.actor.parameters()], s.actor_lr)
        if s.info_reg:
            self.info_posterior = LatentPosterior(obs_dim, act_dim, s.num_latents, hidden)
            self.info_optimiser = adam([*self.actor.parameters(), *self.info_posterior.parameters()], s.info_lr)

    # ---- the latent choice: all K sub-policies in one pass -------------------------------------------
    @torch.no_grad()
    def latent_values(self, states: torch.Tensor, actor: LatentDeterministicPolicy
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """min(Q1, Q2)(s, mu(s, e_k)) for every latent k with the online critics, and the actions themselves:
        (K, B), (K, B, A), from one pass of the actor and one of the critics over K x B rows."""
        actions = actor.every_latent(states)
        k, batch = actions.shape[:2]
        tiled_states = states.expand(k, *states.shape).reshape(k * batch, -1)
        values = self.critic(tiled_states, actions.reshape(k * batch, -1)).min(dim=0).values
        return values.view(k, batch), actions

    @torch.no_grad()
    def best_latent(self, states: torch.Tensor, actor: LatentDeterministicPolicy
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z* = argmax_k min(Q1, Q2)(s, mu(s, e_k)): its index (B,), its value (B,) and its action (B, A)."""
        values, actions = self.latent_values(states, actor)
        best_value, best = values.max(dim=0)
        return best, best_value, actions[best, torch.arange(states.shape[0], device=states.device)]

    # ---- 1. the critics: TD3 at the best latent of the target actor (TwinCriticTD.critic_loss) -----------
    @torch.no_grad()
    def next_action(self, next_states: torch.Tensor) -> torch.Tensor:
        """clip(mu'(s', z'*) + clip(sigma * N(0, I), -c, c), -1, 1), z'* chosen by the online critics among the
        target actor's sub-policies (as released). (B, A)."""
        s = self.settings
        _, _, action = self.best_latent(next_states, self.actor_target)
        return target_policy_smoothing(action, s.policy_noise, s.noise_clip)

    # ---- 2. the actor and the posterior: advantage-weighted variational objective -----------------------
    @torch.no_grad()
    def advantage(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """A(s, a) = min(Q1, Q2)(s, a) - max_k min(Q1, Q2)(s, mu'(s, e_k)): the data action against the target
        actor's best sub-policy, all with the online critics (as released). (B,)."""
        _, best_value, _ = self.best_latent(states, self.actor_target)
        return self.critic(states, actions).min(dim=0).values - best_value

    def advantage_weight(self, advantage: torch.Tensor) -> torch.Tensor:
        """W(s, a): `normalised` divides the min-max-rescaled exponential by its batch mean (so the weights
        average 1); `clipped` is min(exp(scale * A), 100)."""
        s = self.settings
        if s.weight == "clipped":
            return exp_clip_weight(s.scale * advantage, CLIPPED_WEIGHT_MAX)
        weight = batch_range_exp_weight(advantage, s.scale)
        return weight / weight.mean()

    @torch.no_grad()
    def latent_prior(self, states: torch.Tensor) -> torch.Tensor:
        """p(z | s) = softmax_k min(Q1, Q2)(s, mu(s, e_k)) with the online actor, temperature 1: (B, K)."""
        values, _ = self.latent_values(states, self.actor)
        return F.softmax(values.T, dim=-1)

    def relaxed_latent(self, probabilities: torch.Tensor) -> torch.Tensor:
        """z~ ~ Gumbel-softmax(q(z | s, a), temperature): (B, K)."""
        noise = gumbel_noise(probabilities.shape, probabilities.device, probabilities.dtype)
        return gumbel_softmax(probabilities, self.settings.temperature, noise)

    def reconstruction_loss(self, states: torch.Tensor, actions: torch.Tensor, latents: torch.Tensor,
                            weight: torch.Tensor) -> torch.Tensor:
        """sum over action dimensions of the weighted squared error W * (mu(s, z~) - a)^2, averaged over the
        batch: the log-likelihood of a fixed-variance Gaussian around the sub-policy, up to constants."""
        return (weight * (self.actor(states, latents) - actions).square().sum(-1)).mean()

    @staticmethod
    def weighted_kl(posterior: torch.Tensor, prior: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """mean over the batch of W * KL(q(z | s, a) || p(z | s))."""
        kl = (posterior * ((posterior + KL_EPS).log() - (prior + KL_EPS).log())).sum(-1)
        return (weight * kl).mean()

    def actor_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """reconstruction + beta * weighted KL, with the weights and the prior held fixed."""
        states, actions = buffer.observations[rows], buffer.actions[rows]
        advantage = self.advantage(states, actions)
        weight = self.advantage_weight(advantage)
        posterior = self.posterior(states, actions)
        reconstruction = self.reconstruction_loss(states, actions, self.relaxed_latent(posterior), weight)
        kl = self.weighted_kl(posterior, self.latent_prior(states), weight)
        assigned = F.one_hot(posterior.argmax(dim=-1), self.settings.num_latents).amax(dim=0).sum()
        return reconstruction + self.settings.kl_weight * kl, {
            "reconstruction": reconstruction.detach(), "kl": kl.detach(), "advantage": advantage.mean(),
            "weight_max": weight.max(), "latents_assigned": assigned.float()}

    def info_loss(self, states: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the second posterior recovering a random latent y from the action mu(s, e_y): a
        lower bound on the mutual information between z and the action, up to a constant."""
        s = self.settings
        k = s.num_latents
        labels = torch.randint(0, k - 1 if s.info_reg_released else k, (states.shape[0],), device=states.device)
        actions = self.actor(states, F.one_hot(labels, k).to(states.dtype))
        if s.info_reg_released:
            return F.cross_entropy(self.info_posterior(states, actions), labels)
        return F.nll_loss(self.info_posterior.log_probabilities(states, actions), labels)

    # ---- the policy step: TwinCriticTD.update runs the critic step and calls this ------------------------
    def policy_step(self, buffer: Buffer, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """With `info_reg`, first one step of the mutual-information term (as released); then one step of the
        actor and the posterior on actor_loss, and the target actor follows by Polyak averaging."""
        metrics = {}
        if self.settings.info_reg:
            info_loss = self.info_loss(buffer.observations[rows])
            optimise(self.info_optimiser, info_loss)
            metrics["info_loss"] = info_loss.detach()
        actor_loss, actor_metrics = self.actor_loss(buffer, rows)
        optimise(self.actor_optimiser, actor_loss)
        soft_update(self.actor_target, self.actor, self.settings.tau)
        return metrics | {"actor_loss": actor_loss.detach(), **actor_metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        """mu(s, z*) with z* the best latent of the online actor under the online critics."""
        return self.best_latent(states, self.actor)[2]
