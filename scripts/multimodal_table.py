"""The paper's Table 2 on our four-goal Fetch tasks: every agent x task x seed, trained by train.py.

Prints a markdown table (normalised score mean ± std over seeds, and the share of evaluation episodes
ending at each goal, goal 1 being the one that pays double) and writes the per-run numbers as CSV.

    python -m scripts.multimodal_table                       # the agents' YAML settings, 3 seeds
    python -m scripts.multimodal_table --quick --tasks fetchreach-fourgoal-v0
    python -m scripts.multimodal_table -- --device cuda      # flags after -- go to every train.py run
    python -m scripts.multimodal_table --agent_flags "lom=--beta 0.5"   # flags for one agent's runs

Runs go to --log_path; a run that already finished there (same task, agent and seed) is reused, not
repeated, so an interrupted table continues where it stopped. Use a fresh --log_path for new settings.
"""

import argparse
import csv
import json
import math
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from envs.fetch_fourgoal import NUM_GOALS
from scripts.summarise_runs import finished_runs, mean_std

REPO = Path(__file__).resolve().parent.parent
AGENTS = ("bc", "mdn", "awac", "lom")
TASKS = ("fetchreach-fourgoal-v0", "fetchpush-fourgoal-v0", "fetchpick-fourgoal-v0")
# --quick: short runs that fit a 2-core CPU in a few minutes each (same data, fewer steps and episodes).
QUICK_FLAGS = ["--training_steps", "2000", "--eval_every", "1000", "--eval_episodes", "20"]


def goal_shares(run_dir: Path) -> list[float]:
    """Share of episodes ending at goals 1-4 in the run's last evaluation."""
    rows = (run_dir / "progress.jsonl").read_text().splitlines()
    last = json.loads(rows[-1])
    return [last.get(f"eval/goal_{goal}_share", float("nan")) for goal in range(1, NUM_GOALS + 1)]


def finished(log_path: Path) -> dict:
    """(task, agent, seed) -> run directory of every finished run under log_path."""
    if not log_path.exists():
        return {}
    return {(dataset, agent, seed): run_dir for dataset, agent, seed, _, run_dir in finished_runs(log_path)}


def parse_agent_flags(values: list[str], agents: list[str]) -> dict[str, list[str]]:
    """["lom=--beta 0.5", ...] -> {"lom": ["--beta", "0.5"]}."""
    flags = {}
    for value in values:
        agent, _, text = value.partition("=")
        if agent not in agents:
            raise SystemExit(f"error: --agent_flags {value!r}: give AGENT=FLAGS with AGENT one of {', '.join(agents)}")
        flags[agent] = flags.get(agent, []) + shlex.split(text)
    return flags


def train(task: str, agent: str, seed: int, log_path: Path, flags: list[str]) -> None:
    command = [sys.executable, str(REPO / "train.py"), "--env_name", task, "--agent", agent,
               "--seed", str(seed), "--log_path", str(log_path), *flags]
    print(f"$ {' '.join(command[1:])}", flush=True)
    if subprocess.run(command, cwd=REPO).returncode != 0:
        raise SystemExit(f"error: train.py failed for {task} / {agent} / seed {seed}; see its output above")


def results(log_path: Path, tasks, agents, seeds) -> list[dict]:
    runs = finished(log_path)
    rows = []
    for task in tasks:
        for agent in agents:
            for seed in seeds:
                run_dir = runs[task, agent, seed]
                summary = json.loads((run_dir / "summary.json").read_text())
                shares = goal_shares(run_dir)
                rows.append({"task": task, "agent": agent, "seed": seed, "score": summary["final_score"],
                             **{f"goal_{goal + 1}_share": share for goal, share in enumerate(shares)},
                             "steps": summary["steps"], "run_dir": str(run_dir)})
    return rows


def share_text(shares: list[float]) -> str:
    """Mean share in percent; a dash for tasks without goals (no share logged)."""
    mean = statistics.mean(shares)
    return "–" if math.isnan(mean) else f"{100 * mean:.0f}"


def markdown_table(rows: list[dict], tasks, agents) -> str:
    goals = [f"goal_{goal}_share" for goal in range(1, NUM_GOALS + 1)]
    lines = ["| task | agent | seeds | score | " + " | ".join(f"goal {g} %" for g in range(1, NUM_GOALS + 1))
             + " |", "| --- | --- | --- | --- |" + " --- |" * NUM_GOALS]
    for task in tasks:
        for agent in agents:
            group = [row for row in rows if row["task"] == task and row["agent"] == agent]
            shares = [share_text([row[goal] for row in group]) for goal in goals]
            lines.append(f"| {task} | {agent} | {len(group)} | {mean_std([row['score'] for row in group])} | "
                         + " | ".join(shares) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS),
                        help=f"dataset names (default: {' '.join(TASKS)}); any train.py --env_name works")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (default 3)")
    parser.add_argument("--quick", action="store_true", help=f"short CPU runs: {' '.join(QUICK_FLAGS)}")
    parser.add_argument("--log_path", type=Path, help="where the runs go (default runs/multimodal[-quick])")
    parser.add_argument("--agent_flags", action="append", default=[], metavar="AGENT=FLAGS",
                        help="train.py flags for one agent's runs only, e.g. \"lom=--beta 0.5\" (repeatable)")
    parser.add_argument("--csv", type=Path, help="per-run results (default <log_path>/multimodal_table.csv)")
    args = parser.parse_args(own)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    log_path = args.log_path or REPO / "runs" / ("multimodal-quick" if args.quick else "multimodal")
    flags = (QUICK_FLAGS if args.quick else []) + extra
    agent_flags = parse_agent_flags(args.agent_flags, args.agents)
    seeds = range(args.seeds)

    done = finished(log_path)
    for task in args.tasks:
        for agent in args.agents:
            for seed in seeds:
                if (task, agent, seed) in done:
                    print(f"reusing {done[task, agent, seed]}", flush=True)
                else:
                    train(task, agent, seed, log_path, flags + agent_flags.get(agent, []))

    rows = results(log_path, args.tasks, args.agents, seeds)
    csv_path = args.csv or log_path / "multimodal_table.csv"
    with open(csv_path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(markdown_table(rows, args.tasks, args.agents))
    print(f"\nper-run results: {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
