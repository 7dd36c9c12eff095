"""utils/runlock.py: one writer per run directory, with real files and real processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from utils.errors import UserInputError
from utils.runlock import RunLock


def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_lock_names_its_owner_and_goes_with_release(tmp_path):
    with RunLock(tmp_path) as lock:
        owner = json.loads((tmp_path / "lock").read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and owner == lock.owner
    assert not (tmp_path / "lock").exists()


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(UserInputError, match=rf"^{tmp_path} is in use by process {os.getpid()} on this host "
                                                 rf"since .*; wait for it to stop, or, if that process is gone, "
                                                 rf"delete {tmp_path / 'lock'}$"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()  # free again once released


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over(tmp_path):
    (tmp_path / "lock").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "token": "old"}))
    with RunLock(tmp_path) as lock:
        assert json.loads((tmp_path / "lock").read_text()) == lock.owner
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # the stale lock is gone, not set aside


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    stale = {"pid": dead_pid(), "host": "another-node", "token": "theirs", "since": "2026-01-01 00:00:00"}
    (tmp_path / "lock").write_text(json.dumps(stale))
    with pytest.raises(UserInputError, match="in use by process .* on host another-node since 2026-01-01"):
        RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / "lock").read_text()) == stale


def test_release_leaves_a_lock_that_is_not_ours(tmp_path):
    lock = RunLock(tmp_path).acquire()
    theirs = {"pid": 1, "host": "another-node", "token": "theirs"}
    (tmp_path / "lock").write_text(json.dumps(theirs))  # someone deleted ours by hand and took the directory
    lock.release()
    assert json.loads((tmp_path / "lock").read_text()) == theirs


def test_a_second_train_py_on_a_running_run_stops_in_one_line_and_writes_nothing(tmp_path, repo):
    log_path = tmp_path / "runs"
    flags = ["--log_path", str(log_path), "--training_steps", "100000", "--eval_every", "50", "--gmm_steps", "50",
             "--save_gmm", "0", "--eval_episodes", "5"]
    first = subprocess.Popen([sys.executable, "train.py", *flags], cwd=repo, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list(log_path.glob("*/checkpoint_*.pt")) and time.time() < deadline:
            time.sleep(0.05)
        (run_dir,) = log_path.iterdir()
        for second in (["--resume", "auto"], ["--resume", str(run_dir)]):
            before = (run_dir / "progress.jsonl").read_text()
            result = subprocess.run([sys.executable, "train.py", *flags, *second], cwd=repo, capture_output=True,
                                    text=True, timeout=120)
            assert result.returncode == 2
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith(f"error: {run_dir} is in use by process {first.pid} on this host since ")
            assert (run_dir / "progress.jsonl").read_text().startswith(before) and list(log_path.iterdir()) == [run_dir]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM and not (run_dir / "lock").exists()
