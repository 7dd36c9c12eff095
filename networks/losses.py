"""Loss pieces several algorithms share: the TD target, the expectile loss and the clipped exponential weight."""

import torch


def td_target(rewards: torch.Tensor, terminals: torch.Tensor, next_values: torch.Tensor,
              discount: float) -> torch.Tensor:
    """y = r + gamma * (1 - done) * next value; callers compute next_values without a gradient."""
    return rewards + discount * (1.0 - terminals) * next_values


def expectile_weight(u: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(u < 0)|: tau for positive residuals, 1 - tau for negative ones."""
    return torch.where(u < 0, 1.0 - expectile, expectile)


def expectile_loss(u: torch.Tensor, expectile: float) -> torch.Tensor:
    """Mean of L2_tau(u) = |tau - 1(u < 0)| * u^2, IQL's expectile regression loss: over a constant, its
    minimiser is the tau-expectile."""
    return (expectile_weight(u, expectile) * u.square()).mean()


def exp_clip_weight(exponent: torch.Tensor, clip: float) -> torch.Tensor:
    """min(exp(exponent), clip), the clipped exponential advantage weight; callers pass a detached exponent."""
    return exponent.exp().clamp(max=clip)


def batch_range_exp_weight(advantage: torch.Tensor, scale: float) -> torch.Tensor:
    """exp(scale * (A - max A) / (max A - min A)) over the batch (DMPO's and its mixAWAC's advantage weight): the
    advantages are rescaled to [-1, 0] first, so `scale` alone sets how sharp the weights are, whatever the
    scale of Q, and the largest weight is exactly 1. A batch of equal advantages gets weight 1 everywhere
    (the released code would divide 0 by 0 there)."""
    highest = advantage.max()
    width = (highest - advantage.min()).clamp_min(torch.finfo(advantage.dtype).tiny)
    return torch.exp(scale * (advantage - highest) / width)


def target_policy_smoothing(action: torch.Tensor, noise_std: float, noise_clip: float) -> torch.Tensor:
    """TD3's smoothed target action clip(a + clip(noise_std * N(0, I), -noise_clip, noise_clip), -1, 1): the
    critic's target averages Q over a small neighbourhood of the action, so it cannot exploit a narrow peak."""
    noise = (noise_std * torch.randn_like(action)).clamp(-noise_clip, noise_clip)
    return (action + noise).clamp(-1.0, 1.0)
