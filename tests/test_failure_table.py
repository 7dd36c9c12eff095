"""Every row of the failure table in docs/runs.md, triggered through train.py's entry point.

The rows are read from the page itself, so a row without a case here, or a case the page does not list, fails.
Each case checks exit status 2, exactly one line on stderr (progress bars aside) that the row's message
starts, and that nothing is left behind: no run directory, no lock, no temporary file.
"""

import functools
import http.server
import json
import re
import shutil
import socket
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

import train
from datasources.d4rl import d4rl_file_name
from datasources.scenarios import ACTION_SET_QUALITIES

REPO = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\b(?:[A-Z][A-Z_]*|[A-Z])\b")  # FILE, DIR, URL, KEY, N, ... in a row's message
ROWS = 2_000  # more than any default batch, so a file's own problem is the one found
TINY = ["--training_steps", "20", "--eval_every", "10", "--gmm_steps", "10", "--eval_episodes", "2"]


def documented_messages() -> list[str]:
    page = (REPO / "docs" / "runs.md").read_text()
    table = page.split("### What each failure means", 1)[1].split("\n\n**", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)


def message_pattern(message: str) -> re.Pattern:
    """A row's message as a pattern: its capitalised placeholders and '...' stand for any text."""
    parts = re.split(r"(\.\.\.|" + PLACEHOLDER.pattern + ")", message)
    return re.compile("".join(".+?" if index % 2 else re.escape(part) for index, part in enumerate(parts)))


def d4rl_file(path: Path, rows: int = ROWS, obs_dim: int = 1, act_dim: int = 2, **changes) -> Path:
    """A D4RL-format file; `changes` replace or (None) drop a key."""
    rng = np.random.default_rng(0)
    arrays = {"observations": rng.standard_normal((rows, obs_dim)), "actions": rng.uniform(-1, 1, (rows, act_dim)),
              "rewards": rng.standard_normal(rows), "terminals": np.zeros(rows, bool)} | changes
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            if value is not None:
                file[key] = value
    return path


def own_file(tmp_path: Path, **changes) -> list[str]:
    return ["--dataset_path", str(d4rl_file(tmp_path / "mine.hdf5", **changes)), "--eval_env",
            "envs.toy_multimodal:ToyMultimodal-v0"]


def all_set_parts(tmp_path: Path) -> Path:
    """A D4RL folder with hopper's random, medium, medium-replay and full-replay files, but no expert file."""
    folder = tmp_path / "d4rl"
    folder.mkdir()
    for quality in ACTION_SET_QUALITIES:
        d4rl_file(folder / d4rl_file_name(f"hopper-{quality}-v2"), obs_dim=11, act_dim=3)
    return folder


def config_file(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "mine.yaml").write_text(text)
    return ["--config", str(tmp_path / "mine.yaml")]


@functools.cache
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HTMLPage(http.server.BaseHTTPRequestHandler):
    """A proxy's error page, served with status 200."""

    def do_GET(self):
        body = b"<html><body>Access denied by proxy</body></html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def html_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HTMLPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    log_path = tmp_path_factory.mktemp("finished")
    assert train.main([*TINY, "--log_path", str(log_path), "--save_gmm", "0"]) == 0
    (run_dir,) = log_path.iterdir()
    return run_dir


def copied_run(finished: Path, tmp_path: Path, *remove: str) -> Path:
    run_dir = tmp_path / "old" / finished.name
    shutil.copytree(finished, run_dir)
    for pattern in remove:
        for path in run_dir.glob(pattern):
            path.unlink()
    return run_dir


def unreadable_checkpoints(finished: Path, tmp_path: Path) -> list[str]:
    run_dir = copied_run(finished, tmp_path, "summary.json")
    for path in run_dir.glob("checkpoint_*.pt"):
        path.write_bytes(b"damaged")
    return ["--resume", str(run_dir)]


def locked_run(finished: Path, tmp_path: Path) -> list[str]:
    run_dir = copied_run(finished, tmp_path, "summary.json")
    holder = {"pid": 1, "host": socket.gethostname(), "token": "theirs", "since": "2026-01-01 00:00:00"}
    (run_dir / "lock").write_text(json.dumps(holder))  # pid 1 lives on every host: a lock that is held
    return ["--resume", str(run_dir)]


CASES = {  # the row's message -> (tmp_path, finished run, html server) -> train.py's arguments
    "unknown dataset 'X'; did you mean ...": lambda t, r, h: ["--env_name", "hoper-medium-v2"],
    "unknown agent 'X'; choose one of: ...": lambda t, r, h: ["--agent", "sac"],
    "unrecognized arguments: ...": lambda t, r, h: ["--train", "100"],
    "could not download URL (...)": lambda t, r, h: [
        "--env_name", "hopper-medium-v2", "--d4rl_dir", str(t / "d4rl"),
        "--dataset_url", f"http://127.0.0.1:{closed_port()}/datasets"],
    "could not download URL: ...": lambda t, r, h: [
        "--env_name", "hopper-medium-v2", "--d4rl_dir", str(t / "d4rl"), "--dataset_url", h],
    "cannot load Minari dataset ...": lambda t, r, h: ["--env_name", "mujoco/nosuchenv/medium-v0"],
    "no local dataset PATH; make it with: ...": lambda t, r, h: [
        "--env_name", "local/hopper-medium-v0", "--data_dir", str(t / "data")],
    "cannot read FILE as HDF5 (...)": lambda t, r, h: [
        "--dataset_path", str(t / "garbage.hdf5"), "--eval_env", "Hopper-v4"],
    "FILE: it lacks the dataset key(s) ...": lambda t, r, h: own_file(t, rewards=None),
    "FILE: KEY has N rows but observations have M": lambda t, r, h: own_file(t, rewards=np.zeros(5)),
    "FILE: KEY has NaN or inf in N row(s), the first at row R": lambda t, r, h: own_file(
        t, rewards=np.r_[np.zeros(7), np.nan, np.zeros(ROWS - 8)]),
    "FILE: N action row(s) lie outside [-1, 1] ...": lambda t, r, h: own_file(t, actions=np.full((ROWS, 2), 1.5)),
    "FILE: observations must have shape (rows, features) with rows > 0": lambda t, r, h: own_file(
        t, observations=np.zeros(ROWS)),
    "--dataset_path needs --eval_env ENV_ID ...": lambda t, r, h: [
        "--dataset_path", str(d4rl_file(t / "mine.hdf5"))],
    "--dataset_path FILE is not a file": lambda t, r, h: [
        "--dataset_path", str(t / "absent.hdf5"), "--eval_env", "Hopper-v4"],
    "cannot create the evaluation env 'ID': ...": lambda t, r, h: [
        "--dataset_path", str(d4rl_file(t / "mine.hdf5")), "--eval_env", "NoSuchEnv-v0"],
    "the evaluation env 'ID' has observations ... but the dataset has ...": lambda t, r, h: [
        "--dataset_path", str(d4rl_file(t / "mine.hdf5")), "--eval_env", "Hopper-v4"],
    "--FLAG must be ...": lambda t, r, h: ["--num_mixtures", "1000000"],
    "--eval_every (A) is larger than --training_steps (B): ...": lambda t, r, h: ["--training_steps", "7"],
    "--FLAG (N) is larger than the dataset (M rows); ...": lambda t, r, h: ["--toy_size", "100"],
    "give both --ref_min_score and --ref_max_score, or neither": lambda t, r, h: ["--ref_min_score", "0"],
    "--config FILE: no such file": lambda t, r, h: ["--config", str(t / "absent.yaml")],
    "FILE: 'KEY' is not a setting of the run or of agent NAME ...": lambda t, r, h: config_file(t, "batch_size: 4\n"),
    "FILE: bad value for KEY: ...": lambda t, r, h: config_file(t, "beta: high\n"),
    "FILE: not valid YAML (...)": lambda t, r, h: config_file(t, "beta: [1, 2\n"),
    "FILE: expected a mapping of setting: value, ...": lambda t, r, h: config_file(t, "- beta\n"),
    "--FLAG PATH: X is a file, not a folder; ...": lambda t, r, h: ["--gmm_dir", str(t / "garbage.hdf5" / "gmm")],
    "--enable_wandb 1 needs wandb: ...": lambda t, r, h: ["--enable_wandb", "1"],
    "wandb is not logged in: ...": lambda t, r, h: ["--enable_wandb", "1"],
    "--resume DIR: cannot read the run's settings from ...": lambda t, r, h: ["--resume", str(t / "nowhere")],
    "--resume DIR: no checkpoint there to continue from": lambda t, r, h: [
        "--resume", str(copied_run(r, t, "summary.json", "checkpoint_*.pt"))],
    "--resume DIR: none of its checkpoints can be read ...": lambda t, r, h: unreadable_checkpoints(r, t),
    "--resume DIR: the run was started with --FLAG A, not --FLAG B ...": lambda t, r, h: [
        "--resume", str(copied_run(r, t, "summary.json")), "--beta", "0.5"],
    "--run_dir DIR holds files but no run (no config.json); ...": lambda t, r, h: ["--run_dir", str(t)],
    "--run_dir and --resume both name the run to continue; ...": lambda t, r, h: [
        "--run_dir", str(t / "new"), "--resume", "auto"],
    "DIR is in use by process P on HOST since T ...": lambda t, r, h: locked_run(r, t),
    "--scenario S makes two datasets, but --agent A learns from one; ...": lambda t, r, h: ["--scenario", "il"],
    "--agent A learns from an action set and a reward set: choose --scenario ...": lambda t, r, h: [
        "--agent", "mahalo", "--scenario", "none"],
    "--scenario S removes the reward set's actions, and --agent A ...": lambda t, r, h: [
        "--agent", "atac", "--scenario", "ilfo"],
    "--scenario S draws the reward set from an expert set, which D does not have; ...": lambda t, r, h: [
        "--agent", "mahalo", "--scenario", "il"],
    "--scenario S draws the reward set from the expert set of D: ...": lambda t, r, h: [
        "--agent", "mahalo", "--env_name", "hopper-all-v2", "--scenario", "il", "--d4rl_dir", str(all_set_parts(t)),
        "--dataset_url", f"http://127.0.0.1:{closed_port()}/datasets"],
    "--remove_terminals 1 leaves no rows of D in the action set ...": lambda t, r, h: ["--agent", "mahalo"],
    "--reward_scale max divides rewards by their maximum, but every reward is <= 0 ...": lambda t, r, h: [
        "--agent", "lapo", *own_file(t, rewards=-np.ones(ROWS)), "--training_steps", "20", "--eval_every", "10"],
}


def test_every_documented_failure_has_a_case_and_every_case_is_documented():
    assert documented_messages() == list(CASES)


def everything_under(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_size for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("message", list(CASES))
def test_the_failure_is_one_line_exit_2_and_leaves_nothing(message, tmp_path, monkeypatch, capsys, finished_run,
                                                           html_server):
    (tmp_path / "garbage.hdf5").write_bytes(b"not an HDF5 file")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    home = tmp_path / "home"  # no ~/.netrc: no stored wandb login
    home.mkdir()
    no_login = {"HOME": str(home), "NETRC": str(home / ".netrc"), "WANDB_MODE": "", "WANDB_API_KEY": ""}
    for name, value in no_login.items():
        monkeypatch.setenv(name, value)
    if message.startswith("--enable_wandb 1 needs wandb"):  # a wandb package that fails to import, as a missing one
        shadow = tmp_path / "no_wandb" / "wandb"
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text("raise ImportError('No module named wandb')\n")
        monkeypatch.syspath_prepend(str(shadow.parent))
        monkeypatch.delitem(sys.modules, "wandb", raising=False)
    argv = [*CASES[message](tmp_path, finished_run, html_server), "--log_path", str(tmp_path / "runs")]
    before = everything_under(tmp_path)
    capsys.readouterr()

    assert train.main(argv) == 2
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and message_pattern(message).match(lines[0].removeprefix("error: ")), lines[0]

    left = everything_under(tmp_path)
    assert not (tmp_path / "runs").exists()
    assert not [name for name in left if name.endswith((".part", "/lock")) and name not in before]
    unchanged = {name: size for name, size in before.items() if not name.endswith(".pt")}
    assert {name: size for name, size in left.items() if name in unchanged} == unchanged
