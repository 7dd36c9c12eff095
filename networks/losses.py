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
