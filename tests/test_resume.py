"""Runs that survive: checkpoints, SIGKILL and SIGTERM, --resume RUN_DIR and --resume auto."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from gymnasium.error import DependencyNotInstalled

from trainer.loop import StopRequests
from utils.errors import Interrupted, exit_status

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


# ---- damaged files ----------------------------------------------------------------------------------------


def unfinished_copy(finished: Path, tmp_path: Path) -> Path:
    """A finished run turned back into one stopped after its step-500 checkpoint (as SIGKILL would leave it)."""
    run_dir = tmp_path / "runs" / finished.name
    shutil.copytree(finished, run_dir)
    (run_dir / "summary.json").unlink()
    (run_dir / "checkpoint_000000600.pt").unlink()
    return run_dir


def test_an_unreadable_newest_checkpoint_is_set_aside_and_the_one_before_it_resumes(tmp_path, uninterrupted):
    run_dir = unfinished_copy(uninterrupted, tmp_path)
    shutil.copy(run_dir / "checkpoint_000000500.pt", run_dir / "checkpoint_000000550.pt")
    with open(run_dir / "checkpoint_000000550.pt", "r+b") as file:
        file.truncate(1000)  # a checkpoint damaged after it was written
    result = run([sys.executable, "train.py", "--resume", str(run_dir)])
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"cannot read the checkpoint {run_dir / 'checkpoint_000000550.pt'}" in warnings[0]
    assert (run_dir / "checkpoint_000000550.pt.unreadable").is_file()
    assert progress_rows(run_dir) == progress_rows(uninterrupted)


def test_a_run_whose_checkpoints_are_all_unreadable_is_one_line_error(tmp_path, uninterrupted):
    run_dir = unfinished_copy(uninterrupted, tmp_path)
    (run_dir / "checkpoint_000000500.pt").write_bytes(b"not a checkpoint")
    result = run([sys.executable, "train.py", "--resume", str(run_dir)])
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --resume {run_dir}: none of its checkpoints can be read (")
    assert line.endswith("each was moved aside as *.unreadable; start a new run")
    assert (run_dir / "checkpoint_000000500.pt.unreadable").is_file()


def test_a_corrupt_cached_mdn_is_named_set_aside_and_trained_again(tmp_path):
    flags = ["--training_steps", "20", "--eval_every", "10", "--gmm_steps", "30", "--gmm_dir", str(tmp_path / "gmm"),
             "--log_path", str(tmp_path / "runs")]
    assert run([sys.executable, "train.py", *flags]).returncode == 0
    (cached,) = (tmp_path / "gmm").iterdir()
    good = cached.read_bytes()
    cached.write_bytes(good[: len(good) // 2])  # truncated, as a full disk or a killed copy leaves it
    result = run([sys.executable, "train.py", *flags])
    assert result.returncode == 0, result.stderr[-2000:]
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith(f"warning: cannot read the cached model {cached} (")
    assert warning.endswith("and pretraining again")
    assert (tmp_path / "gmm" / (cached.name + ".unreadable")).is_file()
    retrained = torch.load(cached, weights_only=True)  # the retrained model was cached whole
    original = torch.load(io.BytesIO(good), weights_only=True)
    assert retrained["record"] == original["record"]  # same data, settings and seed: the same model again
    for name, value in original["modules"]["behaviour_mdn"].items():
        assert torch.equal(retrained["modules"]["behaviour_mdn"][name], value), name


# ---- a run's own settings ----------------------------------------------------------------------------------


def test_resume_refuses_flags_that_change_the_runs_settings_naming_them(tmp_path, uninterrupted):
    run_dir = unfinished_copy(uninterrupted, tmp_path)
    before = (run_dir / "progress.jsonl").read_text()
    result = run([sys.executable, "train.py", "--resume", str(run_dir), "--beta", "0.5", "--K", "2"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --resume {run_dir}: the run was started with --beta 5.0, --K 1, not --beta 0.5, --K 2; resume it "
        "with its own settings (only --training_steps may be raised, to extend it), or start a new run"]
    assert (run_dir / "progress.jsonl").read_text() == before and not (run_dir / "lock").exists()

    result = run(command(tmp_path / "runs", "--resume", "auto", "--seed", "0", "--beta", "0.5"))
    assert result.returncode == 2 and "the run was started with --beta 5.0, not --beta 0.5" in result.stderr


def test_a_finished_run_says_so_and_raising_training_steps_extends_it(tmp_path, uninterrupted):
    run_dir = tmp_path / uninterrupted.name
    shutil.copytree(uninterrupted, run_dir)
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    result = run([sys.executable, "train.py", "--resume", str(run_dir)])
    assert result.returncode == 0
    assert f"{run_dir} is finished: 600 steps, final score" in result.stdout and "nothing to do" in result.stdout
    assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == before

    result = run([sys.executable, "train.py", "--resume", str(run_dir), "--training_steps", "800"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "config.json").read_text())["training_steps"] == 800
    rows = progress_rows(run_dir)
    assert [row["step"] for row in rows] == [100, 200, 300, 400, 500, 600, 700, 800]
    assert rows[:6] == progress_rows(uninterrupted)
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 800


# ---- signals before the first checkpoint ------------------------------------------------------------------


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_pretraining_exits_128_plus_n_in_one_line_and_leaves_no_run_directory(tmp_path,
                                                                                             signal_number):
    log_path = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "train.py", "--log_path", str(log_path), "--save_gmm", "0",
                                "--gmm_steps", "1000000", "--gmm_check_every", "100"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(log_path.glob("*/pretraining.jsonl")) and time.time() < deadline:
        time.sleep(0.05)  # pretraining has written its first held-out check
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number
    (line,) = [line for line in stderr.splitlines() if "stopped by signal" in line]
    assert line.startswith(f"stopped by signal {int(signal_number)} during pretraining at step ")
    assert "pretraining starts again on the next run" in line and line.endswith("run the same command again to "
                                                                               "start over")
    assert "Traceback" not in stderr and list(log_path.iterdir()) == []


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05])
def test_a_signal_while_data_is_made_stops_in_one_line_and_leaves_no_partial_file(tmp_path, delay):
    # Three moments in the making: the first Fetch env's import of gymnasium-robotics (which swallows any
    # Exception), and the scripted experts' episodes after it.
    data_dir, log_path = tmp_path / "data", tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "train.py", "--env_name", "fetchreach-fourgoal-v0", "--data_dir",
                                str(data_dir), "--log_path", str(log_path)], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("making fetchreach-fourgoal-v0_")  # 200 start states: a minute
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert (process.returncode, stderr.strip().splitlines()[-1]) == (
        128 + signal.SIGTERM, f"stopped by signal {int(signal.SIGTERM)} before the run started; nothing was written")
    assert "Traceback" not in stderr and not log_path.exists()
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


def test_a_signal_inside_a_held_block_lets_it_finish_and_stops_the_run_at_its_end():
    finished = False
    with StopRequests() as signals:
        with pytest.raises(Interrupted, match=f"^stopped by signal {int(signal.SIGTERM)} before the run started; "
                                              "nothing was written$"):
            with signals.held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler runs in here, and lets the block go on
                finished = True
    assert finished


def test_a_stop_that_a_library_turned_into_its_own_error_is_still_a_stop(capsys):
    def import_cut_short():  # what MuJoCo's compiled module and gymnasium's import of it make of a signal
        try:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except BaseException as error:
                raise ImportError("initialization failed") from error
        except ImportError as error:
            raise DependencyNotInstalled("MuJoCo is not installed") from error

    with StopRequests():
        assert exit_status(import_cut_short) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == (f"stopped by signal {int(signal.SIGTERM)} before the run started; nothing was "
                                       "written\n")


# ---- --run_dir: a run's directory named by the caller -------------------------------------------------------


def test_run_dir_starts_there_continues_an_unfinished_run_and_never_repeats_a_finished_one(tmp_path, uninterrupted):
    run_dir = tmp_path / "grid" / "toy" / "lom" / "seed0"
    same_command = command(tmp_path / "unused", "--run_dir", str(run_dir))
    process = subprocess.Popen(same_command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "checkpoint_000000100.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    process.kill()  # a pre-empted job
    process.communicate(timeout=60)

    result = run(same_command)  # the job, submitted again
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming {run_dir}" in result.stdout and not (tmp_path / "unused").exists()
    assert progress_rows(run_dir) == progress_rows(uninterrupted)
    finished = {path.name: path.stat().st_mtime_ns for path in run_dir.iterdir()}

    result = run(same_command)  # and once more: nothing to do
    assert result.returncode == 0 and f"{run_dir} is finished: 600 steps" in result.stdout
    assert {path.name: path.stat().st_mtime_ns for path in run_dir.iterdir()} == finished


def test_run_dir_that_holds_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = run(command(tmp_path / "unused", "--run_dir", str(tmp_path)))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: --run_dir {tmp_path} holds files but no run (no config.json); choose "
                                     "a new or empty folder")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
