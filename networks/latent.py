"""Networks conditioned on a discrete latent z in {e_1, ..., e_K} (one-hot codes, or their relaxations), shared by
DMPO's deterministic sub-policies and mixAWAC's Gaussian components, and the Gumbel-softmax relaxation of a
categorical sample."""

import torch
from torch import nn
from torch.nn import functional as F

from networks.mlp import mlp

# Keeps log(p) and log(-log(u)) finite at p = 0 and u in {0, 1}; the released DMPO code uses the same constant.
GUMBEL_EPS = 1e-12


class LatentConditionedMLP(nn.Module):
    """f(s, z): z is first embedded (Linear + ReLU), then [s, embedding] goes through an MLP. The released DMPO
    code embeds to the state's size (`embedding_dim` None), so the latent enters with as many features as the
    state does; with a 1-D state that is a single ReLU unit."""

    def __init__(self, obs_dim: int, num_latents: int, hidden: tuple[int, ...], out_dim: int,
                 embedding_dim: int | None = None):
        super().__init__()
        self.num_latents = num_latents
        embedding_dim = embedding_dim or obs_dim
        self.embed = nn.Linear(num_latents, embedding_dim)
        self.net = mlp(obs_dim + embedding_dim, hidden, out_dim)

    def forward(self, states: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """(N, obs), (N, K) -> (N, out)."""
        return self.net(torch.cat([states, F.relu(self.embed(latents))], dim=-1))

    def every_latent(self, states: torch.Tensor) -> torch.Tensor:
        """f(s, e_k) for every state and every one-hot latent, in one pass over K * B rows: (B, obs) -> (K, B, out).
        Row k of the result belongs to latent e_k."""
        k, batch = self.num_latents, states.shape[0]
        codes = torch.eye(k, device=states.device, dtype=states.dtype)
        tiled_states = states.expand(k, *states.shape).reshape(k * batch, -1)
        tiled_codes = codes.repeat_interleave(batch, dim=0)
        return self(tiled_states, tiled_codes).view(k, batch, -1)


class LatentDeterministicPolicy(LatentConditionedMLP):
    """mu(s, z) = tanh(f(s, z)): one network holding K deterministic sub-policies, picked by z (DMPO's actor)."""

    def __init__(self, obs_dim: int, act_dim: int, num_latents: int, hidden: tuple[int, ...],
                 embedding_dim: int | None = None):
        super().__init__(obs_dim, num_latents, hidden, act_dim, embedding_dim)

    def forward(self, states: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().forward(states, latents))


class LatentPosterior(nn.Module):
    """q(z | s, a): the probabilities of the K latents given a state-action pair, (B, obs), (B, act) -> (B, K)."""

    def __init__(self, obs_dim: int, act_dim: int, num_latents: int, hidden: tuple[int, ...]):
        super().__init__()
        self.logits = mlp(obs_dim + act_dim, hidden, num_latents)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.log_probabilities(states, actions), dim=-1)

    def log_probabilities(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log q(z | s, a), normalised: (B, K)."""
        return F.log_softmax(self.logits(torch.cat([states, actions], dim=-1)), dim=-1)


def gumbel_noise(shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """g = -log(-log(u)), u ~ U(0, 1): standard Gumbel noise."""
    uniform = torch.rand(shape, device=device, dtype=dtype)
    return -torch.log(-torch.log(uniform + GUMBEL_EPS) + GUMBEL_EPS)


def gumbel_softmax(probabilities: torch.Tensor, temperature: float, noise: torch.Tensor) -> torch.Tensor:
    """The relaxed one-hot sample softmax((log p + g) / T) of Cat(p) (Jang et al. 2017; Maddison et al. 2017):
    differentiable in p, and one-hot in the limit T -> 0."""
    return F.softmax((torch.log(probabilities + GUMBEL_EPS) + noise) / temperature, dim=-1)
