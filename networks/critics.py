"""Value networks: an ensemble of K state-action critics, a state value V(s), and the hyper Q-function over
mixture components."""

import contextlib
import copy

import torch
from torch import nn
from torch.nn import functional as F

from networks.mlp import EnsembleMLP, mlp


class CriticEnsemble(nn.Module):
    """K independent Q(s, a) networks evaluated in one batched pass."""

    def __init__(self, obs_dim: int, act_dim: int, ensemble_size: int, hidden: tuple[int, ...]):
        super().__init__()
        self.q = EnsembleMLP(ensemble_size, obs_dim + act_dim, hidden, 1)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, obs), (B, act) -> (K, B)."""
        return self.q(torch.cat([states, actions], dim=-1)).squeeze(-1)

    def first(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_1, the first member only: (..., obs), (..., act) -> (...)."""
        inputs = torch.cat([states, actions], dim=-1)
        return self.q.member(inputs.reshape(-1, inputs.shape[-1]), 0).view(inputs.shape[:-1])


class StateValue(nn.Module):
    """V(s): (B, obs) -> (B,)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.v = mlp(obs_dim, hidden, 1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.v(states).squeeze(-1)


class OneHotHyperQ(nn.Module):
    """Q_phi(s, u) with the component index as a one-hot input, one output (the released code's form)."""

    def __init__(self, obs_dim: int, num_components: int, hidden: tuple[int, ...]):
        super().__init__()
        self.num_components = num_components
        self.q = mlp(obs_dim + num_components, hidden, 1)
        self.register_buffer("one_hots", torch.eye(num_components), persistent=False)  # built once, not per call

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Q_phi for every component: (B, obs) -> (B, M)."""
        batch, m = states.shape[0], self.num_components
        one_hots = self.one_hots.expand(batch, m, m)
        pairs = torch.cat([states.unsqueeze(1).expand(batch, m, states.shape[-1]), one_hots], dim=-1)
        return self.q(pairs).squeeze(-1)


class MultiHeadHyperQ(nn.Module):
    """Q_phi(s, .) as one network with M outputs: one pass per state instead of one per (state, component)."""

    def __init__(self, obs_dim: int, num_components: int, hidden: tuple[int, ...]):
        super().__init__()
        self.q = mlp(obs_dim, hidden, num_components)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Q_phi for every component: (B, obs) -> (B, M)."""
        return self.q(states)


HYPER_Q_FORMS = {"onehot": OneHotHyperQ, "multihead": MultiHeadHyperQ}


def target_copy(online: nn.Module) -> nn.Module:
    """A frozen copy of `online`, to follow it by soft_update."""
    return copy.deepcopy(online).requires_grad_(False)


@contextlib.contextmanager
def frozen(module: nn.Module):
    """No gradients for `module`'s parameters inside the block, while gradients still flow through it to its
    inputs (an actor's loss through a critic): the critic's own gradients would only be discarded."""
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) * target + tau * online."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


def ensemble_mse(predictions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the K members of each member's mean squared error to a shared target: (K, B), (B,)."""
    return F.mse_loss(predictions, target.expand_as(predictions), reduction="none").mean(dim=1).sum()
