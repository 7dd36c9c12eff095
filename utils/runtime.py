"""Seeding, device choice, the C library's heap, metrics kept on the device until they are logged, and the stop on
divergence."""

import ctypes
import math
import platform
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


# mallopt parameters (glibc malloc.h): above what size the free top of the heap is trimmed, and a block is mapped
# on its own
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_HEAP_BYTES = 1 << 30  # far above any one tensor of a training step (CQL's largest: 16 MiB)


def keep_freed_memory() -> bool:
    """Makes glibc's malloc keep freed memory in the process for the next allocation instead of handing it back.

    By default glibc maps each block above a threshold (at most 32 MiB) on its own and unmaps it when freed, and
    trims the free top of its heap, so a step that frees and re-allocates the same large tensors pays a page fault
    for every 4 KiB of them each time. CQL's critics over 7,936 rows (16 MiB activations) took up to 39,000
    faults a step that way in some runs, where its step took 1.2-1.4 times as long on a 2-core CPU. The price: the
    process holds on to its peak memory until it exits. Applies only with glibc (Linux); returns whether it did."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    return bool(mallopt(M_MMAP_THRESHOLD, KEPT_HEAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_HEAP_BYTES))


class MetricAverager:
    """Sums metric tensors on their device, one stacked tensor per set of keys (one add a step); `mean()` reads
    them to the host once, at log time. Each key is averaged over the steps that reported it, so an agent may
    report some metrics only on some steps (TD3+BC's actor loss, every second step)."""

    def __init__(self):
        self.groups: dict[tuple[str, ...], list] = {}  # keys -> [summed values (n_keys,), steps]

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        values = torch.stack([value.float() for value in metrics.values()])
        group = self.groups.get(tuple(metrics))
        if group is None:
            self.groups[tuple(metrics)] = [values, 1]
        else:
            group[0], group[1] = group[0] + values, group[1] + 1

    def state_dict(self) -> dict:
        return {"groups": [(list(keys), total, count) for keys, (total, count) in self.groups.items()]}

    def load_state_dict(self, state: dict) -> None:
        if "groups" in state:
            self.groups = {tuple(keys): [total, count] for keys, total, count in state["groups"]}
        elif "sums" in state:  # a checkpoint from before the sums were stacked: {key: sum tensor}
            sums = state["sums"]
            self.groups = {tuple(sums): [torch.stack(list(sums.values())).float(), state["count"]]} if sums else {}
        else:  # one stacked group: {"keys", "total", "count"}
            total = state["total"]
            self.groups = {tuple(state["keys"]): [total, state["count"]]} if total is not None else {}

    def mean(self) -> dict[str, float]:
        """Averages since the last call, then starts over."""
        sums, counts = {}, {}
        for keys, (total, count) in self.groups.items():
            for key, value in zip(keys, total.tolist()):
                sums[key], counts[key] = sums.get(key, 0.0) + value, counts.get(key, 0) + count
        self.groups = {}
        return {key: sums[key] / counts[key] for key in sums}


class NonFiniteWatch:
    """Remembers, on the device, the first step at which each metric became NaN or inf.

    Three small kernels a step and no host sync; `first_failure` reads the record, at log time.
    """

    def __init__(self):
        self.first_steps: dict[tuple[str, ...], torch.Tensor] = {}  # keys -> (n_keys,), inf while finite

    def add(self, metrics: dict[str, torch.Tensor], step: int) -> None:
        values = torch.stack([value.float() for value in metrics.values()])
        keys = tuple(metrics)
        first_step = self.first_steps.get(keys)
        if first_step is None:
            first_step = torch.full_like(values, math.inf)
        newly_bad = ~torch.isfinite(values) & torch.isinf(first_step)
        self.first_steps[keys] = torch.where(newly_bad, float(step), first_step)

    def state_dict(self) -> dict:
        return {"groups": [(list(keys), first) for keys, first in self.first_steps.items()]}

    def load_state_dict(self, state: dict) -> None:
        if "groups" in state:
            self.first_steps = {tuple(keys): first for keys, first in state["groups"]}
        else:  # one group: {"keys", "first_step"}
            first = state["first_step"]
            self.first_steps = {tuple(state["keys"]): first} if first is not None else {}

    def first_failure(self) -> tuple[str, int] | None:
        """(metric, step) of the earliest non-finite value seen, or None."""
        candidates = [(step, key) for keys, first in self.first_steps.items()
                      for step, key in zip(first.tolist(), keys)]
        if not candidates:
            return None
        step, key = min(candidates)
        return None if math.isinf(step) else (key, int(step))


def raise_if_diverged(failure: tuple[str, int] | None, run_dir) -> None:
    """Stops the run (exit 3) at the first NaN or inf a loss took, naming the loss and the step."""
    if failure is not None:
        name, step = failure
        raise TrainingDiverged(f"{name} became NaN or inf at step {step}; the run stopped there (its logs up to "
                               f"the last evaluation are in {run_dir}); try a lower learning rate")
