"""Datasets this project makes: the toy task (in memory, from the seed), the four-goal Fetch sets (made by
the scripted experts on first use, then read from the data folder) and the local locomotion sets that
`python -m scripts.collect_dataset` writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import h5py
from tqdm import tqdm

import envs
from datagen import fetch, toy
from datasources.hdf5 import HDF5_OPTIONAL_KEYS, HDF5_REQUIRED_KEYS, read_hdf5
from envs import toy_multimodal
from utils.d4rl_tasks import LOCAL_VERSION, local_score_reference
from utils.dataset import Dataset, ScoreReference, transitions_from_arrays
from utils.errors import UserInputError
from utils.files import generated_data_dir, written_atomically

TOY_NAME = "toy-multimodal"
FETCH_REACH_NAME = "fetchreach-fourgoal-v0"
FETCH_PUSH_NAME = "fetchpush-fourgoal-v0"
FETCH_PICK_NAME = "fetchpick-fourgoal-v0"
FETCH_TASKS = {FETCH_REACH_NAME: "reach", FETCH_PUSH_NAME: "push", FETCH_PICK_NAME: "pick"}  # envs.fetch_fourgoal.TASKS
FETCH_GOAL_KEY, FETCH_BRANCH_KEY = "infos/goal", "infos/branch"  # D4RL keeps per-row extras under infos/
FETCH_SECONDS_PER_START = {"branching": 5, "start_only": 0.3}  # one core, measured with scripts/fetch_data.py
LOCAL_PREFIX = "local/"  # local/<env>-<quality>-v0: made by scripts/collect_dataset.py, read from <data dir>/local


def load_toy(size: int, seed: int) -> Dataset:
    return transitions_from_arrays(
        TOY_NAME,
        **toy.make_dataset(size, seed),
        eval_env_id=envs.TOY_ENV_ID,
        score=ScoreReference(toy_multimodal.RANDOM_POLICY_REWARD, toy_multimodal.OPTIMAL_REWARD, TOY_NAME),
        source=f"generated from seed {seed} ({size} rows)",
    )


def fetch_file(name: str, starts: int, seed: int, folder: str | os.PathLike | None,
               layout: str = fetch.BRANCHING.name) -> Path:
    """Where a four-goal Fetch set lives; the layout's version in the name keeps files of older code unread."""
    version = fetch.LAYOUTS[layout].version
    return generated_data_dir(folder) / f"{name}_data{version}_seed{seed}_starts{starts}.hdf5"


def load_fetch(name: str, starts: int, seed: int, folder: str | os.PathLike | None,
               layout: str = fetch.BRANCHING.name) -> Dataset:
    """A four-goal Fetch set (`FETCH_TASKS`) in one of `datagen.fetch.LAYOUTS`, made on first use by the
    scripted experts and kept in the data folder: later runs read the file."""
    path = fetch_file(name, starts, seed, folder, layout)
    task = FETCH_TASKS[name]
    if not path.exists():
        _write_fetch(path, task, starts, seed, fetch.LAYOUTS[layout])
    with h5py.File(path, "r") as file:
        low, high = float(file.attrs["ref_min_score"]), float(file.attrs["ref_max_score"])
    return transitions_from_arrays(
        name, **read_hdf5(path), eval_env_id=envs.FETCH_FOUR_GOAL_IDS[task],
        eval_env_kwargs={"goal_distance": fetch.LAYOUTS[layout].goal_distance(task)},
        score=ScoreReference(low, high, "random policy = 0, expert to goal 1 = 100"), source=str(path),
    )


def read_fetch_labels(path: Path) -> tuple:
    """Per row of a four-goal Fetch file: the goal its expert heads for and its branch state (-1: none)."""
    with h5py.File(path, "r") as file:
        if FETCH_BRANCH_KEY not in file:
            raise UserInputError(f"{path} was made before the data kept its labels; delete it and it is made again")
        return file[FETCH_GOAL_KEY][()], file[FETCH_BRANCH_KEY][()]


def _write_fetch(path: Path, task: str, starts: int, seed: int, layout: fetch.FetchLayout) -> None:
    tqdm.write(f"making {path.name}: {layout.name} data from {starts} start states "
               f"(the first time only; about {FETCH_SECONDS_PER_START[layout.name]} s per start state)")
    began = time.perf_counter()
    data = fetch.make_dataset(starts, seed, task=task, layout=layout)
    data["generation_seconds"] = time.perf_counter() - began
    with written_atomically(path) as partial, h5py.File(partial, "w") as file:
        for key in HDF5_REQUIRED_KEYS + HDF5_OPTIONAL_KEYS:
            file[key] = data[key]
        file[FETCH_GOAL_KEY], file[FETCH_BRANCH_KEY] = data["goal_labels"], data["branch_ids"]
        for key in ("ref_min_score", "ref_max_score", "expert_success", "generation_seconds"):
            file.attrs[key] = data[key]


def load_local(name: str, folder: str | os.PathLike | None) -> Dataset:
    """A file written by scripts/collect_dataset.py; it names its env, scored by D4RL's reference returns."""
    root = generated_data_dir(folder) / "local"
    path = root / f"{name}.hdf5"
    if not path.is_file():
        env = name.split("-", 1)[0]
        raise UserInputError(
            f"no local dataset {path}; make it with: python -m scripts.collect_dataset --env {env} --out {root}"
        )
    with h5py.File(path, "r") as file:
        env_id = str(file.attrs.get("env_id", ""))
    if not env_id:
        raise UserInputError(f"{path} names no env (attribute env_id); use --dataset_path {path} --eval_env ENV_ID")
    return transitions_from_arrays(
        f"{LOCAL_PREFIX}{name}", **read_hdf5(path), eval_env_id=env_id, score=local_score_reference(env_id),
        source=str(path)
    )
