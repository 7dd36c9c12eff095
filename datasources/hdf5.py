"""D4RL-format HDF5 files: the transition arrays by key, and a user's own file (`--dataset_path`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from utils.dataset import Dataset, ScoreReference, one_line, row_count_problem, transitions_from_arrays
from utils.errors import UserInputError

HDF5_REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
HDF5_OPTIONAL_KEYS = ("timeouts", "next_observations")
HDF5_PER_STEP_SCALARS = ("rewards", "terminals", "timeouts")  # flattened by transitions_from_arrays


def d4rl_format_problem(file: h5py.File) -> str | None:
    """What keeps an open HDF5 file from being a D4RL-format dataset (a missing key, a key whose row count
    differs from the observations'), or None. Reads shapes only, so it is cheap on a large file."""
    missing = [key for key in HDF5_REQUIRED_KEYS if not isinstance(file.get(key), h5py.Dataset)]
    if missing:
        return (f"it lacks the dataset key(s) {', '.join(missing)}; a D4RL-format file needs "
                f"{', '.join(HDF5_REQUIRED_KEYS)} (optional: {', '.join(HDF5_OPTIONAL_KEYS)})")
    size = _rows(file["observations"], "observations")
    problems = (row_count_problem(key, _rows(file[key], key), size) for key in _present_keys(file))
    return next(filter(None, problems), None)


def _present_keys(file: h5py.File) -> tuple[str, ...]:
    return HDF5_REQUIRED_KEYS + tuple(k for k in HDF5_OPTIONAL_KEYS if isinstance(file.get(k), h5py.Dataset))


def _rows(dataset: h5py.Dataset, key: str) -> int:
    """Rows as transitions_from_arrays counts them: every value of a per-step scalar, else the first axis."""
    return dataset.size if key in HDF5_PER_STEP_SCALARS or not dataset.shape else dataset.shape[0]


def read_hdf5(path: Path) -> dict[str, np.ndarray]:
    """The transition arrays of a D4RL-format file; infos/* and metadata/* are not read."""
    try:
        with h5py.File(path, "r") as file:
            if problem := d4rl_format_problem(file):
                raise UserInputError(f"{path}: {problem}")
            return {key: file[key][()] for key in _present_keys(file)}
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
