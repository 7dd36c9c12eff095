"""The parts of a run, built from its Config: the dataset, the agent, the wandb options, and the folders it
will write to, checked before any work."""

import os
from pathlib import Path

import torch

from agents import AGENTS
from agents.base import Agent
from datasources import folder_to_write, load_dataset
from utils.buffer import Buffer
from utils.dataset import Dataset
from utils.errors import UserInputError
from utils.settings import Config


def load_data(config: Config) -> Dataset:
    run = config.run
    return load_dataset(run.env_name, dataset_path=run.dataset_path or None, eval_env=run.eval_env or None,
                        d4rl_dir=run.d4rl_dir or None, dataset_url=run.dataset_url or None,
                        toy_size=run.toy_size, fetch_starts=run.fetch_starts, fetch_data=run.fetch_data,
                        data_dir=run.data_dir or None,
                        seed=run.seed, ref_min_score=run.ref_min_score, ref_max_score=run.ref_max_score,
                        scenario=run.scenario, reward_set_ratio=run.reward_set_ratio,
                        remove_terminals=run.remove_terminals)


def make_buffer(config: Config, dataset: Dataset, device: torch.device) -> Buffer:
    run = config.run
    return Buffer(dataset, device, run.normalise, scaler_noise=run.scaler_noise, seed=run.seed)


def make_agent(config: Config, buffer: Buffer) -> Agent:
    agent_class = AGENTS[config.run.agent]
    return agent_class(buffer.obs_dim, buffer.act_dim, config.agent, config.run.discount).to(buffer.device)


def wandb_options(config: Config, dataset: Dataset) -> dict | None:
    run = config.run
    if not run.enable_wandb:
        return None
    return {"project": run.project, "group": run.group or f"{dataset.name}_{run.agent}",
            "name": run.name or f"{run.agent}_{dataset.name}_seed{run.seed}"}


def check_output_folders(config: Config) -> None:
    """Every folder the run will write to exists as a writable folder or can be created, checked in the first
    second rather than after hours of pretraining."""
    run = config.run
    folders = {"run_dir": run.run_dir} if run.run_dir else {"log_path": run.log_path}
    if run.save_gmm:
        folders["gmm_dir"] = run.gmm_dir
    data = folder_to_write(run.env_name, dataset_path=run.dataset_path or None, d4rl_dir=run.d4rl_dir or None,
                           data_dir=run.data_dir or None, fetch_starts=run.fetch_starts, fetch_data=run.fetch_data,
                           seed=run.seed, scenario=run.scenario)
    if data is not None:
        folders[data[0]] = data[1]
    for flag, folder in folders.items():
        check_writable_folder(flag, Path(folder).expanduser())


def check_writable_folder(flag: str, folder: Path) -> None:
    nearest = next(path for path in (folder, *folder.parents) if path.exists())  # the folder, or where it would go
    if not nearest.is_dir():
        raise UserInputError(f"--{flag} {folder}: {nearest} is a file, not a folder; choose another --{flag}")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise UserInputError(f"--{flag} {folder}: {nearest} is not writable; choose a writable --{flag}")
