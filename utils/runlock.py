"""One run directory, one writer: an exclusive lock file that names its owner.

The lock is a file created with O_CREAT | O_EXCL, which is atomic on local disks and on NFS (v3 and later),
so it works on the shared filesystems of clusters, where flock may not. It holds the owner's pid, host and a
random token. A lock left by a process that died on this host (SIGKILL, a crash) is taken over; a lock
from another host cannot be checked from here, so the error says how to remove it by hand.
"""

import json
import os
import secrets
import socket
import time
from pathlib import Path

from utils.errors import UserInputError

LOCK_NAME = "lock"


class RunLock:
    """Holds `<run_dir>/lock` from `acquire` until `release`."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "token": secrets.token_hex(8),
                      "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.held = False

    def acquire(self) -> "RunLock":
        if not self._create():
            holder = self._read(self.path)
            if holder is None or not self._is_stale(holder) or not self._take_over(holder) or not self._create():
                raise UserInputError(self._busy_message(self._read(self.path) or holder))
        self.held = True
        return self

    def release(self) -> None:
        """Removes the lock if it is still ours."""
        if self.held and self._read(self.path) == self.owner:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _create(self) -> bool:
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as file:
            json.dump(self.owner, file)
        return True

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # gone meanwhile, or being written: treated as held

    def _is_stale(self, holder: dict) -> bool:
        """Only a lock of this host can be checked: its process no longer exists."""
        if holder.get("host") != self.owner["host"]:
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError):
            return False  # a live process of another user, or a lock we cannot read: not ours to take
        return False

    def _take_over(self, stale: dict) -> bool:
        """Moves the stale lock aside, atomically; if another process replaced it meanwhile, puts theirs back."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{self.owner['token']}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # someone else removed it: try to create ours
        if self._read(aside) == stale:
            aside.unlink()
            return True
        try:
            os.link(aside, self.path)  # fails if yet another process holds the lock by now
        except FileExistsError:
            pass
        aside.unlink()
        return False

    def _busy_message(self, holder: dict | None) -> str:
        run_dir = self.path.parent
        if holder is None:
            return f"{run_dir} is in use by another process (its lock file {self.path} is being written)"
        where = "this host" if holder.get("host") == self.owner["host"] else f"host {holder.get('host')}"
        return (f"{run_dir} is in use by process {holder.get('pid')} on {where} since {holder.get('since')}; "
                f"wait for it to stop, or, if that process is gone, delete {self.path}")
