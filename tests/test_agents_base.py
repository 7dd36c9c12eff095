"""agents/base.py's optimise: the same arithmetic and the same optimiser state as torch's zero_grad, backward and
Adam.step, bit for bit."""

import copy

import pytest
import torch
from torch import nn

from agents.base import adam, optimise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TwoLayers(nn.Module):
    """Two layers in two Adam groups with different learning rates (IQL's form), and a parameter no loss uses."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(3, 4), nn.Linear(4, 1)
        self.unused = nn.Parameter(torch.ones(2))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x))).square().mean()

    def optimiser(self) -> torch.optim.Adam:
        return adam([{"params": self.first.parameters(), "lr": 1e-2},
                     {"params": [*self.second.parameters(), self.unused], "lr": 3e-3}], lr=3e-4)


def reference_step(optimiser: torch.optim.Adam, loss: torch.Tensor) -> None:
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def assert_same_state(ours: torch.optim.Adam, reference: torch.optim.Adam) -> None:
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert mine["param_groups"] == theirs["param_groups"]
    assert mine["state"].keys() == theirs["state"].keys()
    for index, state in theirs["state"].items():
        assert mine["state"][index].keys() == state.keys()
        for name, value in state.items():
            assert mine["state"][index][name].dtype == value.dtype and torch.equal(mine["state"][index][name], value)


def test_optimise_steps_exactly_as_adam_step_and_leaves_unused_parameters_alone():
    torch.manual_seed(0)
    model = TwoLayers()
    reference = copy.deepcopy(model)
    ours_optimiser, reference_optimiser = model.optimiser(), reference.optimiser()
    for step in range(6):
        x = torch.randn(8, 3)
        optimise(ours_optimiser, model.loss(x))
        reference_step(reference_optimiser, reference.loss(x))
        for mine, theirs in zip(model.parameters(), reference.parameters()):
            assert torch.equal(mine, theirs), f"step {step}"
    assert torch.equal(model.unused, torch.ones(2))
    assert_same_state(ours_optimiser, reference_optimiser)
    assert 4 not in ours_optimiser.state_dict()["state"]  # the unused parameter has no Adam state, as in torch's
    assert all(p.grad is None for p in model.parameters())  # gradients go to the kernel, not into .grad


def test_optimise_continues_from_a_state_that_torchs_adam_wrote():
    """Checkpoints written by Adam.step (or by an earlier version) resume to the same parameters."""
    torch.manual_seed(1)
    model = TwoLayers()
    optimiser = model.optimiser()
    for _ in range(3):
        reference_step(optimiser, model.loss(torch.randn(8, 3)))
    resumed = copy.deepcopy(model)
    resumed_optimiser = resumed.optimiser()
    resumed_optimiser.load_state_dict(copy.deepcopy(optimiser.state_dict()))  # loading in place shares tensors
    for _ in range(3):
        x = torch.randn(8, 3)
        reference_step(optimiser, model.loss(x))
        optimise(resumed_optimiser, resumed.loss(x))
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(resumed.parameters(), model.parameters()))
    assert_same_state(resumed_optimiser, optimiser)
