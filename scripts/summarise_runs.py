"""Mean +- std over seeds of finished runs, as a markdown table: python -m scripts.summarise_runs [LOG_PATH]."""

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def finished_runs(log_path: Path):
    """(dataset, agent, seed, summary, run directory) for every run directory with a summary.json."""
    for summary_file in sorted(log_path.glob("*/summary.json")):
        config = json.loads((summary_file.parent / "config.json").read_text())
        yield (config["dataset"], config["agent"], config["seed"], json.loads(summary_file.read_text()),
               summary_file.parent)


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log_path", nargs="?", default="runs", help="the --log_path of the runs (default: runs)")
    parser.add_argument("--metric", default="final_score",
                        help="summary.json field: final_score, best_score, last10pct_mean_score, ...")
    args = parser.parse_args()
    groups = defaultdict(dict)
    for dataset, agent, seed, summary, _ in finished_runs(Path(args.log_path)):
        if args.metric in summary:
            groups[dataset, agent][seed] = summary[args.metric]  # a re-run of a seed replaces the older one
    if not groups:
        print(f"no finished runs with {args.metric} under {args.log_path}", file=sys.stderr)
        return 1
    print(f"| dataset | agent | seeds | {args.metric} (mean ± std) |\n| --- | --- | --- | --- |")
    for (dataset, agent), by_seed in sorted(groups.items()):
        print(f"| {dataset} | {agent} | {len(by_seed)} | {mean_std(list(by_seed.values()))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
