"""OneStep RL: one step of regularised policy improvement on the behaviour policy's own Q (Brandfonbrener,
Whitney, Ranganath & Bruna, "Offline RL Without Off-Policy Evaluation", NeurIPS 2021, arXiv 2106.08909,
Algorithm 1 with a single iteration).

1. Fit the behaviour policy beta^ by maximum likelihood.
2. Evaluate it: learn Q^beta by SARSA, bootstrapping from the dataset's own next action, so no action the data
   never took is ever queried (policy evaluation without off-policy evaluation).
3. Improve once: train pi against the frozen Q^beta with one regularised operator, reverse KL to beta^ or
   exponentially weighted imitation, starting from beta^'s weights.

Stages 1 and 2 do not depend on pi, so they are this agent's pretraining (cached: a sweep over the improvement
operator reuses them, as the paper's design intends); stage 3 is the main loop. Defaults follow the authors'
released code (davidbrandfonbrener/onestep-rl); docs/algorithms/onestep.md lists where it and the paper differ.
"""

from dataclasses import dataclass

import torch

from agents.base import Agent, AgentSettings, adam, optimise
from networks.critics import CriticEnsemble, ensemble_mse, soft_update, target_copy
from networks.losses import exp_clip_weight, td_target
from networks.policies import SoftClampedGaussianPolicy, TruncatedGaussianPolicy
from utils.buffer import Buffer
from utils.settings import setting

# Dataset actions are pulled this far inside [-1, 1] before pi's log-likelihood, as the released code does for
# every distribution (`stable_action`): an action on the box's edge is on the boundary of a bounded support.
ACTION_MARGIN = 1e-4
POLICY_DISTRIBUTIONS = {"normal": SoftClampedGaussianPolicy, "truncated": TruncatedGaussianPolicy}


@dataclass
class OneStepSettings(AgentSettings):
    improvement: str = setting("reverse_kl", "the policy-improvement operator of stage 3: reverse_kl, "
                               "max E[Q(s, a~pi)] - alpha KL(pi || beta^); exp_weight, imitate dataset actions "
                               "weighted by exp(temperature * advantage)", ("reverse_kl", "exp_weight"))
    alpha: float = setting(1.0, "reverse_kl: weight of the KL(pi || beta^) penalty; 0: maximise Q alone",
                           at_least=0)
    temperature: float = setting(0.01, "exp_weight: inverse temperature tau of the weight exp(tau * A); "
                                 "0: plain behaviour cloning", at_least=0)
    max_weight: float = setting(100.0, "exp_weight: upper clip of the weight", above=0)
    num_action_samples: int = setting(10, "actions sampled per state for the KL estimate (reverse_kl) and for "
                                      "the baseline b(s) = mean Q(s, a~beta^) (exp_weight)", at_least=1,
                                      at_most=1000)  # each sample is one more batch through a network
    policy_distribution: str = setting(
        "normal", "pi's distribution in stage 3: normal, the Gaussian beta^ uses (what the released code runs: "
        "it copies beta^'s network, distribution included); truncated, that Gaussian truncated to [-1, 1] "
        "(the released code's configured pi)", tuple(POLICY_DISTRIBUTIONS))
    behaviour_steps: int = setting(500_000, "stage 1: gradient steps of the behaviour model beta^", at_least=1)
    sarsa_steps: int = setting(2_000_000, "stage 2: gradient steps of Q^beta by SARSA", at_least=1)
    pretrain_check_every: int = setting(2000, "stages 1 and 2: steps between logged losses (there is no "
                                        "held-out check: each stage trains a fixed number of steps)", at_least=1)
    pretrain_batch_size: int = setting(512, "batch size of stages 1 and 2", at_least=1,
                                       at_most=1_000_000)  # half of D4RL's largest set; 1M x 1024 floats: 4 GB a layer
    policy_batch_size: int = setting(512, "batch size of stage 3", at_least=1,
                                     at_most=1_000_000)  # half of D4RL's largest set; 1M x 1024 floats: 4 GB a layer
    behaviour_lr: float = setting(1e-4, "Adam learning rate of beta^", above=0, at_most=1)
    critic_lr: float = setting(1e-4, "Adam learning rate of Q^beta", above=0, at_most=1)
    policy_lr: float = setting(1e-4, "Adam learning rate of pi", above=0, at_most=1)
    tau: float = setting(0.005, "Polyak coefficient of Q's target", above=0, at_most=1)
    target_update_every: int = setting(2, "SARSA steps between Polyak updates of Q's target", at_least=1)
    hidden: int = setting(1024, "width of the two hidden layers of beta^, Q and pi", at_least=1,
                          at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights, x4 with Adam


class OneStep(Agent):
    Settings = OneStepSettings
    # The released code trains on raw states, and its stage 3 runs 1e5 steps.
    run_defaults = {"normalise": False, "training_steps": 100_000}

    def __init__(self, obs_dim: int, act_dim: int, settings: OneStepSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, hidden = settings, (settings.hidden, settings.hidden)
        self.behaviour = SoftClampedGaussianPolicy(obs_dim, act_dim, hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, 1, hidden)
        self.critic_target = target_copy(self.critic)
        self.policy = POLICY_DISTRIBUTIONS[s.policy_distribution](obs_dim, act_dim, hidden)
        self.behaviour_optimiser = adam(self.behaviour.parameters(), s.behaviour_lr)
        self.critic_optimiser = adam(self.critic.parameters(), s.critic_lr)
        self.policy_optimiser = adam(self.policy.parameters(), s.policy_lr)
        self.pretrain_steps = s.behaviour_steps + s.sarsa_steps
        self.pretrain_check_every = s.pretrain_check_every
        self.pretrain_calls = 0
        # Saved with the agent: once pi starts from beta^, a restored checkpoint must not start it again.
        self.register_buffer("policy_initialised", torch.tensor(False))

    # ---- stages 1 and 2, run by the trainer's pretraining ------------------------------------------
    def start_pretraining(self, buffer: Buffer) -> None:
        self.pretrain_calls = 0  # an interrupted pretraining starts again from its first step

    def pretrain_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        """Stage 1 for the first behaviour_steps calls, then stage 2."""
        s = self.settings
        self.pretrain_calls += 1
        # Every batch comes from the SARSA transitions, as in the released code, which keeps no others.
        rows = buffer.sample_td_indices(s.pretrain_batch_size)
        if self.pretrain_calls <= s.behaviour_steps:
            loss = self.behaviour_loss(buffer, rows)
            optimise(self.behaviour_optimiser, loss)
            return {"behaviour_nll": loss.detach()}
        loss = self.sarsa_loss(buffer, rows)
        optimise(self.critic_optimiser, loss)
        if (self.pretrain_calls - s.behaviour_steps) % s.target_update_every == 0:
            soft_update(self.critic_target, self.critic, s.tau)
        return {"sarsa_loss": loss.detach()}

    def behaviour_loss(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """-E[log beta^(a | s)] over dataset pairs (stage 1, maximum likelihood)."""
        return -self.behaviour.log_prob(buffer.observations[rows], buffer.actions[rows]).mean()

    def sarsa_loss(self, buffer: Buffer, rows: torch.Tensor) -> torch.Tensor:
        """E[(r + gamma (1 - d) Q'(s', a') - Q(s, a))^2], a' the dataset's next action (stage 2, SARSA)."""
        with torch.no_grad():
            next_q = self.critic_target.first(buffer.next_observations[rows], buffer.next_actions[rows])
            target = td_target(buffer.rewards[rows], buffer.terminals[rows], next_q, self.discount)
        return ensemble_mse(self.critic(buffer.observations[rows], buffer.actions[rows]), target)

    def pretrained_modules(self):
        return {"behaviour": self.behaviour, "critic": self.critic, "critic_target": self.critic_target}

    def pretrain_signature(self) -> dict:
        s = self.settings
        return {"behaviour_steps": s.behaviour_steps, "sarsa_steps": s.sarsa_steps,
                "pretrain_batch_size": s.pretrain_batch_size, "behaviour_lr": s.behaviour_lr,
                "critic_lr": s.critic_lr, "tau": s.tau, "target_update_every": s.target_update_every,
                "hidden": s.hidden, "discount": self.discount}

    @torch.no_grad()
    def finish_pretraining(self, buffer: Buffer) -> None:
        """Freeze beta^ and Q^beta; start pi from beta^'s weights (the released code copies beta^'s network),
        once: after a restore pi keeps its trained weights."""
        self.behaviour.requires_grad_(False)
        self.critic.requires_grad_(False)
        if not self.policy_initialised:
            self.policy.load_state_dict(self.behaviour.state_dict())
            self.policy_initialised.fill_(True)

    # ---- stage 3: one policy-improvement step against the frozen Q^beta -----------------------------
    def reverse_kl_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """E_s[-Q(s, a~) + alpha KL^(pi || beta^)], a~ ~ pi reparameterised; KL^ = the mean over
        num_action_samples further draws a_i ~ pi of log pi(a_i | s) - log beta^(a_i | s)."""
        s = self.settings
        states = buffer.observations[rows]
        mean, std = self.policy(states)
        q = self.critic.first(states, self.policy.rsample(mean, std))
        kl_actions = self.policy.rsample(mean, std, s.num_action_samples)      # (n, B, A)
        log_ratio = (self.policy.log_density(kl_actions, mean, std)
                     - self.behaviour.log_density(kl_actions, *self.behaviour(states)))
        kl = log_ratio.mean(dim=0)
        loss = (-q + s.alpha * kl).mean()
        return loss, {"q_value": q.detach().mean(), "kl": kl.detach().mean()}

    @torch.no_grad()
    def baseline(self, states: torch.Tensor) -> torch.Tensor:
        """b(s) = mean over num_action_samples draws a_i ~ beta^ of Q(s, a_i), an estimate of V^beta(s)."""
        actions = self.behaviour.rsample(*self.behaviour(states), self.settings.num_action_samples)
        return self.critic.first(states.expand(len(actions), *states.shape), actions).mean(dim=0)

    def exp_weight_loss(self, buffer: Buffer, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """-E[min(exp(tau (Q(s, a) - b(s))), max_weight) log pi(a | s)] over dataset pairs, the weights held
        fixed; the actions pulled ACTION_MARGIN inside [-1, 1] for the log-likelihood."""
        s = self.settings
        states, actions = buffer.observations[rows], buffer.actions[rows]
        with torch.no_grad():
            advantage = self.critic.first(states, actions) - self.baseline(states)
            weight = exp_clip_weight(s.temperature * advantage, s.max_weight)
        inside = actions.clamp(-1.0 + ACTION_MARGIN, 1.0 - ACTION_MARGIN)
        loss = -(weight * self.policy.log_prob(states, inside)).mean()
        return loss, {"advantage": advantage.mean(), "weight": weight.mean(),
                      "weight_clipped": (weight >= s.max_weight).float().mean()}

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        s = self.settings
        improvement_loss = self.reverse_kl_loss if s.improvement == "reverse_kl" else self.exp_weight_loss
        loss, metrics = improvement_loss(buffer, buffer.sample_td_indices(s.policy_batch_size))
        optimise(self.policy_optimiser, loss)
        return {"policy_loss": loss.detach(), **metrics}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.policy.act(states)
