"""Pretraining (LOM's MDN) is cached: a later run with the same data, settings and seed loads it."""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from agents.base import Agent
from utils.datasets import Dataset
from utils.files import written_atomically


def dataset_fingerprint(dataset: Dataset) -> str:
    """A hash of the states and actions the pretraining sees."""
    digest = hashlib.sha256()
    for array in (dataset.observations, dataset.actions):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def cache_file(cache_dir: str, dataset: Dataset, agent_name: str, agent: Agent, normalise: bool, seed: int) -> Path:
    key = {"data": dataset_fingerprint(dataset), "agent": agent_name, "normalise": normalise, "seed": seed,
           **agent.pretrain_signature()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    stem = dataset.name.replace("/", "-")
    return Path(cache_dir).expanduser() / f"{stem}_{agent_name}_seed{seed}_{digest}.pt"


def load_pretrained(agent: Agent, path: Path) -> dict | None:
    """Restores the pretrained modules from the cache; returns the record of that pretraining, or None."""
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for name, module in agent.pretrained_modules().items():
        module.load_state_dict(saved["modules"][name])
    return saved["record"]


def save_pretrained(agent: Agent, path: Path, record: dict) -> None:
    """Written to a temporary file and renamed, so a crash never leaves a half-written cache entry."""
    modules = {name: {k: v.cpu() for k, v in module.state_dict().items()}
               for name, module in agent.pretrained_modules().items()}
    with written_atomically(path) as partial:
        torch.save({"modules": modules, "record": record}, partial)
