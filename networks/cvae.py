"""A conditional variational auto-encoder of actions given states (Kingma & Welling's VAE, conditioned on s).

The encoder q(z | s, a) is a diagonal Gaussian given by its mean and log-variance; the decoder maps (s, z) to an
action, deterministically (a fixed-variance Gaussian likelihood, so -log p(a | s, z) is a squared error up to
constants). The prior p(z) is N(0, I). LAPO trains one with advantage weights and acts through its decoder;
WCVAE does the same with a tanh decoder output.
"""

import torch
from torch import nn

from networks.mlp import mlp


class CVAEEncoder(nn.Module):
    """q(z | s, a) = N(mean, diag(exp(log_var))): (B, obs), (B, act) -> (B, latent) twice."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.latent_dim = latent_dim
        # One output layer for both heads: the same as two linear heads on the last hidden layer.
        self.net = mlp(obs_dim + act_dim, hidden, 2 * latent_dim)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.net(torch.cat([states, actions], dim=-1)).split(self.latent_dim, dim=-1)
        return mean, log_var


class CVAEDecoder(nn.Module):
    """a = MLP(s, z), squashed by tanh when `tanh_output` (actions bounded to [-1, 1]), else linear:
    (..., obs), (..., latent) -> (..., act)."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: tuple[int, ...], tanh_output: bool):
        super().__init__()
        self.net = mlp(obs_dim + latent_dim, hidden, act_dim)
        self.tanh_output = tanh_output

    def forward(self, states: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        actions = self.net(torch.cat([states, latents], dim=-1))
        return torch.tanh(actions) if self.tanh_output else actions


class ConditionalVAE(nn.Module):
    """Encoder and decoder together; `forward` reconstructs actions through a reparameterised latent sample."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden: tuple[int, ...],
                 tanh_output: bool = False):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = CVAEEncoder(obs_dim, act_dim, latent_dim, hidden)
        self.decoder = CVAEDecoder(obs_dim, act_dim, latent_dim, hidden, tanh_output)

    def forward(self, states: torch.Tensor, actions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reconstruction D(s, z) with z = mean + exp(log_var / 2) * noise (differentiable in both
        networks), and the encoder's mean and log-variance: (B, act), (B, latent), (B, latent)."""
        mean, log_var = self.encoder(states, actions)
        latents = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        return self.decoder(states, latents), mean, log_var


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(log_var))) || N(0, I)), summed over the last (latent) dimension: (...)."""
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(-1)


def weighted_cvae_loss(cvae: ConditionalVAE, states: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor,
                       kl_weight: float) -> tuple[torch.Tensor, dict]:
    """mean_B w * (||D(s, z) - a||^2 + kl_weight * KL(q(z | s, a) || N(0, I))), z ~ q(z | s, a), the weights held
    fixed: the weighted negative evidence lower bound with a fixed-variance Gaussian decoder (variance 1/2, so
    the squared error is -log D(a | s, z) up to a constant). With the reconstruction and KL batch means."""
    reconstruction, mean, log_var = cvae(states, actions)
    squared_error = (reconstruction - actions).square().sum(dim=-1)
    kl = kl_to_standard_normal(mean, log_var)
    loss = (weights * (squared_error + kl_weight * kl)).mean()
    return loss, {"reconstruction": squared_error.mean().detach(), "kl": kl.mean().detach()}
