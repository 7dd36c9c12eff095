"""Offline datasets as flat numpy transitions: D4RL MuJoCo v2, Minari, D4RL-format files, the built-in toy.

Every source ends in `transitions_from_arrays`, the one place that decides episode boundaries, next
observations, next actions and which rows have a SARSA target. `load_dataset` picks the source from
the name. Nothing here imports torch: the buffer moves the arrays to the training device.
"""

from __future__ import annotations

import dataclasses
import difflib
import http.client
import json
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import h5py
import numpy as np
from gymnasium.envs.registration import EnvSpec, WrapperSpec
from tqdm import tqdm

import envs
from envs import fetch_fourgoal, toy_multimodal  # fetch_fourgoal needs gymnasium-robotics only to make envs
from utils.errors import UserInputError
from utils.files import written_atomically

TOY_NAME = "toy-multimodal"
FETCH_REACH_NAME = "fetchreach-fourgoal-v0"
FETCH_PUSH_NAME = "fetchpush-fourgoal-v0"
FETCH_PICK_NAME = "fetchpick-fourgoal-v0"
FETCH_TASKS = {FETCH_REACH_NAME: "reach", FETCH_PUSH_NAME: "push", FETCH_PICK_NAME: "pick"}  # envs.fetch_fourgoal.TASKS
GENERATED_DEFAULT_DIR = "~/.cache/lom/datasets"  # datasets this project makes (override: $LOM_DATA_DIR)
D4RL_ENVS = ("halfcheetah", "hopper", "walker2d", "ant")
D4RL_QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")
D4RL_NAMES = tuple(f"{env}-{quality}-v2" for env in D4RL_ENVS for quality in D4RL_QUALITIES)
D4RL_DEFAULT_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
D4RL_DEFAULT_DIR = "~/.d4rl/datasets"  # D4RL's own cache: downloads made by D4RL are reused
HDF5_REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
HDF5_OPTIONAL_KEYS = ("timeouts", "next_observations")
LOCAL_PREFIX = "local/"  # local/<env>-<quality>-v0: made by scripts/collect_dataset.py, read from <data dir>/local
LOCAL_SCORE_SOURCE = "D4RL reference returns"  # local sets are scored with D4RL's constants, labelled as such
DOWNLOAD_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class ScoreReference:
    """Normalised score = 100 * (return - min_score) / (max_score - min_score)."""

    min_score: float
    max_score: float
    source: str

    def __post_init__(self):
        if not self.max_score > self.min_score:
            raise UserInputError(
                f"reference scores need max > min, got min {self.min_score} and max {self.max_score}"
            )

    def normalise(self, returns):
        """Normalised score of a return (float in, float out) or of an array of returns."""
        scores = 100.0 * (np.asarray(returns, dtype=np.float64) - self.min_score) / (self.max_score - self.min_score)
        return float(scores) if np.ndim(returns) == 0 else scores


class D4RLTask(NamedTuple):
    eval_env_id: str
    eval_env_kwargs: dict
    score: ScoreReference


# The v2 data came from gym's v3 MuJoCo envs; gymnasium's v4 envs share their models and observation layout.
# gym's v3 Ant observed contact forces (111 dims); gymnasium's Ant-v4 does so only when asked.
D4RL_TASKS = {
    "halfcheetah": D4RLTask("HalfCheetah-v4", {}, ScoreReference(-280.178953, 12135.0, "D4RL")),
    "hopper": D4RLTask("Hopper-v4", {}, ScoreReference(-20.272305, 3234.3, "D4RL")),
    "walker2d": D4RLTask("Walker2d-v4", {}, ScoreReference(1.629008, 4592.3, "D4RL")),
    "ant": D4RLTask("Ant-v4", {"use_contact_forces": True}, ScoreReference(-325.6, 3879.7, "D4RL")),
}


@dataclass
class Dataset:
    """Transitions in file order, float32, plus what evaluation needs to know about their task."""

    name: str
    observations: np.ndarray  # (N, obs_dim)
    actions: np.ndarray  # (N, act_dim)
    rewards: np.ndarray  # (N,)
    terminals: np.ndarray  # (N,) 1.0 where the episode truly ends; timeouts stay 0
    next_observations: np.ndarray  # (N, obs_dim)
    next_actions: np.ndarray  # (N, act_dim) action at next_observations in the same episode
    has_td_target: np.ndarray  # (N,) bool: row is terminal, or row i+1 continues its episode
    eval_env_id: str | EnvSpec  # what gymnasium.make_vec gets
    eval_env_kwargs: dict
    score: ScoreReference | None  # None: only raw returns can be reported
    source: str

    @property
    def size(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def episode_ends(self) -> np.ndarray:
        """(N,) bool, True on the last row of each episode."""
        return (self.terminals > 0) | ~self.has_td_target

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.sum())


def transitions_from_arrays(
    name: str,
    observations,
    actions,
    rewards,
    terminals,
    timeouts=None,
    next_observations=None,
    *,
    eval_env_id: str | EnvSpec,
    eval_env_kwargs: dict | None = None,
    score: ScoreReference | None = None,
    source: str,
) -> Dataset:
    """Build a Dataset from flat D4RL-style arrays in file order.

    A row ends its episode when it is terminal, timed out, or the last row. Only terminals cut the
    bootstrap. A row whose episode goes on gets the next row's action (and observation, if the file
    has none); a row that ends without a terminal has no next action, so it has no SARSA target and is
    kept for imitation only. Where the next step is unknown or never used (terminal rows, rows without
    a target) the row's own observation/action fill in, so every value stays finite. This replaces
    D4RL's qlearning_dataset, which drops the last step of timed-out episodes instead.
    """
    observations = _float_matrix(observations, "observations", source)
    actions = _float_matrix(actions, "actions", source)
    size = len(observations)
    rewards = _float_vector(rewards, "rewards", size, source)
    terminals = _float_vector(terminals, "terminals", size, source) != 0
    timeouts = np.zeros(size, bool) if timeouts is None else _float_vector(timeouts, "timeouts", size, source) != 0
    _check_rows(actions, "actions", size, source)

    _check_finite({"observations": observations, "actions": actions, "rewards": rewards}, source)
    _check_action_range(actions, source)

    episode_ends = terminals | timeouts
    episode_ends[-1] = True
    continues = np.flatnonzero(~episode_ends)  # rows whose next row is in the same episode
    next_actions = actions.copy()
    next_actions[continues] = actions[continues + 1]
    if next_observations is None:
        next_observations = observations.copy()
        next_observations[continues] = observations[continues + 1]
    else:
        next_observations = _float_matrix(next_observations, "next_observations", source)
        _check_rows(next_observations, "next_observations", size, source)
        if next_observations.shape != observations.shape:
            raise UserInputError(
                f"{source}: next_observations have shape {next_observations.shape}, observations {observations.shape}"
            )

    return Dataset(
        name=name,
        observations=observations,
        actions=actions,
        rewards=rewards,
        terminals=terminals.astype(np.float32),
        next_observations=next_observations,
        next_actions=next_actions,
        has_td_target=terminals | ~episode_ends,
        eval_env_id=eval_env_id,
        eval_env_kwargs=dict(eval_env_kwargs or {}),
        score=score,
        source=source,
    )


def _check_finite(arrays: dict[str, np.ndarray], source: str) -> None:
    """Refuses NaN or inf in the arrays training reads, saying how many and where the first one is."""
    for key, array in arrays.items():
        bad_rows = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
        if len(bad_rows):
            raise UserInputError(
                f"{source}: {key} has NaN or inf in {len(bad_rows)} row(s), the first at row {bad_rows[0]}; "
                "clean the file (drop or repair those rows) before training"
            )


def _check_action_range(actions: np.ndarray, source: str) -> None:
    """Policies act in [-1, 1] (tanh outputs, clipped samples): actions outside it cannot be imitated."""
    outside = np.flatnonzero((np.abs(actions) > 1.0).any(axis=1))
    if len(outside):
        raise UserInputError(
            f"{source}: {len(outside)} action row(s) lie outside [-1, 1] (the first at row {outside[0]}, "
            f"largest magnitude {np.abs(actions).max():.4g}); rescale the actions to [-1, 1]"
        )


def _float_matrix(values, key: str, source: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or len(array) == 0:
        raise UserInputError(f"{source}: {key} must have shape (rows, features) with rows > 0, got {array.shape}")
    return array


def _float_vector(values, key: str, size: int, source: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    _check_rows(array, key, size, source)
    return array


def _check_rows(array: np.ndarray, key: str, size: int, source: str) -> None:
    if len(array) != size:
        raise UserInputError(f"{source}: {key} has {len(array)} rows but observations have {size}")


def load_dataset(
    env_name: str,
    *,
    dataset_path: str | os.PathLike | None = None,
    eval_env: str | None = None,
    d4rl_dir: str | os.PathLike | None = None,
    dataset_url: str | None = None,
    toy_size: int = 10_000,
    fetch_starts: int = 200,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
) -> Dataset:
    """Load a dataset by name (D4RL v2, Minari id, toy-multimodal, local/<env>-<quality>-v0 made by
    scripts/collect_dataset.py) or from a D4RL-format file.

    `eval_env`, when given, replaces the dataset's evaluation env (with no extra kwargs); it is required
    with `dataset_path`. `ref_min_score`/`ref_max_score`, when both given, replace the score reference.
    """
    user_score = user_score_reference(ref_min_score, ref_max_score)
    if dataset_path is not None:
        dataset = _load_hdf5_file(Path(dataset_path), eval_env)
    elif env_name.lower() == TOY_NAME:
        dataset = _load_toy(toy_size, seed)
    elif env_name.lower() in FETCH_TASKS:
        dataset = _load_fetch(env_name.lower(), fetch_starts, seed, data_dir)
    elif env_name.lower().startswith(LOCAL_PREFIX):
        dataset = _load_local(env_name.lower().removeprefix(LOCAL_PREFIX), data_dir)
    elif "/" in env_name:
        dataset = _load_minari(env_name, eval_env)
    elif env_name.lower() in D4RL_NAMES:
        dataset = _load_d4rl(env_name.lower(), d4rl_dir, dataset_url)
    else:
        raise UserInputError(_unknown_name_message(env_name))
    if eval_env is not None:
        dataset = dataclasses.replace(dataset, eval_env_id=eval_env, eval_env_kwargs={})
    if user_score is not None:
        dataset = dataclasses.replace(dataset, score=user_score)
    return dataset


def user_score_reference(ref_min_score: float | None, ref_max_score: float | None) -> ScoreReference | None:
    if ref_min_score is None and ref_max_score is None:
        return None
    if ref_min_score is None or ref_max_score is None:
        raise UserInputError("give both --ref_min_score and --ref_max_score, or neither")
    return ScoreReference(float(ref_min_score), float(ref_max_score), "user")


def _unknown_name_message(env_name: str) -> str:
    matches = difflib.get_close_matches(env_name.lower(), D4RL_NAMES + (TOY_NAME, *FETCH_TASKS), n=3)
    suggestion = f"; did you mean {', '.join(matches)}?" if matches else "."
    return (
        f"unknown dataset {env_name!r}{suggestion} Known names: the D4RL MuJoCo v2 sets "
        f"({{{','.join(D4RL_ENVS)}}}-{{{','.join(D4RL_QUALITIES)}}}-v2), {TOY_NAME}, "
        f"{', '.join(FETCH_TASKS)}; Minari ids look like "
        "mujoco/halfcheetah/medium-v0; for your own D4RL-format file use --dataset_path FILE --eval_env ENV_ID"
    )


# ---- D4RL MuJoCo v2 -------------------------------------------------------------------------------


def d4rl_file_name(name: str) -> str:
    """File name on D4RL's server and in its cache, e.g. hopper-medium-replay-v2 -> hopper_medium_replay-v2.hdf5."""
    env, quality = name.lower().removesuffix("-v2").split("-", 1)
    return f"{env}_{quality.replace('-', '_')}-v2.hdf5"


def d4rl_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder holding D4RL files: the argument, else $D4RL_DATASET_DIR, else D4RL's default cache."""
    return Path(override or os.environ.get("D4RL_DATASET_DIR") or D4RL_DEFAULT_DIR).expanduser()


def _load_d4rl(name: str, folder: str | os.PathLike | None, url: str | None) -> Dataset:
    path = d4rl_dir(folder) / d4rl_file_name(name)
    if not path.exists():
        base = url or os.environ.get("D4RL_DATASET_URL") or D4RL_DEFAULT_URL
        download(f"{base.rstrip('/')}/{path.name}", path)
    task = D4RL_TASKS[name.split("-", 1)[0]]
    return transitions_from_arrays(
        name,
        **_read_hdf5(path),
        eval_env_id=task.eval_env_id,
        eval_env_kwargs=task.eval_env_kwargs,
        score=task.score,
        source=str(path),
    )


def download(url: str, path: Path) -> None:
    """Fetch `url` to `path`; the file appears only when complete (a unique temp file makes parallel runs safe)."""
    try:
        with written_atomically(path) as partial:
            _fetch(url, partial, path.name)
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise UserInputError(
            f"could not download {url} ({_one_line(err)}); put {path.name} in {path.parent} by hand, "
            "or use --dataset_url URL (or D4RL_DATASET_URL) for a mirror, "
            "or --d4rl_dir DIR (or D4RL_DATASET_DIR) for a folder that has it"
        ) from err
    finally:
        Path(partial).unlink(missing_ok=True)


def _fetch(url: str, target: Path, label: str) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as out:
        expected = int(response.headers.get("Content-Length") or 0) or None
        written = 0
        with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=f"downloading {label}") as bar:
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    if expected is not None and written != expected:
        raise OSError(f"connection closed after {written} of {expected} bytes")


# ---- D4RL-format HDF5 files -----------------------------------------------------------------------


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    """The transition arrays of a D4RL-format file; infos/* and metadata/* are not read."""
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in HDF5_REQUIRED_KEYS if not isinstance(file.get(key), h5py.Dataset)]
            if missing:
                raise UserInputError(
                    f"{path} lacks the dataset key(s) {', '.join(missing)}; a D4RL-format file needs "
                    f"{', '.join(HDF5_REQUIRED_KEYS)} (optional: {', '.join(HDF5_OPTIONAL_KEYS)})"
                )
            keys = HDF5_REQUIRED_KEYS + tuple(k for k in HDF5_OPTIONAL_KEYS if isinstance(file.get(k), h5py.Dataset))
            return {key: file[key][()] for key in keys}
    except OSError as err:
        raise UserInputError(
            f"cannot read {path} as HDF5 ({_one_line(err)}); replace it with a good copy "
            "(a D4RL file is downloaded again once deleted)"
        ) from err


def _load_hdf5_file(path: Path, eval_env: str | None) -> Dataset:
    if eval_env is None:
        raise UserInputError("--dataset_path needs --eval_env ENV_ID (a gymnasium id, e.g. Hopper-v4 or module:EnvId)")
    if not path.is_file():
        raise UserInputError(f"--dataset_path {path} is not a file")
    return transitions_from_arrays(
        path.stem, **_read_hdf5(path), eval_env_id=eval_env, score=_d4rl_score_for_env(eval_env), source=str(path)
    )


def _d4rl_score_for_env(env_id: str) -> ScoreReference | None:
    """D4RL's reference scores when the env is one of D4RL's MuJoCo tasks (any version, module: prefix allowed)."""
    match = re.fullmatch(r"(?:.*:)?(?:.*/)?([A-Za-z0-9]+)-v\d+", env_id)
    task = D4RL_TASKS.get(match.group(1).lower()) if match else None
    return task.score if task else None


# ---- data this project makes: Fetch sets, local locomotion sets (scripts/collect_dataset.py) ------


def local_score_reference(env_id: str) -> ScoreReference | None:
    """D4RL's reference returns for data collected here on one of D4RL's tasks, labelled as such."""
    score = _d4rl_score_for_env(env_id)
    return None if score is None else dataclasses.replace(score, source=LOCAL_SCORE_SOURCE)


def generated_data_dir(folder: str | os.PathLike | None = None) -> Path:
    """Folder of the datasets this project makes: the argument, else $LOM_DATA_DIR, else the cache."""
    return Path(folder or os.environ.get("LOM_DATA_DIR") or GENERATED_DEFAULT_DIR).expanduser()


def _load_local(name: str, folder: str | os.PathLike | None) -> Dataset:
    """A file written by scripts/collect_dataset.py; it names its env, scored by D4RL's reference returns."""
    root = generated_data_dir(folder) / "local"
    path = root / f"{name}.hdf5"
    if not path.is_file():
        env = name.split("-", 1)[0]
        raise UserInputError(
            f"no local dataset {path}; make it with: python scripts/collect_dataset.py --env {env} --out {root}"
        )
    with h5py.File(path, "r") as file:
        env_id = str(file.attrs.get("env_id", ""))
    if not env_id:
        raise UserInputError(f"{path} names no env (attribute env_id); use --dataset_path {path} --eval_env ENV_ID")
    return transitions_from_arrays(
        f"{LOCAL_PREFIX}{name}", **_read_hdf5(path), eval_env_id=env_id, score=local_score_reference(env_id),
        source=str(path)
    )


# ---- Minari ---------------------------------------------------------------------------------------


def _load_minari(dataset_id: str, eval_env: str | None) -> Dataset:
    import minari  # imported here: only Minari ids need it

    try:
        minari_dataset = minari.load_dataset(dataset_id, download=True)
    except Exception as err:  # minari's failures vary: missing extras, network, unknown or incompatible id
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise UserInputError(
            f"cannot load Minari dataset {dataset_id} ({_one_line(err)}): it is not in {root} "
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


# ---- built-in toy task ----------------------------------------------------------------------------


def _load_toy(size: int, seed: int) -> Dataset:
    return transitions_from_arrays(
        TOY_NAME,
        **toy_multimodal.make_dataset(size, seed),
        eval_env_id=envs.TOY_ENV_ID,
        score=ScoreReference(toy_multimodal.RANDOM_POLICY_REWARD, toy_multimodal.OPTIMAL_REWARD, TOY_NAME),
        source=f"generated from seed {seed} ({size} rows)",
    )


def _load_fetch(name: str, starts: int, seed: int, folder: str | os.PathLike | None) -> Dataset:
    """A four-goal Fetch set (`FETCH_TASKS`), made on first use by the scripted expert and kept in the
    data folder: later runs read the file."""
    path = generated_data_dir(folder) / f"{name}_data{fetch_fourgoal.DATA_VERSION}_seed{seed}_starts{starts}.hdf5"
    if not path.exists():
        _write_fetch(path, FETCH_TASKS[name], starts, seed)
    with h5py.File(path, "r") as file:
        low, high = float(file.attrs["ref_min_score"]), float(file.attrs["ref_max_score"])
    return transitions_from_arrays(
        name, **_read_hdf5(path), eval_env_id=envs.FETCH_FOUR_GOAL_IDS[FETCH_TASKS[name]],
        score=ScoreReference(low, high, "random policy = 0, expert to goal 1 = 100"), source=str(path),
    )


def _write_fetch(path: Path, task: str, starts: int, seed: int) -> None:
    tqdm.write(f"making {path.name}: {starts} start states x 4 goals x {fetch_fourgoal.EPISODE_STEPS} steps")
    data = fetch_fourgoal.make_dataset(starts, seed, task=task)
    with written_atomically(path) as partial, h5py.File(partial, "w") as file:
        for key in HDF5_REQUIRED_KEYS + HDF5_OPTIONAL_KEYS:
            file[key] = data[key]
        for key in ("ref_min_score", "ref_max_score", "expert_success"):
            file.attrs[key] = data[key]


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
