"""Checkpoints of a run: every network, optimiser, RNG state and the logger's position, written atomically.

A run directory keeps its two newest checkpoints, `checkpoint_<step>.pt`. They are written to a temporary
file in the same directory and renamed, so a crash (even SIGKILL) never leaves a half-written one.
"""

import random
import re
import sys
from pathlib import Path

import numpy as np
import torch

from utils.dataset import one_line
from utils.errors import UserInputError
from utils.files import set_aside, written_atomically

KEEP = 2
NAME = re.compile(r"checkpoint_(\d+)\.pt")


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    found = [(int(match.group(1)), path) for path in run_dir.glob("checkpoint_*.pt") if (match := NAME.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def save_checkpoint(run_dir: Path, step: int, state: dict) -> Path:
    path = run_dir / f"checkpoint_{step:09d}.pt"
    with written_atomically(path) as partial:
        torch.save(state, partial)
    for old in checkpoints(run_dir)[:-KEEP]:
        old.unlink()
    return path


def load_latest_checkpoint(run_dir: Path) -> dict | None:
    """The newest checkpoint that can be read; None when the run has none. An unreadable one (a disk error,
    a file damaged after it was written) is moved aside as *.unreadable and the one before it is used, with a
    one-line warning naming it; when none can be read, a one-line error."""
    found = checkpoints(run_dir)
    problems = []
    for path in reversed(found):
        try:
            # Our own files: they hold numpy RNG states, which the weights-only loader refuses.
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # torch.load fails in many ways on a damaged file: zip, pickle, EOF, OS
            problems.append((path, set_aside(path), one_line(error)))
            continue
        for damaged, aside, reason in problems:
            print(f"warning: cannot read the checkpoint {damaged} ({reason}); moved it to {aside.name} and resumed "
                  f"from {path.name}", file=sys.stderr)
        return state
    if found:
        raise UserInputError(f"--resume {run_dir}: none of its checkpoints can be read ({problems[0][2]}); each was "
                             "moved aside as *.unreadable; start a new run")
    return None


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
