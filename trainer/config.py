"""Flags + `--config FILE` + configs/<agent>/<dataset>.yaml + defaults -> one validated Config.

Precedence: command-line flags, then the user's `--config` YAML, then the YAML shipped for the agent and
dataset, then the agent's own run defaults (`Agent.run_defaults`), then the dataclass defaults. Every setting
of the run or of the chosen agent is a flag.
"""

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import yaml

from agents import AGENTS
from utils.errors import UserInputError
from utils.files import written_atomically
from utils.settings import Config, RunSettings, add_agent_flags, add_run_flags, coerce, validate

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs"
RUN_NAMES = frozenset(field.name for field in fields(RunSettings))
# Where the run is and where it computes, not how it learns; config.json records the device it used.
NOT_COMPARED = frozenset({"resume", "log_path", "run_dir", "device"})


class FlagParser(argparse.ArgumentParser):
    """Reports a bad flag as a UserInputError (one line, exit 2) instead of printing the usage block. Flags must
    be spelled in full: a prefix (--train for --training_steps) would silently change meaning when a new
    setting shares it."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise UserInputError(f"{message} (see python train.py --help)")


def agent_summary(name: str) -> str:
    """The first line of the agent module's docstring, or of the class's where a module holds several agents."""
    agent = AGENTS[name]
    shared = sum(other.__module__ == agent.__module__ for other in AGENTS.values()) > 1
    doc = (agent.__doc__ if shared else sys.modules[agent.__module__].__doc__) or name
    return doc.strip().splitlines()[0]


def build_parser(agent_name: str) -> argparse.ArgumentParser:
    agents = "\n".join(f"  {name:<6} {agent_summary(name)}" for name in AGENTS)
    parser = FlagParser(
        prog="train.py", argument_default=argparse.SUPPRESS, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="python train.py [--agent NAME] [--env_name DATASET] [--config FILE] [--SETTING VALUE ...]",
        description="Train an offline RL agent (LOM by default) on a dataset, evaluate it and log the scores.",
        epilog=f"agents (--agent NAME; python train.py --agent NAME --help lists NAME's settings):\n{agents}\n\n"
               "Precedence: flags, then --config FILE, then configs/<agent>/<dataset>.yaml, then the agent's defaults.")
    parser.add_argument("--config", metavar="FILE", help="a YAML file of settings (run and agent) to apply; "
                        "flags override it, and it overrides configs/<agent>/<dataset>.yaml")
    add_run_flags(parser, AGENTS[agent_name].run_defaults)
    add_agent_flags(parser, AGENTS[agent_name].Settings,
                    f"{agent_name} settings (docs/algorithms/{agent_name}.md)")
    return parser


def read_yaml(path: Path, label: str) -> dict:
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as error:
        raise UserInputError(f"{label}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise UserInputError(f"{label}: not valid YAML ({' '.join(str(error).split())})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserInputError(f"{label}: expected a mapping of setting: value, got {type(values).__name__}")
    return values


def user_yaml(path: str | None) -> tuple[dict, str | None]:
    """The `--config` file's settings and its label (None when no file was given)."""
    if path is None:
        return {}, None
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserInputError(f"--config {path}: no such file")
    return read_yaml(file, path), str(file.resolve())


def shipped_yaml(agent_name: str, env_name: str) -> tuple[dict, str | None]:
    """configs/<agent>/<dataset>.yaml (the dataset name in lower case), if there is one."""
    path = CONFIG_DIR / agent_name / f"{env_name.lower()}.yaml"
    if not path.is_file():
        return {}, None
    label = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    return read_yaml(path, label), label


def split_settings(values: dict, agent_name: str, source: str) -> tuple[dict, dict]:
    """A YAML's settings as (run, agent), each converted to its field's type; any other key is an error."""
    settings_class = AGENTS[agent_name].Settings
    agent_names = {field.name for field in fields(settings_class)}
    for key in values:
        if key not in RUN_NAMES and key not in agent_names:
            raise UserInputError(f"{source}: {key!r} is not a setting of the run or of agent {agent_name}; "
                                 f"see python train.py --agent {agent_name} --help")
    run = coerce(RunSettings, {k: v for k, v in values.items() if k in RUN_NAMES}, source)
    agent = coerce(settings_class, {k: v for k, v in values.items() if k not in RUN_NAMES}, source)
    return run, agent


def chosen_agent(name) -> str:
    agent = str(name).lower()
    if agent not in AGENTS:
        raise UserInputError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}")
    return agent


def dataset_label(env_name: str | None, dataset_path: str | None) -> str:
    """The dataset's name, which picks the shipped YAML and labels the run: --env_name; with only
    --dataset_path, the file's name (never the default toy task's)."""
    if env_name:
        return str(env_name)
    return Path(dataset_path).stem if dataset_path else RunSettings.env_name


def parse_config(argv: list[str] | None = None) -> Config:
    pre = FlagParser(add_help=False)
    for name in ("--agent", "--env_name", "--dataset_path", "--config"):
        pre.add_argument(name)
    early, _ = pre.parse_known_args(argv)
    from_user, user_file = user_yaml(early.config)
    # The agent and dataset pick the shipped YAML: from the flags, else from the user's YAML, else defaults.
    agent_name = chosen_agent(early.agent or from_user.get("agent") or RunSettings.agent)
    env_name = dataset_label(early.env_name or from_user.get("env_name"),
                             early.dataset_path or from_user.get("dataset_path"))
    flags = vars(build_parser(agent_name).parse_args(argv))
    flags.pop("config", None)

    from_shipped, shipped_file = shipped_yaml(agent_name, env_name)
    shipped = split_settings(from_shipped, agent_name, shipped_file) if shipped_file else ({}, {})
    user = split_settings(from_user, agent_name, early.config) if user_file else ({}, {})
    asked = {**user[0], **user[1], **flags}  # what this command asks for, explicitly: its flags and its --config
    run_flags = {k: v for k, v in flags.items() if k in RUN_NAMES} | {"agent": agent_name, "env_name": env_name}
    run = RunSettings(**{**AGENTS[agent_name].run_defaults, **shipped[0], **user[0], **run_flags})
    agent = AGENTS[agent_name].Settings(**{**shipped[1], **user[1],
                                           **{k: v for k, v in flags.items() if k not in RUN_NAMES}})
    config = Config(run=run, agent=agent, files=tuple(file for file in (shipped_file, user_file) if file),
                    asked=asked)
    if run.run_dir and run.resume:
        raise UserInputError("--run_dir and --resume both name the run to continue; give one of them")
    if run.resume in ("", "auto"):  # --resume DIR runs with the saved settings, checked by resumed_config
        validate(config)
    return config


def saved_config(run_dir: Path) -> Config:
    """The settings a run was started with, read back from its config.json."""
    path = Path(run_dir) / "config.json"
    try:
        values = json.loads(path.read_text())
        agent_class = AGENTS[values["agent"]]
    except (OSError, ValueError, KeyError) as error:
        raise UserInputError(f"--resume {run_dir}: cannot read the run's settings from {path} ({error})") from None
    agent_names = {field.name for field in fields(agent_class.Settings)}
    run = RunSettings(**{k: v for k, v in values.items() if k in RUN_NAMES} | {"resume": str(run_dir)})
    return Config(run=run, agent=agent_class.Settings(**{k: v for k, v in values.items() if k in agent_names}),
                  files=tuple(values.get("config_files", ())))


def changed_settings(kept: dict, wanted: dict) -> tuple[str, str]:
    """The settings `wanted` gives other values than a run started with `kept` (both Config.to_dict() form), as
    two flag lists (as started, as wanted); ("", "") when none. Raising --training_steps extends a run and is no
    change."""
    changed = [name for name, value in wanted.items()
               if name in kept and name not in NOT_COMPARED and value != kept[name]
               and not (name == "training_steps" and value > kept[name])]
    return (", ".join(f"--{name} {kept[name]}" for name in changed),
            ", ".join(f"--{name} {wanted[name]}" for name in changed))


def resumed_config(requested: Config, run_dir: Path, compare_all: bool, flag: str = "--resume") -> Config:
    """The saved run's own settings. A setting that `requested` changes is refused, naming its flag; only
    --training_steps may be raised, to extend the run. `compare_all`: compare every setting (--resume auto,
    where flags, YAML and defaults make the request), else only those asked for explicitly (--resume DIR)."""
    saved = saved_config(run_dir)
    wanted = requested.to_dict() if compare_all else requested.asked
    started, asked = changed_settings(saved.to_dict(), wanted)
    if started:
        raise UserInputError(f"{flag} {run_dir}: the run was started with {started}, not {asked}; resume it "
                             "with its own settings (only --training_steps may be raised, to extend it), or start "
                             "a new run")
    saved.run.training_steps = max(saved.run.training_steps, wanted.get("training_steps", 0))
    validate(saved)
    return saved


def record_training_steps(run_dir: Path, steps: int) -> None:
    """An extended run's config.json says how far it now goes."""
    path = Path(run_dir) / "config.json"
    values = json.loads(path.read_text())
    if values["training_steps"] != steps:
        with written_atomically(path) as partial:
            partial.write_text(json.dumps(values | {"training_steps": steps}, indent=2) + "\n")
