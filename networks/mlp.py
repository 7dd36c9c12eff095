"""Multi-layer perceptrons: a single one and a batched ensemble of K independent ones."""

import math

import torch
from torch import nn

# On a CPU, an ensemble pass over more rows than this runs through all its layers one block of rows at a time, so a
# block's activations (twin 256-wide critics: 2 x 1024 x 256 floats, 2 MiB) can stay in the cache for the next layer
# and the backward pass; a whole 7,936-row pass (CQL's) makes 16 MiB a layer.
# On a GPU one large product is faster, so there the pass stays whole (docs/performance.md, "What makes it fast").
CPU_ROW_BLOCK = 1024


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Linear layers with ReLU between them and no activation on the output."""
    sizes = (in_dim, *hidden)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """K independent linear layers applied in one batched matmul: (K, B, in) -> (K, B, out)."""

    def __init__(self, ensemble_size: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_dim))
        # Same initialisation as nn.Linear, member by member.
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[-1] == 1:
            # A critic's output unit: MKL's batched product with one output column is several times slower than
            # the same dot products, backward pass included (docs/performance.md, "What makes it fast").
            return torch.linalg.vecdot(x, self.weight.transpose(1, 2)).unsqueeze(-1) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)

    def member(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Member k alone: (B, in) -> (B, out)."""
        return torch.addmm(self.bias[k], x, self.weight[k])


class EnsembleMLP(nn.Module):
    """K independent MLPs evaluated together; inputs of shape (B, in) are shared by every member."""

    def __init__(self, ensemble_size: int, in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        self.ensemble_size = ensemble_size
        sizes = (in_dim, *hidden)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [EnsembleLinear(ensemble_size, fan_in, fan_out), nn.ReLU()]
        layers.append(EnsembleLinear(ensemble_size, sizes[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) or (K, B, in) -> (K, B, out)."""
        if x.dim() == 2:
            x = x.expand(self.ensemble_size, *x.shape)
        if x.device.type != "cpu" or x.shape[1] <= CPU_ROW_BLOCK:
            return self.net(x)
        return torch.cat([self.net(block) for block in x.split(CPU_ROW_BLOCK, dim=1)], dim=1)

    def member(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Member k alone, without computing the others: (B, in) -> (B, out)."""
        for layer in self.net:
            x = layer.member(x, k) if isinstance(layer, EnsembleLinear) else layer(x)
        return x
