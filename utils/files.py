"""Where generated data lives, and files that appear only when complete: a crash, a kill or an error never
leaves a half-written one."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GENERATED_DEFAULT_DIR = "~/.cache/lom/datasets"  # datasets this project makes (override: $LOM_DATA_DIR)


def generated_data_dir(folder: str | os.PathLike | None = None) -> Path:
    """Folder of the datasets this project makes: the argument, else $LOM_DATA_DIR, else the cache."""
    return Path(folder or os.environ.get("LOM_DATA_DIR") or GENERATED_DEFAULT_DIR).expanduser()


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write; renamed to `path` when the block succeeds,
    removed when it fails. The unique name makes parallel writers of the same file safe."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".part")
    os.close(handle)
    try:
        yield Path(partial)
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
