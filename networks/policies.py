"""Unimodal policies: deterministic (LOM's released policy, TD3+BC), Gaussian with a state-dependent std (BC,
LOM's Eq. 18), Gaussian with one state-independent std (IQL, AWAC as CORL has it) and tanh-squashed Gaussian
(SAC-style, CQL)."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from networks.mdn import LOG_SQRT_2PI
from networks.mlp import mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(a; mean, diag(std^2)), summed over the last (action) dimension."""
    return (-0.5 * ((actions - mean) / std).square() - std.log() - LOG_SQRT_2PI).sum(-1)


class DeterministicPolicy(nn.Module):
    """pi(s) = tanh(MLP(s))."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(states))

    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self(states)


class GaussianPolicy(nn.Module):
    """N(tanh(mu(s)), sigma(s)); acts with its mean."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, hidden, 2 * act_dim)

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, A) in [-1, 1] and standard deviation (B, A)."""
        mean, log_std = self.net(states).split(self.act_dim, dim=-1)
        return torch.tanh(mean), log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | s), summed over action dimensions: (B,)."""
        return gaussian_log_prob(actions, *self(states))

    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self(states)[0]

    def sample(self, states: torch.Tensor) -> torch.Tensor:
        """a = mean + std * noise, clipped to the action range [-1, 1]; differentiable in the policy's
        parameters (reparameterised), so callers that need no gradient wrap it in torch.no_grad()."""
        mean, std = self(states)
        return (mean + std * torch.randn_like(mean)).clamp(-1.0, 1.0)


class FixedStdGaussianPolicy(nn.Module):
    """N(mu(s), sigma): one learned log-std per action dimension, the same at every state, clamped to
    `log_std_range`. `squash_mean`: mu = tanh(MLP(s)) (IQL); otherwise mu = MLP(s) (AWAC as CORL has it).
    Acts with its mean, clipped to the action range."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], squash_mean: bool,
                 log_std_range: tuple[float, float]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.squash_mean, self.log_std_range = squash_mean, log_std_range

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, A) and standard deviation (A,)."""
        mean = self.net(states)
        return (torch.tanh(mean) if self.squash_mean else mean), self.log_std.clamp(*self.log_std_range).exp()

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | s), summed over action dimensions: (B,)."""
        return gaussian_log_prob(actions, *self(states))

    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self(states)[0].clamp(-1.0, 1.0)

    def sample(self, states: torch.Tensor) -> torch.Tensor:
        """a = mean + std * noise, clipped to [-1, 1] (reparameterised, as GaussianPolicy.sample)."""
        mean, std = self(states)
        return (mean + std * torch.randn_like(mean)).clamp(-1.0, 1.0)


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log-density of a = tanh(u), u ~ N(mean, std): log N(u) - sum log(1 - tanh(u)^2), summed over the last
    dimension; log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|."""
    log_jacobian = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return gaussian_log_prob(u, mean, std) - log_jacobian


class TanhGaussianPolicy(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)), the SAC policy; log-probabilities include the tanh Jacobian.
    The log-std is clamped to `log_std_range` (SAC's [-20, 2] by default). Acts with tanh(mu(s)).
    `zero_log_std_init`: the last layer's log-std rows start at weight 0 and bias 0 (sigma = 1 everywhere at
    the start), as lightATAC's policy (MAHALO, ATAC) starts."""

    # Dataset actions are pulled this far inside (-1, 1) before atanh, where it is finite.
    ACTION_MARGIN = 1e-6

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...],
                 log_std_range: tuple[float, float] = (-20.0, 2.0), zero_log_std_init: bool = False):
        super().__init__()
        self.act_dim, self.log_std_range = act_dim, log_std_range
        self.net = mlp(obs_dim, hidden, 2 * act_dim)
        if zero_log_std_init:
            with torch.no_grad():
                self.net[-1].weight[act_dim:].zero_()
                self.net[-1].bias[act_dim:].zero_()

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of u, each (..., A)."""
        mean, log_std = self.net(states).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(*self.log_std_range).exp()

    def rsample(self, states: torch.Tensor, num_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised actions and their log-probabilities: (B, A), (B,); with `num_samples` = n, n
        actions per state from one pass of the network: (n, B, A), (n, B)."""
        mean, std = self(states)
        shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
        u = mean + std * torch.randn(shape, device=mean.device, dtype=mean.dtype)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, std)

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | s) of given actions, via u = atanh(a) with a clipped to +-(1 - ACTION_MARGIN): (B,)."""
        bound = 1.0 - self.ACTION_MARGIN
        return tanh_gaussian_log_prob(torch.atanh(actions.clamp(-bound, bound)), *self(states))

    def act(self, states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(states)[0])


def soft_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """low + (high - low) * (tanh(x) + 1) / 2: a smooth map of the real line onto (low, high) that, unlike a hard
    clamp, never stops the gradient. With (low, high) = (-1, 1) it is tanh itself."""
    return low + 0.5 * (high - low) * (torch.tanh(x) + 1.0)


def standard_normal_density(x: torch.Tensor) -> torch.Tensor:
    """phi(x), the N(0, 1) density."""
    return torch.exp(-0.5 * x.square() - LOG_SQRT_2PI)


class SoftClampedGaussianPolicy(nn.Module):
    """N(mu(s), diag sigma(s)^2) on the real line, mu = tanh(.) in (-1, 1) and log sigma soft-clamped into
    (-5, 0): OneStep's behaviour model (Brandfonbrener et al. 2021). Its samples are not clipped, so some fall
    outside the action box. Acts with its mean.

    The methods below take the distribution's parameters (mean, std) = self(states), so that one pass of the
    network serves a log-density, many samples and a mean."""

    LOG_STD_RANGE = (-5.0, 0.0)

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, hidden, 2 * act_dim)

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu (B, A) in (-1, 1) and sigma (B, A) in (e^-5, 1)."""
        mean, log_std = self.net(states).split(self.act_dim, dim=-1)
        return soft_clamp(mean, -1.0, 1.0), soft_clamp(log_std, *self.LOG_STD_RANGE).exp()

    def log_density(self, actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """log pi(a | s) summed over action dimensions; actions may carry leading sample dimensions:
        (..., B, A) -> (..., B)."""
        return gaussian_log_prob(actions, mean, std)

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | s): (B,)."""
        return self.log_density(actions, *self(states))

    def rsample(self, mean: torch.Tensor, std: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Reparameterised draws, mean + std * noise: (B, A), or (n, B, A) with num_samples = n."""
        shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
        return mean + std * torch.randn(shape, device=mean.device, dtype=mean.dtype)

    def distribution_mean(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return mean

    def act(self, states: torch.Tensor) -> torch.Tensor:
        """The distribution's mean, clipped to the action range."""
        return self.distribution_mean(*self(states)).clamp(-1.0, 1.0)


class TruncatedGaussianPolicy(SoftClampedGaussianPolicy):
    """The same network with each action dimension's Gaussian truncated to [-1, 1]: density
    N(a; mu, sigma) / Z with Z = Phi((1 - mu) / sigma) - Phi((-1 - mu) / sigma), sampled by the inverse CDF
    (reparameterised). With mu in (-1, 1) and sigma <= 1, Z > 0.47: no loss of precision in the tails."""

    # Uniform draws stay this far from 0 and 1, where the inverse CDF (and its gradient) is infinite.
    UNIFORM_MARGIN = torch.finfo(torch.float32).eps

    @staticmethod
    def standard_bounds(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The action box's ends in standard units, (-1 - mu) / sigma and (1 - mu) / sigma."""
        return (-1.0 - mean) / std, (1.0 - mean) / std

    def log_normaliser(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """log Z summed over action dimensions: (B,)."""
        low, high = self.standard_bounds(mean, std)
        return (torch.special.ndtr(high) - torch.special.ndtr(low)).log().sum(-1)

    def log_density(self, actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """log N(a; mu, sigma) - log Z summed over action dimensions, for actions inside [-1, 1]."""
        return gaussian_log_prob(actions, mean, std) - self.log_normaliser(mean, std)

    def rsample(self, mean: torch.Tensor, std: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Inverse-CDF draws mu + sigma * Phi^-1(Phi(low) + u (Phi(high) - Phi(low))), u ~ U(0, 1): differentiable
        in mu and sigma. Rounding can put Phi^-1's result a hair outside [low, high]; it is clamped back."""
        shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
        low, high = self.standard_bounds(mean, std)
        cdf_low, cdf_high = torch.special.ndtr(low), torch.special.ndtr(high)
        uniform = torch.rand(shape, device=mean.device, dtype=mean.dtype)
        margin = self.UNIFORM_MARGIN
        quantile = (cdf_low + uniform * (cdf_high - cdf_low)).clamp(margin, 1.0 - margin)
        standard = torch.clamp(torch.special.ndtri(quantile), min=low, max=high)
        return mean + std * standard

    def distribution_mean(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """mu + sigma (phi(low) - phi(high)) / Z, the mean of the truncated distribution."""
        low, high = self.standard_bounds(mean, std)
        normaliser = torch.special.ndtr(high) - torch.special.ndtr(low)
        return mean + std * (standard_normal_density(low) - standard_normal_density(high)) / normaliser
