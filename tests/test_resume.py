"""Runs that survive: checkpoints, SIGKILL and SIGTERM, --resume RUN_DIR and --resume auto."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
FLAGS = ["--training_steps", "600", "--eval_every", "100", "--gmm_steps", "100", "--save_gmm", "0",
         "--deterministic", "1", "--hyper_batch_size", "256", "--eval_episodes", "20"]


def command(log_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "train.py", "--log_path", str(log_path), *FLAGS, *extra]


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def start_and_stop(log_path: Path, signal_number: int) -> tuple[Path, int]:
    """Starts a run, sends the signal once its first checkpoint exists, returns (run dir, exit code)."""
    process = subprocess.Popen(command(log_path), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 120
    while not list(log_path.glob("*/checkpoint_000000100.pt")) and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    (run_dir,) = log_path.iterdir()
    return run_dir, process.returncode, stderr


def progress_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rows]


def final_parameters(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint_000000600.pt", weights_only=False)["agent"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    log_path = tmp_path_factory.mktemp("whole")
    result = run(command(log_path))
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = log_path.iterdir()
    return run_dir


def test_a_finished_run_keeps_its_two_newest_checkpoints_and_no_temporary_file(uninterrupted):
    names = sorted(path.name for path in uninterrupted.iterdir() if "checkpoint" in path.name or ".part" in path.name)
    assert names == ["checkpoint_000000500.pt", "checkpoint_000000600.pt"]
    state = torch.load(uninterrupted / "checkpoint_000000600.pt", weights_only=False)
    assert state["step"] == 600 and state["logger"]["rows"] == 6
    assert set(state["optimisers"]) == {"mdn_optimiser", "critic_optimiser", "hyper_q_optimiser", "policy_optimiser"}
    assert {"python", "numpy", "torch"} <= set(state["rng"])


def test_sigkill_then_resume_matches_the_uninterrupted_run_bit_for_bit(tmp_path, uninterrupted):
    run_dir, code, _ = start_and_stop(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL and not (run_dir / "summary.json").exists()
    result = run([sys.executable, "train.py", "--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert progress_rows(run_dir) == progress_rows(uninterrupted)  # no duplicated or missing rows
    mine, reference = final_parameters(run_dir), final_parameters(uninterrupted)
    assert mine.keys() == reference.keys()
    assert all(torch.equal(mine[name], reference[name]) for name in mine)


def test_sigterm_checkpoints_where_it_stops_and_the_run_continues_from_there(tmp_path, uninterrupted):
    run_dir, code, stderr = start_and_stop(tmp_path, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"stopped by signal {int(signal.SIGTERM)} at step ")
    assert last_line.endswith(f"continue with: python train.py --resume {run_dir}")
    stopped_at = int(last_line.split(" at step ")[1].split()[0])
    assert f"checkpoint_{stopped_at:09d}.pt" in {path.name for path in run_dir.iterdir()}
    result = run([sys.executable, "train.py", "--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert progress_rows(run_dir) == progress_rows(uninterrupted)


def test_resume_auto_continues_the_unfinished_run_and_otherwise_starts_afresh(tmp_path, uninterrupted):
    run_dir, _, _ = start_and_stop(tmp_path, signal.SIGKILL)
    result = run(command(tmp_path, "--resume", "auto"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming {run_dir}" in result.stdout
    assert list(tmp_path.iterdir()) == [run_dir] and progress_rows(run_dir) == progress_rows(uninterrupted)

    result = run(command(tmp_path, "--resume", "auto"))  # nothing unfinished now: a new run
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(tmp_path.iterdir())) == 2


def test_resume_of_a_directory_without_a_run_fails_in_one_line(tmp_path):
    result = run([sys.executable, "train.py", "--resume", str(tmp_path / "nowhere")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"error: --resume {tmp_path / 'nowhere'}: cannot read the run's settings")
