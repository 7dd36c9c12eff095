"""Make the four-goal Fetch sets and report what they hold: rows, generation time, expert success per goal
and how many rows sit at states with labels toward three or more goals.

    python -m scripts.fetch_data --starts 50 --seed 0 --out docs/fetch_data.json
    python -m scripts.fetch_data --layout start_only --starts 200 --seed 0

The sets are those `train.py --env_name fetch*-fourgoal-v0` reads (same file, same data folder): a set
made here is not made again by a run. Two label shares per task:
- exact: rows at branch states, whose four labels head for four different goals by construction;
- neighbourhood: for --queries random rows, whether the rows within --radius of it in the normalised
  observation (z-scored per dimension, root-mean-square distance) head for three or more goals. It also
  counts states that are near one another without being the same state.
"""

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

from datagen import fetch
from datasources import generated
from utils.errors import UserInputError, exit_status
from utils.files import write_json

DEFAULT_RADIUS = 0.1  # a tenth of a standard deviation per observation dimension
DEFAULT_QUERIES = 2000


def report(name: str, starts: int, seed: int, layout: str, data_dir: str | None, radius: float,
           queries: int) -> dict:
    """Make (or read) one task's set and measure it."""
    dataset = generated.load_fetch(name, starts, seed, data_dir, layout)
    path = generated.fetch_file(name, starts, seed, data_dir, layout)
    goal_labels, branch_ids = generated.read_fetch_labels(path)
    with h5py.File(path, "r") as file:
        success = [float(share) for share in file.attrs["expert_success"]]
        seconds = float(file.attrs.get("generation_seconds", float("nan")))
    return {
        "dataset": name, "layout": layout, "starts": starts, "seed": seed, "rows": len(dataset.observations),
        "generation_seconds": round(seconds, 1), "expert_success_per_goal": success,
        "exact_share_3_goals": fetch.branch_label_share(goal_labels, branch_ids, min_goals=3),
        "neighbourhood_share_3_goals": fetch.neighbourhood_label_share(
            dataset.observations, goal_labels, radius, queries, np.random.default_rng(seed)),
        "radius": radius, "queries": queries,
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| task | layout | rows | made in (s) | expert success per goal | rows at 3+ goal states: exact "
             "| within radius |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        success = ", ".join(f"{share:.2f}" for share in row["expert_success_per_goal"])
        lines.append(f"| {row['dataset']} | {row['layout']} | {row['rows']:,} | {row['generation_seconds']:.0f} "
                     f"| {success} | {100 * row['exact_share_3_goals']:.1f} % "
                     f"| {100 * row['neighbourhood_share_3_goals']:.1f} % (r = {row['radius']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--tasks", default=",".join(generated.FETCH_TASKS),
                        help="comma-separated fetch*-fourgoal-v0 names (default: all three)")
    parser.add_argument("--layout", choices=list(fetch.LAYOUTS), default=fetch.BRANCHING.name)
    parser.add_argument("--starts", type=int, default=50, help="start states (train.py's --fetch_starts)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data (train.py's --seed)")
    parser.add_argument("--data_dir", default=None, help="data folder (default: $LOM_DATA_DIR, else "
                        "~/.cache/lom/datasets)")
    parser.add_argument("--radius", type=float, default=DEFAULT_RADIUS,
                        help=f"neighbourhood radius in the normalised observation (default {DEFAULT_RADIUS})")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES,
                        help=f"rows whose neighbourhood is counted (default {DEFAULT_QUERIES})")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    return exit_status(lambda: run(parser.parse_args(argv)))


def run(args: argparse.Namespace) -> None:
    tasks = args.tasks.split(",")
    if unknown := [task for task in tasks if task not in generated.FETCH_TASKS]:
        raise UserInputError(f"--tasks: unknown {', '.join(unknown)}; choose from {', '.join(generated.FETCH_TASKS)}")
    if args.starts < 1 or args.radius <= 0 or args.queries < 1:
        raise UserInputError("--starts and --queries must be at least 1 and --radius above 0")
    rows = [report(task, args.starts, args.seed, args.layout, args.data_dir, args.radius, args.queries)
            for task in tasks]
    if args.out:
        write_json(args.out, rows)
    print(markdown(rows))


if __name__ == "__main__":
    sys.exit(main())
