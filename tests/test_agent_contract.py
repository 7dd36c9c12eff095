"""The contract every registered agent keeps with the trainer, checked for each entry of `AGENTS`.

A new agent is one file and one registry line; this suite then checks it with no new test code. Every agent
trains on toy data that also carries a reward set (agents that learn from one dataset ignore it). Each
agent runs with its own defaults, shrunk for speed by name: settings ending in `batch_size`, `hidden` or
`_steps` (pretraining caps) and `check_every` get small values, so keep those suffixes for such settings.
"""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from agents import AGENTS
from trainer.loop import checkpoint_state, restore
from trainer.pretraining import pretrain_until_converged
from utils.buffer import Buffer
from utils.checkpoints import checkpoints, load_latest_checkpoint, save_checkpoint
from utils.logger import RunLogger
from utils.runtime import MetricAverager, NonFiniteWatch, seed_everything

SMALL = {"batch_size": 32, "hidden": 32, "_steps": 40, "check_every": 20}  # setting-name suffix -> small value
pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
STEPS = 6


def tiny_settings(name: str) -> dict:
    """The agent's settings whose names end in a SMALL suffix, with the small value."""
    return {field.name: value for field in dataclasses.fields(AGENTS[name].Settings)
            for suffix, value in SMALL.items() if field.name.endswith(suffix)}


def make_agent(name: str, buffer: Buffer):
    settings = AGENTS[name].Settings(**tiny_settings(name))
    return AGENTS[name](buffer.obs_dim, buffer.act_dim, settings, discount=0.99).to(buffer.device)


def pretrained_agent(name: str, buffer: Buffer, log_dir, seed: int = 0):
    """A fresh agent after the trainer's pretraining (if it has any), re-seeded for the main loop as the
    trainer does."""
    seed_everything(seed)
    agent = make_agent(name, buffer)
    if agent.pretrain_steps > 0:
        log_dir.mkdir(parents=True, exist_ok=True)
        pretrain_until_converged(agent, buffer, RunLogger(log_dir, {}))
    agent.finish_pretraining(buffer)
    torch.manual_seed(seed + 1)
    return agent


def updated(agent, buffer: Buffer, first: int, last: int) -> dict:
    metrics = {}
    for step in range(first, last + 1):
        metrics = agent.update(buffer, step)
    return metrics


def scenario_flags(name: str) -> list[str]:
    """What a train.py run of the agent needs on the toy task: a scenario for the agents that learn from two
    datasets (the toy task's rows are all terminal, so they stay)."""
    if AGENTS[name].Settings.learns_from_two_datasets:
        return ["--scenario", "rl_sample", "--reward_set_ratio", "0.1", "--remove_terminals", "0"]
    return []


@pytest.fixture(scope="module")
def cpu_buffer(two_set_toy_dataset):
    return Buffer(two_set_toy_dataset, torch.device("cpu"), normalise=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", AGENTS)
def test_update_returns_finite_scalar_tensors_on_the_training_device(name, device, two_set_toy_dataset, tmp_path):
    buffer = Buffer(two_set_toy_dataset, torch.device(device), normalise=True)
    agent = pretrained_agent(name, buffer, tmp_path)
    metrics = updated(agent, buffer, 1, STEPS)
    assert metrics and all(key.isidentifier() for key in metrics)
    for key, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, key
        assert value.device.type == device and not value.requires_grad, key
        assert torch.isfinite(value), key


@pytest.mark.parametrize("name", AGENTS)
def test_act_is_deterministic_and_within_the_action_range(name, cpu_buffer, tmp_path):
    agent = pretrained_agent(name, cpu_buffer, tmp_path)
    updated(agent, cpu_buffer, 1, STEPS)
    states = torch.cat([cpu_buffer.observations[:64], 100.0 * torch.randn(16, cpu_buffer.obs_dim)])
    first = agent.act(states)
    torch.manual_seed(123)  # a different random stream must not change a deterministic action
    second = agent.act(states)
    assert first.shape == (len(states), cpu_buffer.act_dim) and not first.requires_grad
    assert torch.equal(first, second)
    assert first.abs().max() <= 1.0


@pytest.mark.parametrize("name", AGENTS)
def test_state_dict_and_every_optimiser_round_trip(name, cpu_buffer, tmp_path):
    agent = pretrained_agent(name, cpu_buffer, tmp_path)
    updated(agent, cpu_buffer, 1, STEPS)
    torch.manual_seed(7)
    fresh = make_agent(name, cpu_buffer)
    fresh.load_state_dict(agent.state_dict())
    assert set(fresh.optimisers()) == set(agent.optimisers()) and agent.optimisers()
    for key, optimiser in agent.optimisers().items():
        fresh.optimisers()[key].load_state_dict(optimiser.state_dict())
    fresh.finish_pretraining(cpu_buffer)
    for (key, mine), (_, theirs) in zip(agent.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), key
    for key, optimiser in agent.optimisers().items():
        mine, theirs = optimiser.state_dict()["state"], fresh.optimisers()[key].state_dict()["state"]
        assert mine.keys() == theirs.keys() and all(
            torch.equal(mine[i][k], theirs[i][k]) for i in mine for k in mine[i]), key
    states = cpu_buffer.observations[:32]
    assert torch.equal(agent.act(states), fresh.act(states))


@pytest.mark.parametrize("name", AGENTS)
def test_resuming_from_a_checkpoint_gives_bit_identical_parameters_on_cpu(name, cpu_buffer, tmp_path):
    straight = pretrained_agent(name, cpu_buffer, tmp_path / "straight")
    updated(straight, cpu_buffer, 1, 2 * STEPS)

    interrupted = pretrained_agent(name, cpu_buffer, tmp_path / "interrupted")
    updated(interrupted, cpu_buffer, 1, STEPS)
    save_checkpoint(tmp_path, STEPS, checkpoint_state(STEPS, interrupted, MetricAverager(), NonFiniteWatch(), {}))
    seed_everything(99)  # a new process: other weights, other random streams, until the checkpoint is restored
    resumed = make_agent(name, cpu_buffer)
    restore(resumed, cpu_buffer, load_latest_checkpoint(tmp_path))
    updated(resumed, cpu_buffer, STEPS + 1, 2 * STEPS)

    for (key, mine), (_, theirs) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), key


@pytest.mark.parametrize("name", AGENTS)
def test_a_short_train_py_run_writes_every_output_file(name, tmp_path, repo, cpu_buffer):
    settings_file = tmp_path / "tiny.yaml"
    settings_file.write_text(yaml.safe_dump(tiny_settings(name)))
    command = [sys.executable, "train.py", "--agent", name, "--config", str(settings_file), "--toy_size", "512",
               "--training_steps", "20", "--eval_every", "10", "--eval_episodes", "3",
               "--log_path", str(tmp_path / "runs"), "--gmm_dir", str(tmp_path / "gmm"), *scenario_flags(name)]
    result = subprocess.run(command, cwd=repo, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()

    config = json.loads((run_dir / "config.json").read_text())
    assert config["agent"] == name and config["config_files"][-1] == str(settings_file.resolve())
    assert all(config[key] == value for key, value in tiny_settings(name).items())
    rows = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    header = (run_dir / "progress.csv").read_text().splitlines()[0].split(",")
    assert [row["step"] for row in rows] == [10, 20] and header == list(rows[0])
    assert any(key.startswith("train/") for key in header) and "eval/normalised_score" in header
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_score"] == rows[-1]["eval/normalised_score"] and summary["steps"] == 20
    assert [path.name for path in checkpoints(run_dir)] == ["checkpoint_000000010.pt", "checkpoint_000000020.pt"]
    if make_agent(name, cpu_buffer).pretrain_steps > 0:
        assert (run_dir / "pretraining.csv").is_file() and (run_dir / "pretraining.jsonl").is_file()
        assert any((tmp_path / "gmm").iterdir())  # the pretrained model is cached
