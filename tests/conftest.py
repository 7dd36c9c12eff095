"""Fixtures shared by several test modules."""

from pathlib import Path

import pytest

from envs import fetch_fourgoal
from datasources import load_dataset


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root: the working directory of every train.py and script subprocess."""
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def toy_dataset():
    """512 rows of the built-in toy task (seed 0): small enough for any agent to train on in a second."""
    return load_dataset("toy-multimodal", toy_size=512, seed=0)


@pytest.fixture(scope="module")
def reach_env():
    env = fetch_fourgoal.FetchReachFourGoalEnv()
    yield env
    env.close()


@pytest.fixture(scope="module", params=["push", "pick"])
def object_env(request):
    env = fetch_fourgoal.FetchFourGoalEnv(request.param)
    yield env
    env.close()
