"""Flags + configs/<agent>/<dataset>.yaml + defaults -> one validated Config.

Precedence: command-line flags, then the YAML file for the agent and dataset, then the defaults below.
Every setting, of the run or of the chosen agent, is a flag with a one-line help text.
"""

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from agents import AGENTS
from agents.base import AgentSettings, setting
from utils.datasets import user_score_reference
from utils.errors import UserInputError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class RunSettings:
    env_name: str = setting("toy-multimodal", "dataset: a D4RL name (hopper-medium-replay-v2), a Minari id "
                            "(mujoco/hopper/medium-v0), toy-multimodal, fetch{reach,push,pick}-fourgoal-v0, "
                            "or a label for --dataset_path")
    agent: str = setting("lom", "algorithm", tuple(AGENTS))
    seed: int = setting(0, "random seed of networks, sampling and evaluation")
    discount: float = setting(0.99, "discount factor gamma", at_least=0, at_most=1)
    normalise: bool = setting(True, "1: z-score states with the dataset's mean and std; 0: raw states")
    training_steps: int = setting(1_000_000, "update steps of the main loop (after pretraining)", at_least=1)
    eval_every: int = setting(10_000, "steps between evaluations (the last step is always evaluated)",
                              at_least=1)
    eval_episodes: int = setting(10, "episodes per evaluation, run side by side in a vector env", at_least=1)
    device: str = setting("auto", "training device; auto picks cuda when available", ("auto", "cpu", "cuda"))
    log_path: str = setting("./runs", "folder that receives one directory per run")
    enable_wandb: bool = setting(False, "1: also log to Weights & Biases")
    project: str = setting("LOM", "wandb project")
    group: str = setting("", "wandb group (default: <dataset>_<agent>)")
    name: str = setting("", "wandb run name (default: <agent>_<dataset>_seed<seed>)")
    save_gmm: bool = setting(True, "1: cache the pretrained MDN in --gmm_dir and reuse it for the same data, "
                             "settings and seed")
    retrain_gmm: bool = setting(False, "1: pretrain the MDN again even if a cached one exists, and replace it")
    gmm_dir: str = setting("./gmm_models", "folder of the pretrained-MDN cache")
    dataset_path: str = setting("", "a D4RL-format HDF5 file to train on instead of a named dataset")
    eval_env: str = setting("", "gymnasium id to evaluate a --dataset_path policy on (module:EnvId works)")
    d4rl_dir: str = setting("", "folder of D4RL files (default: $D4RL_DATASET_DIR, else ~/.d4rl/datasets)")
    dataset_url: str = setting("", "base URL to download D4RL files from, e.g. a mirror "
                               "(default: $D4RL_DATASET_URL, else the original server)")
    toy_size: int = setting(10_000, "number of transitions of the toy-multimodal dataset", at_least=1)
    fetch_starts: int = setting(200, "start states of the generated fetch*-fourgoal-v0 data (4 expert "
                                "trajectories of 50 steps from each)", at_least=1)
    data_dir: str = setting("", "folder for the datasets this project generates (default: $LOM_DATA_DIR, "
                            "else ~/.cache/lom/datasets)")
    ref_min_score: float | None = setting(None, "return that scores 0 (with --dataset_path)")
    ref_max_score: float | None = setting(None, "return that scores 100 (with --dataset_path)")
    resume: str = setting("", "continue an interrupted run: its directory (its own settings are used), or "
                          "auto: the newest unfinished run of this dataset, agent and seed under --log_path, "
                          "else a new run")
    deterministic: bool = setting(False, "1: deterministic torch algorithms (a resumed run then matches an "
                                  "uninterrupted one bit for bit on the CPU)")


@dataclass
class Config:
    run: RunSettings
    agent: AgentSettings

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self.run), **dataclasses.asdict(self.agent)}


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")


def value_type(field: dataclasses.Field):
    """The callable that turns a flag's or YAML's value into the field's type (float for `float | None`)."""
    hint = field.type if not isinstance(field.type, str) else eval(field.type, vars(typing))
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return parse_bool if hint is bool else hint


def add_flags(parser: argparse.ArgumentParser, settings_class: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for field in fields(settings_class):
        choices = field.metadata.get("choices")
        shown = int(field.default) if isinstance(field.default, bool) else field.default
        # Named choices (agent, device, loss variants) are case-insensitive: --agent LOM works.
        kind = str.lower if choices else value_type(field)
        group.add_argument(f"--{field.name}", type=kind, choices=choices,
                           help=f"{field.metadata['help']} (default: {shown!r})")


class FlagParser(argparse.ArgumentParser):
    """Reports a bad flag as a UserInputError (one line, exit 2) instead of printing the usage block."""

    def error(self, message: str):
        raise UserInputError(f"{message} (see python train.py --help)")


def build_parser(agent_name: str) -> argparse.ArgumentParser:
    parser = FlagParser(
        prog="train.py", argument_default=argparse.SUPPRESS,
        description="Train an offline RL agent (LOM by default) on a dataset, evaluate it and log the scores.",
        epilog=f"Agent flags shown are {agent_name}'s; for another agent: python train.py --agent NAME --help. "
               "Precedence: flags, then configs/<agent>/<dataset>.yaml, then the defaults.")
    add_flags(parser, RunSettings, "run")
    add_flags(parser, AGENTS[agent_name].Settings, f"{agent_name} settings")
    return parser


def yaml_overrides(agent_name: str, env_name: str) -> dict:
    path = CONFIG_DIR / agent_name / f"{env_name.lower()}.yaml"
    if not path.is_file():
        return {}
    with open(path) as file:
        return yaml.safe_load(file) or {}


def coerce(settings_class: type, values: dict, source: str) -> dict:
    """Check names and convert types of settings read from YAML."""
    known = {field.name: field for field in fields(settings_class)}
    converted = {}
    for key, value in values.items():
        if key not in known:
            raise UserInputError(f"{source}: unknown setting {key!r}")
        try:
            converted[key] = None if value is None else value_type(known[key])(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
            raise UserInputError(f"{source}: bad value for {key}: {error}") from None
    return converted


def parse_config(argv: list[str] | None = None) -> Config:
    pre = FlagParser(add_help=False)
    pre.add_argument("--agent", type=str.lower, default=RunSettings.agent)
    pre.add_argument("--env_name", type=str, default=RunSettings.env_name)
    early, _ = pre.parse_known_args(argv)
    if early.agent not in AGENTS:
        raise UserInputError(f"unknown agent {early.agent!r}; choose one of: {', '.join(AGENTS)}")
    agent_class = AGENTS[early.agent]
    flags = vars(build_parser(early.agent).parse_args(argv))
    flags["agent"] = early.agent

    run_names = {field.name for field in fields(RunSettings)}
    source = f"configs/{early.agent}/{early.env_name.lower()}.yaml"
    from_yaml = yaml_overrides(early.agent, early.env_name)
    yaml_run = coerce(RunSettings, {k: v for k, v in from_yaml.items() if k in run_names}, source)
    yaml_agent = coerce(agent_class.Settings, {k: v for k, v in from_yaml.items() if k not in run_names}, source)

    run = RunSettings(**{**yaml_run, **{k: v for k, v in flags.items() if k in run_names}})
    agent = agent_class.Settings(**{**yaml_agent, **{k: v for k, v in flags.items() if k not in run_names}})
    config = Config(run=run, agent=agent)
    validate(config)
    return config


def bound_problem(name: str, value, metadata) -> str | None:
    if metadata.get("above") is not None and not value > metadata["above"]:
        return f"--{name} must be greater than {metadata['above']}, got {value}"
    if metadata.get("at_least") is not None and not value >= metadata["at_least"]:
        return f"--{name} must be at least {metadata['at_least']}, got {value}"
    if metadata.get("below") is not None and not value < metadata["below"]:
        return f"--{name} must be less than {metadata['below']}, got {value}"
    if metadata.get("at_most") is not None and not value <= metadata["at_most"]:
        return f"--{name} must be at most {metadata['at_most']}, got {value}"
    return None


def validate(config: Config) -> None:
    """Settings no run can succeed with, caught before any data is loaded."""
    run = config.run
    for settings in (run, config.agent):
        for field in fields(settings):
            problem = bound_problem(field.name, getattr(settings, field.name), field.metadata)
            if problem:
                raise UserInputError(problem)
    if run.eval_every > run.training_steps:
        raise UserInputError(f"--eval_every ({run.eval_every}) is larger than --training_steps "
                             f"({run.training_steps}): no evaluation would run; lower --eval_every")
    user_score_reference(run.ref_min_score, run.ref_max_score)  # raises on half a pair, before any data loads


def check_against_dataset(config: Config, size: int) -> None:
    """Settings that only the loaded data can refute: no batch may be larger than the dataset."""
    for field in fields(config.agent):
        value = getattr(config.agent, field.name)
        if field.name.endswith("batch_size") and value > size:
            raise UserInputError(f"--{field.name} ({value}) is larger than the dataset ({size} rows); "
                                 f"lower it to at most {size}")


def saved_config(run_dir: Path) -> Config:
    """The settings a run was started with, read back from its config.json."""
    path = Path(run_dir) / "config.json"
    try:
        values = json.loads(path.read_text())
        agent_class = AGENTS[values["agent"]]
    except (OSError, ValueError, KeyError) as error:
        raise UserInputError(f"--resume {run_dir}: cannot read the run's settings from {path} ({error})") from None
    run_names = {field.name for field in fields(RunSettings)}
    agent_names = {field.name for field in fields(agent_class.Settings)}
    run = RunSettings(**{k: v for k, v in values.items() if k in run_names} | {"resume": str(run_dir)})
    return Config(run=run, agent=agent_class.Settings(**{k: v for k, v in values.items() if k in agent_names}))
