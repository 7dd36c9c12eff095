"""Pretrained models (LOM's MDN) are cached: a later run with the same data, settings and seed loads them.

The cache knows modules and a key, not agents: the trainer names the modules and what changes them.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from utils.dataset import Dataset, one_line
from utils.files import set_aside, written_atomically


def dataset_fingerprint(dataset: Dataset) -> str:
    """A hash of every array a pretraining can read: an MDN sees states and actions, OneStep's SARSA critic also
    rewards, terminals and next steps."""
    digest = hashlib.sha256()
    for array in (dataset.observations, dataset.actions, dataset.rewards, dataset.terminals,
                  dataset.next_observations, dataset.next_actions, dataset.has_td_target):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    if dataset.reward_set is not None:  # MAHALO's reward model and its baselines' label models read it
        digest.update(dataset_fingerprint(dataset.reward_set).encode())
    return digest.hexdigest()


def cache_file(cache_dir: str, dataset: Dataset, agent_name: str, seed: int, key: dict) -> Path:
    """<cache_dir>/<dataset>_<agent>_seed<seed>_<digest>.pt; the digest covers the data and `key` (every
    setting that changes the pretrained modules)."""
    full_key = {"data": dataset_fingerprint(dataset), "agent": agent_name, "seed": seed, **key}
    digest = hashlib.sha256(json.dumps(full_key, sort_keys=True).encode()).hexdigest()[:12]
    stem = dataset.name.replace("/", "-")
    return Path(cache_dir).expanduser() / f"{stem}_{agent_name}_seed{seed}_{digest}.pt"


def load_pretrained(modules: dict[str, nn.Module], path: Path) -> dict | None:
    """Restores the modules from the cache; returns the record of that pretraining, or None when there is
    none. A cache file that cannot be read (truncated, corrupt, from other settings) is reported by name and
    moved aside, and None is returned, so the caller pretrains again and writes a good one."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        for name, module in modules.items():
            module.load_state_dict(saved["modules"][name])
        return saved["record"]
    except Exception as error:  # torch.load and load_state_dict fail in many ways on a damaged file
        aside = set_aside(path)
        print(f"warning: cannot read the cached model {path} ({one_line(error)}); moved it to {aside.name} "
              "and pretraining again", file=sys.stderr)
        return None


def save_pretrained(modules: dict[str, nn.Module], path: Path, record: dict) -> None:
    """Written to a temporary file and renamed, so a crash never leaves a half-written cache entry."""
    states = {name: {k: v.cpu() for k, v in module.state_dict().items()} for name, module in modules.items()}
    with written_atomically(path) as partial:
        torch.save({"modules": states, "record": record}, partial)
