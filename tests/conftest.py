"""Fixtures shared by several test modules."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datasources import load_dataset
from envs import fetch_fourgoal
from envs.toy_multimodal import mode_centres

TOY_PROBE_STATES = np.linspace(-0.9, 0.9, 7)  # raw toy states across the range the data covers


def pytest_configure(config):
    # Every network in the tests is tiny: one thread per process is as fast, and the train.py processes the
    # tests start (which inherit this) no longer spin OpenMP threads against each other on a 2-core machine.
    # Set even when the caller exported another value: with OMP_NUM_THREADS=2 the suite took twice as long.
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root: the working directory of every train.py and script subprocess."""
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def one_torch_thread():
    """For tests of tiny networks: one thread is as fast, and does not stall when another process shares the
    two cores (OpenMP threads then wait on each other: we measured steps tens of times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_dataset():
    """512 rows of the built-in toy task (seed 0): small enough for any agent to train on in a second."""
    return load_dataset("toy-multimodal", toy_size=512, seed=0)


@pytest.fixture(scope="session")
def two_set_toy_dataset():
    """The toy fixture's rows as an action set, with a reward set of 10 % of them (whole trajectories): data every
    agent can train on, those that learn from two datasets included. Every toy row is terminal, so terminals
    stay."""
    return load_dataset("toy-multimodal", toy_size=512, seed=0, scenario="rl_sample", reward_set_ratio=0.1,
                        remove_terminals=False)


@pytest.fixture(scope="session")
def toy_buffer(toy_dataset):
    """The toy fixture's rows in a normalised CPU Buffer, as the agents train on them."""
    from utils.buffer import Buffer

    return Buffer(toy_dataset, torch.device("cpu"), normalise=True)


@pytest.fixture(scope="session")
def act_on_toy_probe():
    """agent, buffer -> the agent's actions at seven raw toy states from -0.9 to 0.9 (7, 2) and their distances
    to the centre of the rewarded mode there (7,): where the agents that should pick that mode are checked."""
    def act(agent, buffer):
        actions = agent.act(buffer.normaliser(torch.tensor(TOY_PROBE_STATES[:, None], dtype=torch.float32)))
        rewarded = torch.tensor(mode_centres(TOY_PROBE_STATES)[:, 0], dtype=torch.float32)
        return actions, (actions - rewarded).norm(dim=-1)
    return act


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
