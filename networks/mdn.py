"""The mixture density network that models the behaviour policy as a state-conditioned GMM (paper Sec. 5.1)."""

import math
from dataclasses import dataclass

import torch
from torch import nn

from networks.mlp import mlp

MEAN_LIMIT = 0.9999
MDN_INITS = ("plain", "spread")
SPREAD_RANGE = 0.8  # spread initial means: uniform in [-0.8, 0.8] per action dimension
SPREAD_WEIGHT_SCALE = 0.1  # and the means' output weights shrunk by this, so the spread holds at every state
LOG_STD_MIN, LOG_STD_MAX = -15.0, 0.0
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class GaussianMixture:
    """Per-state mixture parameters: logits (B, M), means (B, M, A), stds (B, M, A). Without logits
    (None) it holds the components alone, which is all LOM needs once the MDN is frozen."""

    logits: torch.Tensor | None
    means: torch.Tensor
    stds: torch.Tensor

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log pi_b(a | s) = logsumexp_i(log alpha_i + sum_d log N(a_d; mu_id, sigma_id)) (Eq. 2, 14): (B,)."""
        z = (actions.unsqueeze(1) - self.means) / self.stds
        component_log_prob = (-0.5 * z.square() - self.stds.log() - LOG_SQRT_2PI).sum(-1)
        return torch.logsumexp(torch.log_softmax(self.logits, dim=-1) + component_log_prob, dim=-1)

    def sample_components(self) -> torch.Tensor:
        """One action from every component: a_u ~ N(mu_u, sigma_u), shape (B, M, A)."""
        return self.means + self.stds * torch.randn_like(self.means)

    def most_likely_mean(self) -> torch.Tensor:
        """The mean of the component with the largest mixing weight at each state: (B, A)."""
        chosen = self.logits.argmax(dim=-1)
        return self.means[torch.arange(len(chosen), device=chosen.device), chosen]


class MixtureDensityNetwork(nn.Module):
    """state -> hidden -> (M*A means, M*A log-stds, M logits)."""

    def __init__(self, obs_dim: int, act_dim: int, num_components: int, hidden: tuple[int, ...],
                 init: str = "plain"):
        super().__init__()
        self.act_dim, self.num_components = act_dim, num_components
        self.body = mlp(obs_dim, hidden, num_components * (2 * act_dim + 1))
        if init == "spread":
            self.spread_initial_means()

    @torch.no_grad()
    def spread_initial_means(self) -> None:
        """Start every component at its own action, the same at every state: the means' output biases drawn
        uniformly over most of the action box and their weights shrunk. A plain initialisation starts all
        means near 0, and the component that first covers the data's modes can keep them all, one broad
        Gaussian over several modes (mode collapse); spread starts give each mode a nearby component."""
        means = slice(0, self.num_components * self.act_dim)
        output = self.body[-1]
        output.weight[means] *= SPREAD_WEIGHT_SCALE
        output.bias[means] = torch.atanh(torch.empty_like(output.bias[means]).uniform_(-SPREAD_RANGE, SPREAD_RANGE))

    def forward(self, states: torch.Tensor) -> GaussianMixture:
        m, a = self.num_components, self.act_dim
        out = self.body(states)
        means = torch.tanh(out[:, : m * a]).clamp(-MEAN_LIMIT, MEAN_LIMIT).view(-1, m, a)
        log_stds = out[:, m * a : 2 * m * a].clamp(LOG_STD_MIN, LOG_STD_MAX).view(-1, m, a)
        logits = out[:, 2 * m * a :]
        return GaussianMixture(logits=logits, means=means, stds=log_stds.exp())

    def nll(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the behaviour actions (Eq. 15)."""
        return -self(states).log_prob(actions).mean()
