"""Offline datasets by name or file, one `load_dataset` in front of every source:

- `d4rl`: the D4RL MuJoCo v2 sets, read from D4RL's cache or downloaded;
- `hdf5`: any D4RL-format HDF5 file (`--dataset_path`);
- `minari_ids`: Minari datasets by id;
- `generated`: the sets this project makes (toy-multimodal, the four-goal Fetch tasks, local/...);
- `scenarios`: two datasets (actions; rewards) from the others, for MAHALO and its baselines, including the
  <env>-all-v2 and local/<env>-all-v0 unions.
Each ends in `utils.dataset.transitions_from_arrays`, so every dataset has the same form. This package
sits above `datagen/`, which makes the generated sets on first use, and below the trainer.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path

from datasources import generated, scenarios
from datasources.d4rl import D4RL_ENVS, D4RL_NAMES, D4RL_QUALITIES, d4rl_file_name, load_d4rl
from datasources.d4rl import d4rl_dir as d4rl_folder  # load_dataset's d4rl_dir argument shadows the function
from datasources.hdf5 import load_hdf5_file
from datasources.minari_ids import load_minari
from utils.d4rl_tasks import LOCAL_VERSION, d4rl_score_for_env
from utils.dataset import Dataset, user_score_reference
from utils.errors import UserInputError
from utils.settings import NO_SCENARIO
from utils.files import generated_data_dir


def load_dataset(
    env_name: str,
    *,
    dataset_path: str | os.PathLike | None = None,
    eval_env: str | None = None,
    d4rl_dir: str | os.PathLike | None = None,
    dataset_url: str | None = None,
    toy_size: int = 10_000,
    fetch_starts: int = 50,
    fetch_data: str = "branching",
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    scenario: str = NO_SCENARIO,
    reward_set_ratio: float = 0.01,
    remove_terminals: bool = True,
) -> Dataset:
    """Load a dataset by name (D4RL v2, Minari id, toy-multimodal, fetch*-fourgoal-v0,
    local/<env>-<quality>-v0, <env>-all-v2, local/<env>-all-v0) or from a D4RL-format file.

    `eval_env`, when given, replaces the dataset's evaluation env (with no extra kwargs); it is required
    with `dataset_path`. `ref_min_score`/`ref_max_score`, when both given, replace the score reference.
    A `scenario` (datasources/scenarios.py) splits the data into an action set and a reward set.
    """
    user_score = user_score_reference(ref_min_score, ref_max_score)
    name = env_name.lower()
    all_set = all_set_loader(name, d4rl_dir, dataset_url, data_dir)
    if all_set is not None:
        parts = {quality: all_set(quality) for quality in scenarios.ACTION_SET_QUALITIES}
        expert = expert_set(all_set, scenario, env_name) if scenario in scenarios.NEEDS_EXPERT else None
        dataset = scenarios.union(env_name, parts) if scenario == NO_SCENARIO else scenarios.two_datasets(
            env_name, parts, expert, scenario, reward_set_ratio, seed, remove_terminals)
        return with_user_overrides(dataset, eval_env, user_score)
    if dataset_path is not None:
        dataset = load_hdf5_file(Path(dataset_path), eval_env, eval_env and d4rl_score_for_env(eval_env))
    elif name == generated.TOY_NAME:
        dataset = generated.load_toy(toy_size, seed)
    elif name in generated.FETCH_TASKS:
        dataset = generated.load_fetch(name, fetch_starts, seed, data_dir, fetch_data)
    elif name.startswith(generated.LOCAL_PREFIX):
        dataset = generated.load_local(name.removeprefix(generated.LOCAL_PREFIX), data_dir)
    elif "/" in env_name:
        dataset = load_minari(env_name, eval_env)
    elif name in D4RL_NAMES:
        dataset = load_d4rl(name, d4rl_dir, dataset_url)
    else:
        raise UserInputError(unknown_name_message(env_name))
    if scenario != NO_SCENARIO:
        dataset = scenarios.two_datasets(dataset.name, {dataset.name: dataset}, None, scenario, reward_set_ratio,
                                         seed, remove_terminals)
    return with_user_overrides(dataset, eval_env, user_score)


def with_user_overrides(dataset: Dataset, eval_env: str | None, user_score) -> Dataset:
    if eval_env is not None:
        dataset = dataclasses.replace(dataset, eval_env_id=eval_env, eval_env_kwargs={})
    if user_score is not None:
        dataset = dataclasses.replace(dataset, score=user_score)
    return dataset


def all_set_loader(name: str, d4rl_dir, dataset_url, data_dir):
    """For <env>-all-v2 and local/<env>-all-v0: a function quality -> that quality's Dataset; else None."""
    if env := scenarios.all_set_env(name, "v2"):
        return lambda quality: load_d4rl(f"{env}-{quality}-v2", d4rl_dir, dataset_url)
    local = name.removeprefix(generated.LOCAL_PREFIX)
    if local != name and (env := scenarios.all_set_env(local, LOCAL_VERSION)):
        return lambda quality: generated.load_local(f"{env}-{quality}-{LOCAL_VERSION}", data_dir)
    return None


def expert_set(load, scenario: str, env_name: str) -> Dataset:
    try:
        return load(scenarios.EXPERT_QUALITY)
    except UserInputError as error:
        raise UserInputError(f"--scenario {scenario} draws the reward set from the expert set of {env_name}: "
                             f"{error}") from None


def folder_to_write(env_name: str, *, dataset_path=None, d4rl_dir=None, data_dir=None, fetch_starts: int = 50,
                    fetch_data: str = "branching", seed: int = 0,
                    scenario: str = NO_SCENARIO) -> tuple[str, Path] | None:
    """(flag, folder) that loading this dataset will write to (a download, a generated set), or None when it
    only reads: so a run can check the folder before any work."""
    name = env_name.lower()
    if dataset_path is not None:
        return None
    if name in generated.FETCH_TASKS and not generated.fetch_file(name, fetch_starts, seed, data_dir,
                                                                  fetch_data).exists():
        return "data_dir", generated_data_dir(data_dir)
    env = scenarios.all_set_env(name, "v2")
    expert = (scenarios.EXPERT_QUALITY,) if scenario in scenarios.NEEDS_EXPERT else ()
    qualities = scenarios.ACTION_SET_QUALITIES + expert
    wanted = [f"{env}-{quality}-v2" for quality in qualities] if env else [name] if name in D4RL_NAMES else []
    if any(not (d4rl_folder(d4rl_dir) / d4rl_file_name(file)).exists() for file in wanted):
        return "d4rl_dir", d4rl_folder(d4rl_dir)
    return None


def is_known_name(env_name: str) -> bool:
    """Whether `load_dataset` knows where to look for a dataset of this name (it may still be missing there)."""
    name = env_name.lower()
    return (name == generated.TOY_NAME or name in generated.FETCH_TASKS or name.startswith(generated.LOCAL_PREFIX)
            or "/" in env_name or name in D4RL_NAMES or scenarios.all_set_env(name, "v2") is not None)


def unknown_name_message(env_name: str) -> str:
    all_sets = tuple(scenarios.all_set_name(env) for env in scenarios.ALL_ENVS)
    known = D4RL_NAMES + all_sets + (generated.TOY_NAME, *generated.FETCH_TASKS)
    matches = difflib.get_close_matches(env_name.lower(), known, n=3)
    suggestion = f"; did you mean {', '.join(matches)}?" if matches else "."
    return (
        f"unknown dataset {env_name!r}{suggestion} Known names: the D4RL MuJoCo v2 sets "
        f"({{{','.join(D4RL_ENVS)}}}-{{{','.join(D4RL_QUALITIES)}}}-v2), their unions "
        f"{{{','.join(scenarios.ALL_ENVS)}}}-all-v2, {generated.TOY_NAME}, "
        f"{', '.join(generated.FETCH_TASKS)}; Minari ids look like "
        "mujoco/halfcheetah/medium-v0; for your own D4RL-format file use --dataset_path FILE --eval_env ENV_ID"
    )
