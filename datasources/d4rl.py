"""D4RL MuJoCo v2: the dataset names, their evaluation envs and reference returns, and the download.

Files are read from D4RL's own cache folder under D4RL's file names, so downloads made by D4RL are reused.
"""

from __future__ import annotations

import http.client
import os
import urllib.request
from pathlib import Path

import h5py
from tqdm import tqdm

from datasources.hdf5 import d4rl_format_problem, read_hdf5
from utils.d4rl_tasks import D4RL_TASKS
from utils.dataset import Dataset, one_line, transitions_from_arrays
from utils.errors import UserInputError
from utils.files import written_atomically

D4RL_ENVS = ("halfcheetah", "hopper", "walker2d", "ant")
D4RL_QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")
D4RL_NAMES = tuple(f"{env}-{quality}-v2" for env in D4RL_ENVS for quality in D4RL_QUALITIES)
D4RL_DEFAULT_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
D4RL_DEFAULT_DIR = "~/.d4rl/datasets"  # D4RL's own cache: downloads made by D4RL are reused
DOWNLOAD_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_S = 60


def d4rl_file_name(name: str) -> str:
    """File name on D4RL's server and in its cache, e.g. hopper-medium-replay-v2 -> hopper_medium_replay-v2.hdf5."""
    env, quality = name.lower().removesuffix("-v2").split("-", 1)
    return f"{env}_{quality.replace('-', '_')}-v2.hdf5"


def d4rl_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder holding D4RL files: the argument, else $D4RL_DATASET_DIR, else D4RL's default cache."""
    return Path(override or os.environ.get("D4RL_DATASET_DIR") or D4RL_DEFAULT_DIR).expanduser()


def load_d4rl(name: str, folder: str | os.PathLike | None, url: str | None) -> Dataset:
    path = d4rl_dir(folder) / d4rl_file_name(name)
    if not path.exists():
        base = url or os.environ.get("D4RL_DATASET_URL") or D4RL_DEFAULT_URL
        download(f"{base.rstrip('/')}/{path.name}", path)
    task = D4RL_TASKS[name.split("-", 1)[0]]
    return transitions_from_arrays(
        name,
        **read_hdf5(path),
        eval_env_id=task.eval_env_id,
        eval_env_kwargs=task.eval_env_kwargs,
        score=task.score,
        source=str(path),
    )


def download(url: str, path: Path) -> None:
    """Fetch `url` to `path`; the file appears only when complete and a D4RL-format HDF5 file (a unique temp
    file makes parallel runs safe)."""
    try:
        with written_atomically(path) as partial:
            _fetch(url, partial, path.name)
            if problem := _downloaded_file_problem(partial):
                raise UserInputError(_download_failure(url, path, f": {problem}"))
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise UserInputError(_download_failure(url, path, f" ({one_line(err)})")) from err


def _downloaded_file_problem(partial: Path) -> str | None:
    """Checked before the file enters the cache, where every later run would trip on it: a proxy's or
    mirror's error page served with status 200, or a transfer cut short without a Content-Length."""
    try:
        with h5py.File(partial, "r") as file:
            return d4rl_format_problem(file)
    except OSError as err:
        return f"it does not open as HDF5 ({one_line(err)})"


def _download_failure(url: str, path: Path, what: str) -> str:
    """The one-line error for a download that failed: `what` went wrong, and the ways around it."""
    return (f"could not download {url}{what}; put {path.name} in {path.parent} by hand, "
            "or use --dataset_url URL (or D4RL_DATASET_URL) for a mirror, "
            "or --d4rl_dir DIR (or D4RL_DATASET_DIR) for a folder that has it")


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
