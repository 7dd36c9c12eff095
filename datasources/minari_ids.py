"""Minari datasets by id (mujoco/hopper/medium-v0, ...): episodes laid end to end, evaluated on the env
the dataset names, scored with Minari's reference scores. The minari package is imported only when used."""

from __future__ import annotations

import dataclasses
import json
import os

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec, WrapperSpec

from utils.dataset import Dataset, ScoreReference, one_line, transitions_from_arrays
from utils.errors import UserInputError


def load_minari(dataset_id: str, eval_env: str | None) -> Dataset:
    import minari  # imported here: only Minari ids need it

    try:
        minari_dataset = minari.load_dataset(dataset_id, download=True)
    except Exception as err:  # minari's failures vary: missing extras, network, unknown or incompatible id
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise UserInputError(
            f"cannot load Minari dataset {dataset_id} ({one_line(err)}): it is not in {root} "
            f"(set by MINARI_DATASETS_PATH) and could not be downloaded; run `minari download {dataset_id}` "
            "on a machine with internet and copy it there"
        ) from err
    for role, space in (("observation", minari_dataset.observation_space), ("action", minari_dataset.action_space)):
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise UserInputError(
                f"Minari dataset {dataset_id}: only flat Box spaces are supported, its {role} space is {space}"
            )

    metadata = minari_dataset.storage.metadata
    return transitions_from_arrays(
        dataset_id,
        **_flatten_minari_episodes(minari_dataset),
        eval_env_id=eval_env or _minari_eval_env_spec(dataset_id, metadata),
        score=_minari_score(metadata),
        source=f"Minari {dataset_id}",
    )


def _minari_score(metadata: dict) -> ScoreReference | None:
    low, high = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    return None if low is None or high is None else ScoreReference(float(low), float(high), "Minari")


def _flatten_minari_episodes(minari_dataset) -> dict[str, np.ndarray]:
    """Episodes laid end to end; an episode that ends neither terminated nor truncated is marked as timed out."""
    parts = {key: [] for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")}
    for episode in minari_dataset.iterate_episodes():
        timeouts = np.asarray(episode.truncations, bool).copy()
        timeouts[-1] |= not episode.terminations[-1]
        parts["observations"].append(episode.observations[:-1])
        parts["next_observations"].append(episode.observations[1:])
        parts["actions"].append(episode.actions)
        parts["rewards"].append(episode.rewards)
        parts["terminals"].append(episode.terminations)
        parts["timeouts"].append(timeouts)
    return {key: np.concatenate(arrays) for key, arrays in parts.items()}


def _minari_eval_env_spec(dataset_id: str, metadata: dict) -> EnvSpec:
    spec_json = metadata.get("eval_env_spec") or metadata.get("env_spec")
    if spec_json is None:
        raise UserInputError(f"Minari dataset {dataset_id} names no environment; pass --eval_env ENV_ID")
    fields = json.loads(spec_json)
    # Keep only what this gymnasium's EnvSpec accepts: specs written by older releases carry removed fields.
    accepted = {field.name for field in dataclasses.fields(EnvSpec) if field.init}
    fields = {key: value for key, value in fields.items() if key in accepted}
    fields["additional_wrappers"] = tuple(WrapperSpec(**wrapper) for wrapper in fields.get("additional_wrappers", ()))
    return EnvSpec(**fields)
