"""Where generated data lives, and files that appear only when complete: a crash, a kill or an error never
leaves a half-written one."""

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GENERATED_DEFAULT_DIR = "~/.cache/lom/datasets"  # datasets this project makes (override: $LOM_DATA_DIR)
NORMAL_FILE_MODE = 0o666  # what open() asks for; the kernel takes the umask (or a folder's default ACL) off it


def generated_data_dir(folder: str | os.PathLike | None = None) -> Path:
    """Folder of the datasets this project makes: the argument, else $LOM_DATA_DIR, else the cache."""
    return Path(folder or os.environ.get("LOM_DATA_DIR") or GENERATED_DEFAULT_DIR).expanduser()


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write; renamed to `path` when the block succeeds,
    removed when it fails. The unique name makes parallel writers of the same file safe."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _new_file_beside(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _new_file_beside(path: Path) -> Path:
    """An empty file with a unique name next to `path`, readable as the user's umask allows a normal file.

    Not tempfile.mkstemp: it creates files 0600, so a shared cache (a cluster's D4RL_DATASET_DIR) would hold
    files only their writer can read. Creating the file with mode 0666 lets the kernel apply the umask, which
    reading it with os.umask cannot do without briefly changing it for every thread of the process."""
    partial = path.with_name(f"{path.name}.{secrets.token_hex(8)}.part")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NORMAL_FILE_MODE))  # O_EXCL: never another's
    return partial


def set_aside(path: Path) -> Path:
    """Renames a damaged file to <name>.unreadable, out of the way of every later run but kept to look at."""
    aside = path.with_name(path.name + ".unreadable")
    os.replace(path, aside)
    return aside


def write_json(path: Path, value) -> None:
    """`value` as indented JSON at `path`, written atomically."""
    with written_atomically(path) as partial:
        partial.write_text(json.dumps(value, indent=2) + "\n")
