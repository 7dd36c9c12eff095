"""The parts of a run, built from its Config: the dataset, the agent, the wandb options."""

import torch

from agents import AGENTS
from agents.base import Agent
from utils.buffer import Buffer
from datasources import load_dataset
from utils.dataset import Dataset
from utils.settings import Config


def load_data(config: Config) -> Dataset:
    run = config.run
    return load_dataset(run.env_name, dataset_path=run.dataset_path or None, eval_env=run.eval_env or None,
                        d4rl_dir=run.d4rl_dir or None, dataset_url=run.dataset_url or None,
                        toy_size=run.toy_size, fetch_starts=run.fetch_starts, data_dir=run.data_dir or None,
                        seed=run.seed, ref_min_score=run.ref_min_score, ref_max_score=run.ref_max_score)


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
