"""Settings: dataclass fields that are command-line flags and YAML keys, each with a default, a one-line help
text and its allowed values, checked once before any data is loaded.

The run's own settings are `RunSettings`; each agent declares its hyperparameters the same way
(`agents/base.py`). Which agent's settings apply, and which YAML files, is decided by `trainer/config.py`.
"""

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields

from utils.dataset import user_score_reference
from utils.errors import UserInputError


def setting(default, help: str, choices: tuple | None = None, above: float | None = None,
            at_least: float | None = None, below: float | None = None, at_most: float | None = None,
            group: str = ""):
    """A setting: its default, the one-line help shown by --help, and its allowed values (`choices`, or
    a number strictly `above`, `at_least`, strictly `below` or `at_most` a bound); checked before training.
    `group` heads the --help section it is listed under (run settings only)."""
    return field(default=default, metadata={"help": help, "choices": choices, "above": above,
                                            "at_least": at_least, "below": below, "at_most": at_most,
                                            "group": group})


# MAHALO's scenarios (datasources/scenarios.py builds them): how one dataset becomes an action set and a reward set.
NO_SCENARIO = "none"
SCENARIOS = ("il", "ilfo", "rl_expert", "rlfo", "rl_sample")
WITHOUT_REWARD_SET_ACTIONS = ("ilfo", "rlfo")  # "from observations": the reward set's actions are never seen

DATA, TRAINING, EVALUATION, LOGGING, CACHE, RESUME = (
    "dataset", "training", "evaluation", "logging", "pretrained-model cache", "resuming")


@dataclass
class RunSettings:
    env_name: str = setting("toy-multimodal", "dataset: a D4RL name (hopper-medium-replay-v2), a Minari id "
                            "(mujoco/hopper/medium-v0), toy-multimodal, fetch{reach,push,pick}-fourgoal-v0, "
                            "local/<env>-<quality>-v0, or a label for --dataset_path", group=DATA)
    dataset_path: str = setting("", "a D4RL-format HDF5 file to train on instead of a named dataset", group=DATA)
    eval_env: str = setting("", "gymnasium id to evaluate a --dataset_path policy on (module:EnvId works)",
                            group=DATA)
    d4rl_dir: str = setting("", "folder of D4RL files (default: $D4RL_DATASET_DIR, else ~/.d4rl/datasets)",
                            group=DATA)
    dataset_url: str = setting("", "base URL to download D4RL files from, e.g. a mirror "
                               "(default: $D4RL_DATASET_URL, else the original server)", group=DATA)
    toy_size: int = setting(10_000, "number of transitions of the toy-multimodal dataset", at_least=1,
                            at_most=10_000_000, group=DATA)  # 10M rows: ~0.5 GB in memory, 1000x the default
    fetch_starts: int = setting(50, "start states of the generated fetch*-fourgoal-v0 data (4 expert "
                                "trajectories of 50 steps from each, and their branches)", at_least=1,
                                at_most=100_000, group=DATA)  # see seed's bound
    fetch_data: str = setting("branching", "layout of the fetch*-fourgoal-v0 data: branching (the "
                              "paper's: four labels at every state of the experts' trajectories) or start_only "
                              "(four labels at the start states only)", choices=("branching", "start_only"), group=DATA)
    data_dir: str = setting("", "folder for the datasets this project generates (default: $LOM_DATA_DIR, "
                            "else ~/.cache/lom/datasets)", group=DATA)
    scenario: str = setting("none", "split the data into an action set and a reward set, for the agents that learn "
                            "from two (mahalo and its baselines): il, ilfo, rl_expert, rlfo (reward set from the "
                            "expert set of an -all- dataset) or rl_sample (from the data itself); none: one dataset",
                            choices=(NO_SCENARIO, *SCENARIOS), group=DATA)
    reward_set_ratio: float = setting(0.01, "size of the reward set as a fraction of the rows it is drawn from "
                                      "(whole trajectories)", above=0, at_most=1, group=DATA)
    remove_terminals: bool = setting(True, "1: the action set has no terminals (each terminal row is dropped and "
                                     "its trajectory ends in a timeout), as MAHALO's runs do", group=DATA)
    normalise: bool = setting(True, "1: z-score states with the dataset's mean and std; 0: raw states", group=DATA)
    scaler_noise: float = setting(0.0, "std of N(0, 1) noise added to the states before the state scaler is "
                                  "fitted (the authors' code: 0.05); 0: the data's own std + 1e-3",
                                  at_least=0, group=DATA)
    agent: str = setting("lom", "algorithm (the list is at the end of --help)", group=TRAINING)
    # np.random.seed takes 0 <= seed < 2**32, and seeds are derived by adding to it (evaluation: + 10_000 + the
    # episode; Fetch data: up to + 3 * fetch_starts), so half that range leaves room for every offset.
    seed: int = setting(0, "random seed of networks, sampling and evaluation", at_least=0, at_most=2**31 - 1,
                        group=TRAINING)
    discount: float = setting(0.99, "discount factor gamma", at_least=0, at_most=1, group=TRAINING)
    training_steps: int = setting(1_000_000, "update steps of the main loop (after pretraining)", at_least=1,
                                  group=TRAINING)
    device: str = setting("auto", "training device; auto picks cuda when available", ("auto", "cpu", "cuda"),
                          group=TRAINING)
    deterministic: bool = setting(False, "1: deterministic torch algorithms (a resumed run then matches an "
                                  "uninterrupted one bit for bit on the CPU)", group=TRAINING)
    eval_every: int = setting(10_000, "steps between evaluations (the last step is always evaluated)",
                              at_least=1, group=EVALUATION)
    eval_episodes: int = setting(10, "episodes per evaluation, run side by side in a vector env", at_least=1,
                                 at_most=1000, group=EVALUATION)  # each episode is a live simulator at once
    ref_min_score: float | None = setting(None, "return that scores 0 (with --dataset_path)", group=EVALUATION)
    ref_max_score: float | None = setting(None, "return that scores 100 (with --dataset_path)", group=EVALUATION)
    log_path: str = setting("./runs", "folder that receives one directory per run", group=LOGGING)
    enable_wandb: bool = setting(False, "1: also log to Weights & Biases", group=LOGGING)
    project: str = setting("LOM", "wandb project", group=LOGGING)
    group: str = setting("", "wandb group (default: <dataset>_<agent>)", group=LOGGING)
    name: str = setting("", "wandb run name (default: <agent>_<dataset>_seed<seed>)", group=LOGGING)
    save_gmm: bool = setting(True, "1: cache the pretrained MDN in --gmm_dir and reuse it for the same data, "
                             "settings and seed", group=CACHE)
    retrain_gmm: bool = setting(False, "1: pretrain the MDN again even if a cached one exists, and replace it",
                                group=CACHE)
    gmm_dir: str = setting("./gmm_models", "folder of the pretrained-MDN cache", group=CACHE)
    resume: str = setting("", "continue an interrupted run: its directory (its own settings are used), or "
                          "auto: the newest unfinished run of this dataset, agent and seed under --log_path, "
                          "else a new run", group=RESUME)
    run_dir: str = setting("", "the run's own directory instead of a new dated one under --log_path: a new run "
                           "starts there, an unfinished one continues (with the same settings), a finished one "
                           "says so; what sweeps use, so that a job submitted again never repeats a run",
                           group=RESUME)


@dataclass
class Config:
    run: RunSettings
    agent: typing.Any  # the chosen agent's Settings dataclass
    files: tuple[str, ...] = ()  # the YAML files applied, lowest precedence first
    asked: dict = field(default_factory=dict)  # the settings the command line and --config asked for explicitly

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


def add_flag(group, field: dataclasses.Field, default=dataclasses.MISSING) -> None:
    """--NAME for a setting; `default` replaces the field's own in the help (an agent's run default)."""
    choices = field.metadata.get("choices")
    default = field.default if default is dataclasses.MISSING else default
    shown = int(default) if isinstance(default, bool) else default
    # Named choices (device, loss variants) are case-insensitive: --device CPU works.
    kind = str.lower if choices else value_type(field)
    group.add_argument(f"--{field.name}", type=kind, choices=choices,
                       help=f"{field.metadata['help']} (default: {shown!r})")


def add_run_flags(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """The run settings, one --help section per group, in the order the groups first appear; `defaults`:
    the chosen agent's own defaults for some of them."""
    sections = {}
    for field in fields(RunSettings):
        name = field.metadata["group"]
        if name not in sections:
            sections[name] = parser.add_argument_group(f"{name} settings")
        add_flag(sections[name], field, defaults.get(field.name, dataclasses.MISSING))


def add_agent_flags(parser: argparse.ArgumentParser, settings_class: type, title: str) -> None:
    section = parser.add_argument_group(title)
    for field in fields(settings_class):
        add_flag(section, field)


def coerce(settings_class: type, values: dict, source: str) -> dict:
    """Convert the types of settings read from a YAML file (names already checked)."""
    known = {field.name: field for field in fields(settings_class)}
    converted = {}
    for key, value in values.items():
        try:
            converted[key] = None if value is None else value_type(known[key])(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
            raise UserInputError(f"{source}: bad value for {key}: {error}") from None
    return converted


def bound_problem(name: str, value, metadata) -> str | None:
    if metadata.get("above") is not None and not value > metadata["above"]:
        return f"--{name} must be greater than {metadata['above']}, got {value}"
    if metadata.get("at_least") is not None and not value >= metadata["at_least"]:
        return f"--{name} must be at least {metadata['at_least']}, got {value}"
    if metadata.get("below") is not None and not value < metadata["below"]:
        return f"--{name} must be less than {metadata['below']}, got {value}"
    if metadata.get("at_most") is not None and not value <= metadata["at_most"]:
        return f"--{name} must be at most {metadata['at_most']}, got {value}"
    if metadata.get("choices") and value not in metadata["choices"]:
        return f"--{name} must be one of {', '.join(metadata['choices'])}, got {value!r}"
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
    check_scenario(run, config.agent)
    config.agent.check(run)


def check_scenario(run: RunSettings, agent_settings) -> None:
    """Agents that learn from two datasets need a scenario to make them, and the reward set's actions if they
    read them; the others train on one dataset."""
    two = getattr(agent_settings, "learns_from_two_datasets", False)
    if run.scenario in WITHOUT_REWARD_SET_ACTIONS and (why := getattr(agent_settings, "needs_reward_set_actions", "")):
        raise UserInputError(f"--scenario {run.scenario} removes the reward set's actions, and --agent {run.agent} "
                             f"{why}; use il, rl_expert or rl_sample")
    if run.scenario != NO_SCENARIO and not two:
        raise UserInputError(f"--scenario {run.scenario} makes two datasets, but --agent {run.agent} learns from "
                             "one; use --scenario none, or an agent that learns from two (mahalo and its baselines)")
    if run.scenario == NO_SCENARIO and two:
        raise UserInputError(f"--agent {run.agent} learns from an action set and a reward set: choose --scenario "
                             "il, ilfo, rl_expert, rlfo or rl_sample")


def check_against_dataset(config: Config, size: int) -> None:
    """Settings that only the loaded data can refute: no batch may be larger than the dataset."""
    for field in fields(config.agent):
        value = getattr(config.agent, field.name)
        if field.name.endswith("batch_size") and value > size:
            raise UserInputError(f"--{field.name} ({value}) is larger than the dataset ({size} rows); "
                                 f"lower it to at most {size}")
