"""trainer/config.py and utils/settings.py: flags > --config FILE > configs/<agent>/<dataset>.yaml > defaults, help
texts, and rejected settings."""

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents import AGENTS
from agents.bc import BCSettings
from agents.lom import LOMSettings
from train import EVAL_SEED_OFFSET
from trainer.config import build_parser, parse_config
from utils.errors import UserInputError
from utils.settings import RunSettings

ROOT = Path(__file__).resolve().parent.parent
RUN_FIELDS = {field.name for field in dataclasses.fields(RunSettings)}


def yaml_settings(agent: str, env_name: str = "toy-multimodal") -> dict:
    path = ROOT / "configs" / agent / f"{env_name}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def value_of(config, key: str):
    return getattr(config.run if key in RUN_FIELDS else config.agent, key)


# ---- defaults and precedence -------------------------------------------------------------------------


def test_no_flags_gives_toy_lom_seed_0_with_the_toy_yaml_applied():
    config = parse_config([])
    assert (config.run.env_name, config.run.agent, config.run.seed) == ("toy-multimodal", "lom", 0)
    assert isinstance(config.agent, LOMSettings)
    from_yaml = yaml_settings("lom")
    assert from_yaml, "configs/lom/toy-multimodal.yaml should hold settings"
    for key, value in from_yaml.items():
        assert value_of(config, key) == value, key
    # Everything the YAML leaves out keeps its dataclass default.
    for defaults, settings in ((RunSettings(), config.run), (LOMSettings(), config.agent)):
        for field in dataclasses.fields(defaults):
            if field.name not in from_yaml and field.name not in ("env_name", "agent"):
                assert getattr(settings, field.name) == getattr(defaults, field.name), field.name


def test_flags_override_the_yaml():
    from_yaml = yaml_settings("lom")
    config = parse_config(["--env_name", "toy-multimodal", "--training_steps", "7", "--eval_every", "7"])
    assert config.run.training_steps == 7 and config.run.eval_every == 7
    if "num_mixtures" in from_yaml:  # YAML keys without a flag still apply
        assert config.agent.num_mixtures == from_yaml["num_mixtures"]
    config = parse_config(["--num_mixtures", "9", "--gmm_steps", "11"])
    assert config.agent.num_mixtures == 9 and config.agent.gmm_steps == 11


def test_training_steps_below_the_yaml_eval_every_is_rejected_with_the_fix():
    """--training_steps 7 alone keeps the YAML's eval_every, which no run of 7 steps would reach."""
    eval_every = yaml_settings("lom").get("eval_every", RunSettings().eval_every)
    assert eval_every > 7
    with pytest.raises(UserInputError, match="--eval_every"):
        parse_config(["--env_name", "toy-multimodal", "--training_steps", "7"])


def test_dataset_without_yaml_gets_the_dataclass_defaults(tmp_path, monkeypatch):
    import trainer.config

    monkeypatch.setattr(trainer.config, "CONFIG_DIR", tmp_path)  # a configs folder with no YAML at all
    config = parse_config(["--env_name", "hopper-medium-v2", "--seed", "3"])
    assert config.run == RunSettings(env_name="hopper-medium-v2", seed=3)
    assert config.agent == LOMSettings()


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "lom").glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_lom_yaml_is_valid_and_applied(path):
    config = parse_config(["--env_name", path.stem])
    from_yaml = yaml.safe_load(path.read_text()) or {}
    for key, value in from_yaml.items():
        assert value_of(config, key) == value, key


def test_yaml_lookup_ignores_the_case_of_the_dataset_name():
    config = parse_config(["--env_name", "TOY-Multimodal"])
    for key, value in yaml_settings("lom").items():
        assert value_of(config, key) == value, key


def test_agent_name_is_case_insensitive():
    config = parse_config(["--agent", "LOM"])
    assert config.run.agent == "lom" and isinstance(config.agent, LOMSettings)


def test_bc_flags_and_bc_yaml():
    config = parse_config(["--agent", "bc", "--batch_size", "64"])
    assert config.run.agent == "bc"
    assert isinstance(config.agent, BCSettings) and config.agent.batch_size == 64
    for key, value in yaml_settings("bc").items():
        assert value_of(config, key) == value, key


def test_lom_only_flag_is_rejected_for_bc():
    with pytest.raises(UserInputError, match="--num_mixtures"):
        parse_config(["--agent", "bc", "--num_mixtures", "3"])


def test_unknown_agent_is_rejected_with_the_choices():
    with pytest.raises(UserInputError, match="lom, bc"):
        parse_config(["--agent", "sac"])


@pytest.mark.parametrize("text, expected", [("0", False), ("1", True), ("true", True), ("No", False)])
def test_bool_flags_accept_0_1_and_words(text, expected):
    assert parse_config(["--normalise", text]).run.normalise is expected


def test_optional_float_flags_are_parsed_as_floats():
    config = parse_config(["--ref_min_score", "-5", "--ref_max_score", "20.5"])
    assert config.run.ref_min_score == -5.0 and config.run.ref_max_score == 20.5
    assert isinstance(config.run.ref_min_score, float)


# ---- help --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("agent, settings_class", [("lom", LOMSettings), ("bc", BCSettings)])
def test_every_flag_has_help_text(agent, settings_class):
    parser = build_parser(agent)
    options = {action.dest: action for action in parser._actions if not isinstance(action, argparse._HelpAction)}
    expected = RUN_FIELDS | {field.name for field in dataclasses.fields(settings_class)} | {"config"}
    assert set(options) == expected
    for name, action in options.items():
        assert action.help and action.help.strip() and not action.help.startswith("("), name


def test_help_runs_and_lists_lom_flags():
    result = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--num_mixtures" in result.stdout and "--policy_loss" in result.stdout


def test_help_groups_run_settings_and_lists_the_agents_with_their_summary():
    result = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    sections = [line for line in result.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert sections[:1] == ["options:"] and "lom settings (docs/algorithms/lom.md):" in sections
    assert {"dataset settings:", "training settings:", "evaluation settings:", "logging settings:",
            "resuming settings:"} <= set(sections)
    listed = result.stdout.split("agents (--agent NAME")[1]
    for name in AGENTS:
        assert f"  {name} " in listed
    assert "Learning on One Mode" in listed or "one mode" in listed


def test_help_for_bc_lists_bc_flags_only():
    result = subprocess.run([sys.executable, "train.py", "--agent", "bc", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--batch_size" in result.stdout and "--num_mixtures" not in result.stdout


# ---- rejected settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, flag", [
    (["--num_mixtures", "0"], "--num_mixtures"),
    (["--K", "0"], "--K"),
    (["--beta", "0"], "--beta"),
    (["--C", "0"], "--C"),
    (["--C", "-1"], "--C"),
    (["--tau", "0"], "--tau"),
    (["--ac_rand", "-0.1"], "--ac_rand"),
    (["--discount", "1.5"], "--discount"),
    (["--training_steps", "10", "--eval_every", "20"], "--eval_every"),
    (["--bogus_flag", "1"], "--bogus_flag"),
    (["--normalise", "2"], "--normalise"),
    (["--policy_loss", "l1"], "--policy_loss"),
    (["--num_mixtures", "two"], "--num_mixtures"),
    (["--ref_min_score", "0"], "--ref_min_score"),
    (["--ref_max_score", "100"], "--ref_max_score"),
])
def test_invalid_settings_raise_user_input_error_naming_the_flag(argv, flag):
    with pytest.raises(UserInputError, match=re.escape(flag)):
        parse_config(argv)


LARGEST_SEED = 2**31 - 1


def upper_bound(settings_class: type, name: str):
    return next(field.metadata["at_most"] for field in dataclasses.fields(settings_class) if field.name == name)


@pytest.mark.parametrize("argv, message", [
    (["--num_mixtures", "1000000"], "--num_mixtures must be at most 100, got 1000000"),
    (["--agent", "mdn", "--num_mixtures", "101"], "--num_mixtures must be at most 100, got 101"),
    (["--K", "1001"], "--K must be at most 1000, got 1001"),
    (["--hidden", "100000"], "--hidden must be at most 8192, got 100000"),
    (["--mdn_hidden", "8193"], "--mdn_hidden must be at most 8192, got 8193"),
    (["--hyper_batch_size", "100001"], "--hyper_batch_size must be at most 100000, got 100001"),
    (["--agent", "awac", "--batch_size", "1000001"], "--batch_size must be at most 1000000, got 1000001"),
    (["--eval_episodes", "1001"], "--eval_episodes must be at most 1000, got 1001"),
    (["--toy_size", "10000001"], "--toy_size must be at most 10000000, got 10000001"),
    (["--fetch_starts", "100001"], "--fetch_starts must be at most 100000, got 100001"),
    (["--seed", "-1"], "--seed must be at least 0, got -1"),
    (["--seed", "99999999999"], f"--seed must be at most {LARGEST_SEED}, got 99999999999"),
])
def test_a_setting_beyond_its_bound_is_a_one_line_error_naming_flag_and_bound(argv, message):
    with pytest.raises(UserInputError) as caught:
        parse_config(argv)
    assert str(caught.value) == message


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_every_setting_that_sizes_memory_has_an_upper_bound(agent):
    """Batch sizes, layer widths, mixture and ensemble sizes: too large a value is an out-of-memory crash."""
    sized = [field for field in dataclasses.fields(AGENTS[agent].Settings)
             if field.name.endswith(("batch_size", "hidden")) or field.name in ("num_mixtures", "K")]
    assert sized
    for field in sized:
        assert field.metadata["at_most"] is not None, field.name


def test_the_largest_seed_leaves_room_for_every_seed_derived_from_it():
    run = parse_config(["--seed", str(LARGEST_SEED), "--eval_episodes", str(upper_bound(RunSettings, "eval_episodes")),
                        "--fetch_starts", str(upper_bound(RunSettings, "fetch_starts"))]).run
    # Evaluation resets episode i with seed + EVAL_SEED_OFFSET + i; the Fetch data maker uses seeds up to
    # seed + 3 * fetch_starts - 1. np.random.RandomState refuses seeds outside [0, 2**32), as np.random.seed does.
    for derived in (run.seed + EVAL_SEED_OFFSET + run.eval_episodes - 1, run.seed + 3 * run.fetch_starts - 1):
        np.random.RandomState(derived)


def test_train_py_refuses_a_memory_exploding_setting_in_one_line_before_making_a_run_directory(tmp_path):
    log_path = tmp_path / "runs"
    result = subprocess.run([sys.executable, "train.py", "--num_mixtures", "1000000", "--log_path", str(log_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: --num_mixtures must be at most 100, got 1000000"]
    assert not log_path.exists()


def test_yaml_with_unknown_key_is_rejected(tmp_path, monkeypatch):
    import trainer.config

    (tmp_path / "lom").mkdir()
    (tmp_path / "lom" / "mine.yaml").write_text("num_mixtures: 3\nnot_a_setting: 1\n")
    monkeypatch.setattr(trainer.config, "CONFIG_DIR", tmp_path)
    with pytest.raises(UserInputError, match="not_a_setting"):
        parse_config(["--env_name", "mine"])


# ---- --config FILE -----------------------------------------------------------------------------------


def test_config_file_sits_between_the_flags_and_the_shipped_yaml(tmp_path):
    mine = tmp_path / "mine.yaml"
    shipped = yaml_settings("lom")
    mine.write_text(f"num_mixtures: {shipped['num_mixtures'] + 1}\nbeta: 0.25\nseed: 7\n")
    config = parse_config(["--config", str(mine), "--beta", "0.5"])
    assert config.agent.beta == 0.5  # the flag beats the file
    assert config.agent.num_mixtures == shipped["num_mixtures"] + 1 and config.run.seed == 7  # the file beats the YAML
    assert config.agent.gmm_steps == shipped["gmm_steps"]  # the shipped YAML still fills what the file leaves out
    assert config.agent.K == LOMSettings().K  # and the defaults the rest
    assert config.files == ("configs/lom/toy-multimodal.yaml", str(mine.resolve()))


def test_config_file_can_choose_the_agent_and_dataset_whose_yaml_applies(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("agent: bc\nenv_name: toy-multimodal\n")
    config = parse_config(["--config", str(mine)])
    assert config.run.agent == "bc" and isinstance(config.agent, BCSettings)
    assert config.files == ("configs/bc/toy-multimodal.yaml", str(mine.resolve()))
    for key, value in yaml_settings("bc").items():
        assert value_of(config, key) == value, key


def test_config_file_key_that_is_no_setting_of_the_agent_is_named_with_the_file(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("batch_size: 64\n")  # a BC setting, not a LOM one
    with pytest.raises(UserInputError, match=rf"^{re.escape(str(mine))}: 'batch_size' is not a setting of the run "
                                             "or of agent lom"):
        parse_config(["--config", str(mine)])


@pytest.mark.parametrize("text, message", [
    (None, "no such file"),
    ("[1, 2]", "expected a mapping"),
    ("beta: [unclosed", "not valid YAML"),
    ("beta: high", "bad value for beta"),
])
def test_bad_config_file_is_one_line_error(tmp_path, text, message):
    mine = tmp_path / "mine.yaml"
    if text is not None:
        mine.write_text(text)
    with pytest.raises(UserInputError, match=message) as caught:
        parse_config(["--config", str(mine)])
    assert "\n" not in str(caught.value)


# ---- the flat dictionary -----------------------------------------------------------------------------


def test_to_dict_is_flat_with_run_and_agent_keys():
    config = parse_config(["--seed", "4", "--beta", "0.5"])
    flat = config.to_dict()
    assert set(flat) == RUN_FIELDS | {field.name for field in dataclasses.fields(LOMSettings)}
    assert not any(isinstance(value, dict) for value in flat.values())
    assert flat["seed"] == 4 and flat["beta"] == 0.5 and flat["env_name"] == "toy-multimodal"
    assert flat["num_mixtures"] == config.agent.num_mixtures


def test_an_agents_run_defaults_sit_below_its_yaml_and_the_flags(tmp_path):
    """IQL's original code trains on raw states: its default for --normalise is 0, and --help says so."""
    assert AGENTS["iql"].run_defaults == {"normalise": False}
    assert parse_config(["--agent", "iql"]).run.normalise is False
    assert parse_config(["--agent", "iql", "--normalise", "1"]).run.normalise is True
    mine = tmp_path / "mine.yaml"
    mine.write_text("normalise: 1\n")
    assert parse_config(["--agent", "iql", "--config", str(mine)]).run.normalise is True
    assert parse_config(["--agent", "td3bc"]).run.normalise is True  # the dataclass default
    help_text = " ".join(build_parser("iql").format_help().split())
    assert "z-score states with the dataset's mean and std; 0: raw states (default: 0)" in help_text


def test_an_agents_own_check_runs_with_the_other_checks():
    @dataclasses.dataclass
    class Strict(BCSettings):
        def check(self, run):
            if run.training_steps < 100:
                raise UserInputError("strict needs --training_steps 100 or more")

    from utils.settings import Config, validate

    with pytest.raises(UserInputError, match="strict needs --training_steps 100"):
        validate(Config(run=RunSettings(training_steps=50, eval_every=10), agent=Strict()))
    validate(Config(run=RunSettings(training_steps=100, eval_every=10), agent=Strict()))
