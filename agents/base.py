"""What every agent provides to the trainer.

An agent owns its networks and optimisers and draws its own batches from the Buffer. It never parses
flags, opens files or logs: `update` returns metrics as tensors on the device, read only at log time.
tests/test_agent_contract.py checks every agent in the registry against what this file promises.
"""

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.optim.adam import adam as functional_adam

from utils.buffer import Buffer


def adam(parameters, lr: float) -> torch.optim.Adam:
    """Adam with its fused kernel (CPU and CUDA): one call per step instead of a loop over tensors."""
    return torch.optim.Adam(parameters, lr=lr, fused=True)


def optimise(optimiser: torch.optim.Adam, loss: torch.Tensor) -> None:
    """One step of an `adam` optimiser on `loss`: the arithmetic of zero_grad(), loss.backward() and step(), with
    the gradients taken by torch.autograd.grad and handed to torch's functional fused Adam group by group, the
    state kept in the optimiser (so its state_dict and checkpoints are unchanged). This skips Adam.step's Python
    bookkeeping, repeated on every call, which weighs on the small agents' updates on a CPU (docs/performance.md).
    Parameters the loss does not reach are left alone, as step() leaves those without a gradient."""
    params = [p for group in optimiser.param_groups for p in group["params"] if p.requires_grad]
    grads = dict(zip(params, torch.autograd.grad(loss, params, allow_unused=True)))
    with torch.no_grad():
        for group in optimiser.param_groups:
            stepped = [p for p in group["params"] if grads.get(p) is not None]
            states = [adam_state(optimiser, p) for p in stepped]
            beta1, beta2 = group["betas"]
            functional_adam(stepped, [grads[p] for p in stepped], [s["exp_avg"] for s in states],
                            [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states], fused=True,
                            amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                            weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])


def adam_state(optimiser: torch.optim.Adam, parameter: nn.Parameter) -> dict[str, torch.Tensor]:
    """The parameter's Adam state, created on first use as fused Adam creates it: a step count on the parameter's
    device and both moment estimates at zero."""
    state = optimiser.state[parameter]
    if not state:
        state.update(step=torch.zeros((), dtype=torch.float32, device=parameter.device),
                     exp_avg=torch.zeros_like(parameter), exp_avg_sq=torch.zeros_like(parameter))
    return state


@dataclass
class AgentSettings:
    """Hyperparameters of an agent; each field becomes a command-line flag. Name batch sizes `*batch_size`,
    layer widths `*hidden` and pretraining step caps `*_steps`: the dataset-size check and the contract
    tests find them by those suffixes."""

    # True for agents that learn from an action set and a reward set (utils/buffer.py's reward_set): MAHALO
    # and its baselines. They run only with a --scenario, and the others only without.
    learns_from_two_datasets: ClassVar[bool] = False
    # Why the agent cannot learn without the reward set's actions, which the ilfo and rlfo scenarios remove (it
    # completes "--agent NAME ..."); empty: it can. Such runs are refused before any data loads.
    needs_reward_set_actions: ClassVar[str] = ""

    def check(self, run) -> None:
        """Raise UserInputError for settings that cannot work with these run settings (`RunSettings`), before
        any data is loaded; most agents have none."""


class Agent(nn.Module):
    Settings: type[AgentSettings] = AgentSettings
    # Run settings whose default differs for this agent because its original code differs (IQL and OneStep
    # train on raw states: {"normalise": False}); flags and YAML files still override them.
    run_defaults: dict = {}

    def __init__(self, obs_dim: int, act_dim: int, settings: AgentSettings, discount: float):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.settings, self.discount = settings, discount

    def check_data(self, buffer: Buffer) -> None:
        """Raise UserInputError for data this agent cannot learn from (LAPO's reward scale needs a positive
        reward); called before the run directory is made, so a refused run leaves nothing behind."""

    # Behaviour pretraining (LOM's MDN). Agents without one keep pretrain_steps == 0. With a held-out
    # loss, the trainer checks it every pretrain_check_every steps and stops after pretrain_patience
    # checks without improvement, keeping the best pretrained modules; pretrain_steps is the cap.
    pretrain_steps: int = 0
    pretrain_check_every: int = 1
    pretrain_patience: int = 0

    def start_pretraining(self, buffer: Buffer) -> None:
        """Called once before the first pretrain_step (not when the result comes from the cache)."""

    def pretrain_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def held_out_loss(self, buffer: Buffer) -> torch.Tensor | None:
        """The pretraining loss on data it does not train on; None disables early stopping."""
        return None

    def pretrained_modules(self) -> dict[str, nn.Module]:
        """The networks pretraining produces, saved to and restored from the cache."""
        return {}

    def pretrain_signature(self) -> dict:
        """Every setting that changes the outcome of pretraining (part of the cache key)."""
        return {}

    def finish_pretraining(self, buffer: Buffer) -> None:
        """Called after pretraining or after loading its result, and again after a checkpoint is restored,
        before the main loop: the place for anything computed once from the data (a reward scale)."""

    def optimisers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser the agent owns, by attribute name (checkpointed with the networks)."""
        return {name: value for name, value in vars(self).items() if isinstance(value, torch.optim.Optimizer)}

    def update(self, buffer: Buffer, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def act(self, states: torch.Tensor) -> torch.Tensor:
        """Deterministic actions for normalised states."""
        raise NotImplementedError
