"""Seeding, device choice, metrics kept on the device until they are logged, and the stop on divergence."""

import math
import random

import numpy as np
import torch

from utils.errors import TrainingDiverged, UserInputError


def seed_everything(seed: int) -> None:
    """Python, numpy and torch (CPU and every CUDA device) from one seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


class MetricAverager:
    """Sums metric tensors on their device, all in one stacked tensor (one add a step); `mean()` reads them
    to the host once, at log time."""

    def __init__(self):
        self.keys: list[str] = []
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        values = torch.stack([value.float() for value in metrics.values()])
        self.keys, self.total = list(metrics), values if self.total is None else self.total + values
        self.count += 1

    def state_dict(self) -> dict:
        return {"keys": self.keys, "total": self.total, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        if "sums" in state:  # a checkpoint written before the sums were stacked: {key: sum tensor}
            sums = state["sums"]
            state = {"keys": list(sums), "total": torch.stack(list(sums.values())).float() if sums else None,
                     "count": state["count"]}
        self.keys, self.total, self.count = list(state["keys"]), state["total"], state["count"]

    def mean(self) -> dict[str, float]:
        """Averages since the last call, then starts over."""
        if self.total is None:
            return {}
        means = dict(zip(self.keys, (self.total / self.count).tolist()))
        self.total, self.count = None, 0
        return means


class NonFiniteWatch:
    """Remembers, on the device, the first step at which each metric became NaN or inf.

    Three small kernels a step and no host sync; `first_failure` reads the record, at log time.
    """

    def __init__(self):
        self.keys: list[str] = []
        self.first_step: torch.Tensor | None = None  # (n_metrics,), inf while a metric stays finite

    def add(self, metrics: dict[str, torch.Tensor], step: int) -> None:
        values = torch.stack([value.float() for value in metrics.values()])
        if self.first_step is None:
            self.keys, self.first_step = list(metrics), torch.full_like(values, math.inf)
        newly_bad = ~torch.isfinite(values) & torch.isinf(self.first_step)
        self.first_step = torch.where(newly_bad, float(step), self.first_step)

    def state_dict(self) -> dict:
        return {"keys": self.keys, "first_step": self.first_step}

    def load_state_dict(self, state: dict) -> None:
        self.keys, self.first_step = list(state["keys"]), state["first_step"]

    def first_failure(self) -> tuple[str, int] | None:
        """(metric, step) of the earliest non-finite value seen, or None."""
        if self.first_step is None:
            return None
        steps = self.first_step.tolist()
        step, key = min(zip(steps, self.keys))
        return None if math.isinf(step) else (key, int(step))


def raise_if_diverged(failure: tuple[str, int] | None, run_dir) -> None:
    """Stops the run (exit 3) at the first NaN or inf a loss took, naming the loss and the step."""
    if failure is not None:
        name, step = failure
        raise TrainingDiverged(f"{name} became NaN or inf at step {step}; the run stopped there (its logs up to "
                               f"the last evaluation are in {run_dir}); try a lower learning rate")
