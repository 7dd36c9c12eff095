"""One directory per run: config.json, progress.csv, progress.jsonl, summary.json; optionally wandb.

The logger knows rows of numbers, not which agent produced them.
"""

import csv
import json
import math
import netrc
import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse

from utils.errors import UserInputError
from utils.files import written_atomically

SCORE_KEY, RETURN_KEY = "eval/normalised_score", "eval/return"


def run_prefix(dataset: str, agent: str, seed: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset).strip("-")
    return f"{slug}_{agent}_seed{seed}_"


def latest_unfinished_run(log_path: str, dataset: str, agent: str, seed: int) -> Path | None:
    """The newest run directory of this dataset, agent and seed with a checkpoint and no summary."""
    root = Path(log_path).expanduser()
    candidates = sorted(root.glob(run_prefix(dataset, agent, seed) + "*")) if root.is_dir() else []
    unfinished = [path for path in candidates
                  if not (path / "summary.json").exists() and any(path.glob("checkpoint_*.pt"))]
    return unfinished[-1] if unfinished else None


def run_directory(log_path: str, dataset: str, agent: str, seed: int) -> Path:
    """<log_path>/<dataset>_<agent>_seed<seed>_<date-time>, made unique; created here."""
    stem = run_prefix(dataset, agent, seed) + time.strftime("%Y%m%d-%H%M%S")
    root = Path(log_path).expanduser()
    for attempt in range(1000):
        path = root / (stem if attempt == 0 else f"{stem}-{attempt}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as error:
            raise UserInputError(f"cannot create the run directory in {root}: {error.strerror}; "
                                 "choose a writable --log_path") from None
    raise UserInputError(f"too many runs named {stem} in {root}")


def finite_or_none(value):
    return value if not (isinstance(value, float) and not math.isfinite(value)) else None


def summarise(rows: list[dict], wall_time: float) -> dict:
    """Final, best, and mean of the last 10 % of evaluations, of the score (and the raw return)."""
    summary = {"steps": rows[-1]["step"] if rows else 0, "evaluations": len(rows), "wall_time_s": wall_time}
    tail = max(1, math.ceil(0.1 * len(rows)))
    for key, name in ((SCORE_KEY, "score"), (RETURN_KEY, "return")):
        values = [row[key] for row in rows if key in row]
        if values:
            summary[f"final_{name}"] = values[-1]
            summary[f"best_{name}"] = max(values)
            summary[f"last10pct_mean_{name}"] = sum(values[-tail:]) / len(values[-tail:])
    return summary


class RowFiles:
    """The same rows as <stem>.csv and <stem>.jsonl, flushed row by row. The files appear with the first
    row. The CSV's columns are the keys seen so far: a row with a new key (a metric an agent reports only from
    some step on) rewrites the CSV once with the wider header; cells a row lacks stay empty."""

    def __init__(self, run_dir: Path, stem: str):
        self.run_dir, self.stem = run_dir, stem
        self.csv_file = self.jsonl_file = self.csv_writer = None

    @property
    def csv_path(self) -> Path:
        return self.run_dir / f"{self.stem}.csv"

    def write(self, row: dict) -> None:
        if self.csv_writer is None:
            self.csv_file = open(self.csv_path, "w", newline="")
            self.jsonl_file = open(self.run_dir / f"{self.stem}.jsonl", "w")
            self.csv_writer = csv.DictWriter(self.csv_file, fieldnames=list(row))
            self.csv_writer.writeheader()
        elif not row.keys() <= set(self.csv_writer.fieldnames):
            self.widen_csv([key for key in row if key not in self.csv_writer.fieldnames])
        self.csv_writer.writerow(row)
        self.csv_file.flush()
        self.jsonl_file.write(json.dumps({k: finite_or_none(v) for k, v in row.items()}) + "\n")
        self.jsonl_file.flush()

    def widen_csv(self, new_columns: list[str]) -> None:
        """Rewrite the CSV written so far under a header with `new_columns` added at the end."""
        self.csv_file.close()
        with self.csv_path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        columns = [*self.csv_writer.fieldnames, *new_columns]
        with written_atomically(self.csv_path) as partial, partial.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        self.csv_file = open(self.csv_path, "a", newline="")
        self.csv_writer = csv.DictWriter(self.csv_file, fieldnames=columns)

    def close(self) -> None:
        for file in (self.csv_file, self.jsonl_file):
            if file is not None:
                file.close()


class RunLogger:
    """Writes a new run's files, or, given the `position` saved in a checkpoint, continues a run's files from
    there: rows logged after that checkpoint are dropped, so no row is duplicated or missing."""

    def __init__(self, run_dir: Path, config: dict, wandb_options: dict | None = None, position: dict | None = None):
        self.run_dir = run_dir
        self.rows: list[dict] = []
        self.pretraining: dict = {}
        self.started = time.time()
        self.progress = RowFiles(run_dir, "progress")
        self.pretraining_rows = RowFiles(run_dir, "pretraining")
        if position is None:
            (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        else:
            self.continue_from(position)
            wandb_options = wandb_options and {**wandb_options, "id": position["wandb_id"], "resume": "allow"}
        self.wandb_run = start_wandb(run_dir, config, wandb_options) if wandb_options else None

    def continue_from(self, position: dict) -> None:
        lines = (self.run_dir / "progress.jsonl").read_text().splitlines() if position["rows"] else []
        kept = [json.loads(line) for line in lines[: position["rows"]]]
        for row in kept:  # rewritten: the files end exactly at the checkpoint
            self.progress.write({k: math.nan if v is None else v for k, v in row.items()})
        self.rows = kept
        self.pretraining = position["pretraining"]
        self.started = time.time() - position["elapsed_s"]

    def position(self) -> dict:
        """What a checkpoint needs to continue these files and this wandb run."""
        return {"rows": len(self.rows), "pretraining": self.pretraining, "elapsed_s": time.time() - self.started,
                "wandb_id": self.wandb_run.id if self.wandb_run is not None else None}

    def log(self, step: int, values: dict[str, float]) -> None:
        """One evaluation: training metrics averaged since the last one, and the scores."""
        row = {"step": step, "wall_time_s": round(time.time() - self.started, 3), **values}
        self.rows.append(row)
        self.progress.write(row)
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=step)

    def log_pretraining(self, step: int, values: dict[str, float]) -> None:
        """One held-out check of pretraining (its own file: its steps count apart from training's)."""
        self.pretraining_rows.write({"step": step, "wall_time_s": round(time.time() - self.started, 3), **values})

    def finish(self) -> dict:
        summary = summarise(self.rows, time.time() - self.started) | self.pretraining
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.close()
        if self.wandb_run is not None:
            self.wandb_run.summary.update(summary)
            self.wandb_run.finish()
            self.wandb_run = None
        return summary

    def close(self) -> None:
        self.progress.close()
        self.pretraining_rows.close()


def wandb_problem() -> str | None:
    """Why wandb logging cannot start, found without network access; None when it can."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        return "--enable_wandb 1 needs wandb: pip install wandb (or drop --enable_wandb)"
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return None
    if os.environ.get("WANDB_API_KEY") or has_netrc_login(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")):
        return None
    return ("wandb is not logged in: run `wandb login`, set WANDB_API_KEY, "
            "or log locally with WANDB_MODE=offline (sync later with `wandb sync`)")


def has_netrc_login(base_url: str) -> bool:
    """Whether ~/.netrc (or $NETRC), where `wandb login` stores the key, has an entry for the wandb host."""
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(path).authenticators(urlparse(base_url).hostname or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def start_wandb(run_dir: Path, config: dict, options: dict):
    import wandb

    return wandb.init(dir=str(run_dir), config=config, **options)
