"""D4RL-format HDF5 files: the transition arrays by key, and a user's own file (`--dataset_path`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from utils.dataset import Dataset, ScoreReference, one_line, transitions_from_arrays
from utils.errors import UserInputError

HDF5_REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
HDF5_OPTIONAL_KEYS = ("timeouts", "next_observations")


def read_hdf5(path: Path) -> dict[str, np.ndarray]:
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
            f"cannot read {path} as HDF5 ({one_line(err)}); replace it with a good copy "
            "(a D4RL file is downloaded again once deleted)"
        ) from err


def load_hdf5_file(path: Path, eval_env: str | None, score: ScoreReference | None) -> Dataset:
    """A user's file, evaluated on `eval_env` and scored with `score` (None: raw returns only)."""
    if eval_env is None:
        raise UserInputError("--dataset_path needs --eval_env ENV_ID (a gymnasium id, e.g. Hopper-v4 or module:EnvId)")
    if not path.is_file():
        raise UserInputError(f"--dataset_path {path} is not a file")
    return transitions_from_arrays(path.stem, **read_hdf5(path), eval_env_id=eval_env, score=score, source=str(path))
