"""The paper's tables, statistics over tasks and learning curves, from finished runs.

    python -m scripts.tables --root runs                                  # every table, final scores
    python -m scripts.tables --root runs --layout table1 --metric last10pct --out results/

Every run directory below --root counts, in any folder layout: a folder with a config.json and a
summary.json (a run writes summary.json when it finishes). For each layout the script prints a markdown
table of datasets x agents: our mean ± sample standard deviation over seeds (n = number of seeds), the LOM
paper's published score and the difference, ours - paper. Under each table come the IQM and mean over the
datasets that every agent of the table has runs on, with 95 % stratified-bootstrap confidence intervals,
and the probability that one agent beats another (rliable). CSV and LaTeX of the tables, the statistics as
CSV and PNG, and one learning-curve PNG per dataset go to --out (default <root>/tables).
"""

import argparse
import csv
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from rliable import library as rly
from rliable import metrics

from envs.fetch_fourgoal import NUM_GOALS
from utils.errors import UserInputError, exit_status
from utils.logger import SCORE_KEY

SUMMARY_KEYS = {"final": "final_score", "last10pct": "last10pct_mean_score"}
# Columns run in this order, LOM last as in the paper (MAHALO's comparison before it, MAHALO last there); agents
# not listed follow in alphabetical order.
AGENT_ORDER = ("bc", "mdn", "onestep", "awac", "cql", "td3bc", "iql", "lapo", "dmpo", "mixawac", "wcgan", "wcvae",
               "bc_reward_set", "bco", "atac", "rp", "ap", "arp", "uds", "uds_a", "oracle", "mahalo", "lom")
BOOTSTRAP_SEED = 0
DEFAULT_REPS = 2000


def by_agent(columns: tuple[str, ...], rows: dict[str, tuple[float, ...]]) -> dict[str, dict[str, float]]:
    """A table typed in row by row, as the paper prints it -> agent -> dataset -> score."""
    return {agent: {dataset: scores[index] for dataset, scores in rows.items()} for index, agent in enumerate(columns)}


# The LOM paper (Wang, Jin & Montana 2024, arXiv 2412.03258), Table 1: D4RL v2 normalised scores, mean over
# 4 seeds, rows in the paper's order. It has no BC, MDN or IQL column.
TABLE1_PAPER = by_agent(("onestep", "awac", "cql", "td3bc", "lapo", "dmpo", "wcgan", "wcvae", "lom"), {
    "halfcheetah-medium-v2": (50.4, 47.9, 47.0, 48.3, 45.9, 47.5, 48.2, 50.5, 51.0),
    "hopper-medium-v2": (87.5, 59.8, 53.0, 59.3, 51.6, 71.2, 78.6, 89.0, 100.8),
    "walker2d-medium-v2": (84.8, 83.1, 73.3, 83.7, 80.7, 79.4, 82.4, 85.0, 85.1),
    "halfcheetah-medium-replay-v2": (42.7, 44.8, 45.5, 44.6, 44.7, 45.2, 42.3, 45.0, 48.8),
    "hopper-medium-replay-v2": (98.5, 69.8, 88.7, 60.9, 58.6, 89.2, 90.3, 99.0, 99.2),
    "walker2d-medium-replay-v2": (61.7, 78.1, 81.8, 81.8, 71.7, 82.1, 72.6, 74.0, 84.8),
    "halfcheetah-medium-expert-v2": (75.1, 64.9, 75.6, 90.7, 93.0, 91.1, 76.5, 80.0, 92.7),
    "hopper-medium-expert-v2": (108.6, 100.1, 105.6, 98.0, 105.2, 78.4, 110.0, 109.0, 110.1),
    "walker2d-medium-expert-v2": (111.3, 110.0, 107.9, 110.1, 111.1, 109.9, 99.7, 111.0, 111.3),
    "halfcheetah-expert-v2": (88.2, 81.7, 96.3, 96.7, 95.9, 97.0, 90.7, 89.0, 95.2),
    "hopper-expert-v2": (106.9, 109.5, 96.5, 107.8, 106.7, 93.6, 107.3, 108.0, 111.0),
    "walker2d-expert-v2": (110.7, 110.1, 108.5, 110.2, 112.2, 111.4, 109.3, 111.0, 109.3),
    "halfcheetah-full-replay-v2": (64.7, 66.6, 73.6, 71.7, 74.2, 71.4, 64.2, 66.0, 76.6),
    "hopper-full-replay-v2": (69.8, 100.1, 98.2, 76.8, 100.0, 101.5, 80.2, 86.5, 102.0),
    "walker2d-full-replay-v2": (67.1, 78.3, 92.7, 90.2, 96.2, 95.4, 53.0, 72.0, 97.9),
})
# The LOM paper, Table 2: the four-goal tasks, paper rows FetchReach, FetchPush and FetchPick.
TABLE2_PAPER = by_agent(("bc", "mdn", "awac", "wcgan", "wcvae", "lom"), {
    "fetchreach-fourgoal-v0": (14.3, 17.1, 32.4, 42.3, 40.8, 47.2),
    "fetchpush-fourgoal-v0": (11.8, 18.9, 26.8, 41.2, 41.8, 44.3),
    "fetchpick-fourgoal-v0": (3.6, 8.1, 22.7, 29.2, 30.5, 34.2),
})


@dataclass(frozen=True)
class Layout:
    name: str  # the --layout value and the name of its files
    title: str
    datasets: tuple[str, ...]  # its rows, in the paper's order; none for the table of other datasets
    paper: dict[str, dict[str, float]]
    note: str = ""
    goal_shares: bool = False


TABLE1 = Layout("table1", "Table 1: D4RL locomotion", tuple(TABLE1_PAPER["lom"]), TABLE1_PAPER)
TABLE2 = Layout("table2", "Table 2: four-goal Fetch tasks", tuple(TABLE2_PAPER["lom"]), TABLE2_PAPER,
                note="The paper does not say how its Fetch scores are scaled; ours run from 0 (a random policy) "
                     "to 100 (the scripted expert, which takes goal 1), so the difference is not like for like.",
                goal_shares=True)
OTHER = Layout("other", "Other datasets", (), {})
LAYOUTS = {"table1": [TABLE1], "table2": [TABLE2], "all": [TABLE1, TABLE2, OTHER]}


class Run(NamedTuple):
    seed: int
    score: float
    run_dir: Path


@dataclass(frozen=True)
class Style:
    """How a cell is written in one output format."""
    plus_minus: str
    separator: str
    delta: str
    missing: str
    escape: Callable[[str], str]


def latex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", text)


MARKDOWN = Style("±", " · ", "Δ", "–", str)
LATEX = Style(r"$\pm$", r" $\cdot$ ", r"$\Delta$", "--", latex_escape)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"cannot read {path} ({error}); fix or delete that run directory") from None


def finished_runs(root: Path):
    """(dataset, agent, seed, summary, run directory) for every finished run below root, in any folder layout."""
    for summary_file in sorted(root.rglob("summary.json")):
        config_file = summary_file.with_name("config.json")
        if not config_file.exists():  # not a run directory
            continue
        config = read_json(config_file)
        try:
            dataset, agent, seed = config["dataset"], config["agent"], config["seed"]
        except KeyError as missing:
            raise UserInputError(f"{config_file} has no {missing} setting: it was not written by train.py") from None
        yield dataset, agent, seed, read_json(summary_file), summary_file.parent


def runs_by_cell(root: Path, summary_key: str) -> dict[tuple[str, str], list[Run]]:
    """(dataset, agent) -> its runs in seed order. A seed that finished in two directories counts once: the
    one that finished last, with a warning, since two settings of one agent would otherwise mix unseen."""
    chosen = {}
    for dataset, agent, seed, summary, run_dir in finished_runs(root):
        if summary_key not in summary:  # a dataset without reference returns logs no normalised score
            continue
        key, run = (dataset, agent, seed), Run(seed, summary[summary_key], run_dir)
        if key in chosen:
            older, run = sorted([chosen[key], run], key=finish_time)
            print(f"warning: {dataset} / {agent} / seed {seed} finished in {older.run_dir} and in {run.run_dir}; "
                  f"using the one that finished last, {run.run_dir}", file=sys.stderr)
        chosen[key] = run
    cells = defaultdict(list)
    for (dataset, agent, _), run in sorted(chosen.items()):
        cells[dataset, agent].append(run)
    return dict(cells)


def finish_time(run: Run) -> float:
    return (run.run_dir / "summary.json").stat().st_mtime


def progress_rows(run_dir: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines() if line]
    except (OSError, ValueError) as error:
        raise UserInputError(f"cannot read {run_dir / 'progress.jsonl'} ({error}); fix or delete that run "
                             "directory") from None


def goal_shares(run_dir: Path) -> list[float]:
    """Share of the episodes of the run's last evaluation that ended at goals 1-4 (NaN where not logged)."""
    last = progress_rows(run_dir)[-1]
    return [last.get(f"eval/goal_{goal}_share", math.nan) for goal in range(1, NUM_GOALS + 1)]


def mean_and_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); no deviation for a single value."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def shown_datasets(layout: Layout, cells: dict) -> list[str]:
    """The layout's datasets that have runs; for the other-datasets table, every dataset of no layout."""
    with_runs = {dataset for dataset, _ in cells}
    if layout is OTHER:
        return sorted(with_runs - set(TABLE1.datasets) - set(TABLE2.datasets))
    return [dataset for dataset in layout.datasets if dataset in with_runs]


def agent_rank(agent: str) -> tuple[int, str]:
    return (AGENT_ORDER.index(agent) if agent in AGENT_ORDER else len(AGENT_ORDER)), agent


def shown_agents(layout: Layout, cells: dict, datasets: list[str]) -> list[str]:
    """Agents with runs or published scores on these datasets."""
    agents = {agent for dataset, agent in cells if dataset in datasets}
    agents |= {agent for agent, scores in layout.paper.items() if any(dataset in scores for dataset in datasets)}
    return sorted(agents, key=agent_rank)


def table_rows(layout: Layout, cells: dict, datasets: list[str], agents: list[str]) -> list[dict]:
    """One row per dataset and agent with runs or a published score: what the CSV holds, and the cells."""
    rows = []
    for dataset in datasets:
        for agent in agents:
            runs = cells.get((dataset, agent), [])
            paper = layout.paper.get(agent, {}).get(dataset)
            if not runs and paper is None:
                continue
            mean, std = mean_and_std([run.score for run in runs]) if runs else (None, None)
            row = {"dataset": dataset, "agent": agent, "seeds": len(runs), "mean": mean, "std": std,
                   "paper": paper, "diff": None if mean is None or paper is None else mean - paper}
            if layout.goal_shares:
                shares = np.mean([goal_shares(run.run_dir) for run in runs], axis=0) if runs else [math.nan] * NUM_GOALS
                row |= {f"goal_{goal + 1}_share": float(share) for goal, share in enumerate(shares)}
            rows.append(row)
    return rows


def cell_text(row: dict, style: Style) -> str:
    """"51.3 ± 0.8 (n=4) · paper 51.0 · Δ +0.3", with only the parts that exist."""
    parts = []
    if row["seeds"]:
        spread = "" if row["std"] is None else f" {style.plus_minus} {row['std']:.1f}"
        parts.append(f"{row['mean']:.1f}{spread} (n={row['seeds']})")
    if row["paper"] is not None:
        parts.append(f"paper {row['paper']:.1f}")
    if row["diff"] is not None:
        parts.append(f"{style.delta} {row['diff']:+.1f}")
    return style.separator.join(parts)


def score_grid(rows: list[dict], datasets: list[str], agents: list[str], style: Style) -> list[list[str]]:
    """Header and body of the datasets x agents table."""
    cells = {(row["dataset"], row["agent"]): cell_text(row, style) for row in rows}
    return [["dataset", *agents]] + [[style.escape(dataset), *(cells.get((dataset, agent), style.missing)
                                                                for agent in agents)] for dataset in datasets]


def goal_share_grid(rows: list[dict], style: Style) -> list[list[str]]:
    """Header and body of the goal-share table: percent of episodes, mean over seeds, for rows with runs."""
    goals = range(1, NUM_GOALS + 1)
    body = [[style.escape(row["dataset"]), row["agent"], str(row["seeds"]),
             *(style.missing if math.isnan(row[f"goal_{goal}_share"]) else f"{100 * row[f'goal_{goal}_share']:.0f}"
               for goal in goals)] for row in rows if row["seeds"]]
    return [["task", "agent", "seeds", *(style.escape(f"goal {goal} %") for goal in goals)]] + body


def markdown(grid: list[list[str]]) -> str:
    header, *body = grid
    return "\n".join(["| " + " | ".join(row) + " |" for row in [header, ["---"] * len(header), *body]])


def latex(grid: list[list[str]]) -> str:
    header, *body = grid
    return "\n".join([rf"\begin{{tabular}}{{{'l' * len(header)}}}", r"\toprule", " & ".join(header) + r" \\",
                      r"\midrule", *(" & ".join(row) + r" \\" for row in body), r"\bottomrule", r"\end{tabular}"])


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def score_matrix(cells: dict, tasks: list[str], agent: str) -> np.ndarray:
    """runs x tasks, as rliable takes scores. On every task the agent's lowest seeds, as many as it has on the
    task where it has fewest: rliable needs a full matrix, and this keeps every task's weight equal."""
    count = min(len(cells[task, agent]) for task in tasks)
    return np.array([[run.score for run in cells[task, agent][:count]] for task in tasks]).T


def iqm_and_mean(scores: np.ndarray) -> np.ndarray:
    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y): over tasks, the mean share of run pairs where X scores more, ties counting half. The number
    rliable.metrics.probability_of_improvement gives, without its per-task scipy test (2 ms a call, which over
    thousands of resamples x tasks x pairs would take minutes)."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def interval_estimates(score_dict: dict, function: Callable, reps: int) -> tuple[dict, dict]:
    """Point estimates and 95 % stratified-bootstrap intervals. Each agent's runs are resampled within each
    task; for a pair, each agent's runs on their own, so two agents may have different numbers of runs."""
    np.random.seed(BOOTSTRAP_SEED)  # rliable's resampling draws from numpy's global generator
    return rly.get_interval_estimates(score_dict, function, reps=reps)


def aggregate_rows(matrices: dict[str, np.ndarray], reps: int) -> list[dict]:
    points, intervals = interval_estimates(matrices, iqm_and_mean, reps)
    return [{"agent": agent, "runs": len(matrix), "tasks": matrix.shape[1],
             "iqm": points[agent][0], "iqm_low": intervals[agent][0, 0], "iqm_high": intervals[agent][1, 0],
             "mean": points[agent][1], "mean_low": intervals[agent][0, 1], "mean_high": intervals[agent][1, 1]}
            for agent, matrix in matrices.items()]


def improvement_rows(matrices: dict[str, np.ndarray], reps: int) -> list[dict]:
    pairs = {(x, y): (matrices[x], matrices[y]) for x in matrices for y in matrices if x != y}
    points, intervals = interval_estimates(pairs, probability_of_improvement, reps)
    return [{"x": x, "y": y, "probability": points[x, y], **dict(zip(("low", "high"), intervals[x, y].ravel()))}
            for x, y in pairs]


def pyplot():
    """pyplot on the Agg backend: every figure goes to a file, no display is needed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def plot_aggregates(rows: list[dict], summary_key: str, path: Path) -> None:
    plt = pyplot()
    from rliable import plot_utils

    points = {row["agent"]: np.array([row["iqm"], row["mean"]]) for row in rows}
    intervals = {row["agent"]: np.array([[row["iqm_low"], row["mean_low"]], [row["iqm_high"], row["mean_high"]]])
                 for row in rows}
    figure, axes = plot_utils.plot_interval_estimates(points, intervals, ["IQM", "Mean"], xlabel="",
                                                      row_height=0.6, subfigure_width=4.0)
    for each in axes:  # rliable places its one label at a fixed height, over the ticks of a short figure
        each.set_xlabel(summary_key, fontsize="x-large")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def plot_improvements(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    from rliable import plot_utils

    points = {f"{row['x']},{row['y']}": row["probability"] for row in rows}
    intervals = {f"{row['x']},{row['y']}": (row["low"], row["high"]) for row in rows}
    axes = plot_utils.plot_probability_of_improvement(points, intervals, figsize=(5, 1 + 0.45 * len(rows)))
    axes.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(axes.figure)


def aggregates_section(name: str, cells: dict, datasets: list[str], summary_key: str, reps: int,
                       out: Path) -> str:
    """IQM, mean and probability of improvement over the datasets every agent with runs here has runs on."""
    agents = sorted({agent for dataset, agent in cells if dataset in datasets}, key=agent_rank)
    tasks = [dataset for dataset in datasets if all((dataset, agent) in cells for agent in agents)]
    if not tasks:
        return "No dataset here has runs of every agent, so there are no statistics over tasks."
    matrices = {agent: score_matrix(cells, tasks, agent) for agent in agents}
    aggregates = aggregate_rows(matrices, reps)
    write_csv(out / f"aggregates_{name}.csv", aggregates)
    plot_aggregates(aggregates, summary_key, out / f"aggregates_{name}.png")
    text = [f"Over {len(tasks)} dataset(s) that every agent has runs on ({', '.join(tasks)}): {summary_key}, "
            f"95 % stratified-bootstrap confidence intervals ({reps} resamples, seed {BOOTSTRAP_SEED}); runs = "
            "seeds per dataset used, each agent's lowest seeds, as many as it has on its sparsest dataset.", "",
            markdown([["agent", "runs", "IQM [95 % CI]", "mean [95 % CI]"]]
                     + [[row["agent"], str(row["runs"]), interval_text(row["iqm"], row["iqm_low"], row["iqm_high"]),
                         interval_text(row["mean"], row["mean_low"], row["mean_high"])] for row in aggregates])]
    if len(agents) > 1:
        improvements = improvement_rows(matrices, reps)
        write_csv(out / f"improvement_{name}.csv", improvements)
        plot_improvements(improvements, out / f"improvement_{name}.png")
        text += ["", markdown([["X", "Y", "P(X > Y) [95 % CI]"]]
                              + [[row["x"], row["y"], interval_text(row["probability"], row["low"], row["high"], 2)]
                                 for row in improvements])]
    return "\n".join(text)


def interval_text(point: float, low: float, high: float, decimals: int = 1) -> str:
    return f"{point:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def table_section(layout: Layout, cells: dict, datasets: list[str], summary_key: str, reps: int, out: Path) -> str:
    """The layout's table as markdown (returned), CSV and LaTeX, then its statistics over tasks."""
    agents = shown_agents(layout, cells, datasets)
    rows = table_rows(layout, cells, datasets, agents)
    write_csv(out / f"{layout.name}.csv", rows)
    caption = (f"{summary_key}: ours = mean ± sample std over seeds (n = seeds)"
               + ("; paper = the LOM paper's score; Δ = ours - paper." if layout.paper else "."))
    text = [f"## {layout.title}", "", " ".join(filter(None, [caption, layout.note])), "",
            markdown(score_grid(rows, datasets, agents, MARKDOWN))]
    tables_tex = [latex(score_grid(rows, datasets, agents, LATEX))]
    if layout.goal_shares:
        text += ["", "Share of the final evaluation's episodes ending at each goal (goal 1 pays double), in %, "
                 "mean over seeds:", "", markdown(goal_share_grid(rows, MARKDOWN))]
        tables_tex.append(latex(goal_share_grid(rows, LATEX)))
    (out / f"{layout.name}.tex").write_text(f"% {latex_escape(caption)}\n" + "\n\n".join(tables_tex) + "\n")
    text += ["", aggregates_section(layout.name, cells, datasets, summary_key, reps, out)]
    return "\n".join(text)


def learning_curve(runs: list[Run]) -> tuple[list[int], list[float], list[float]]:
    """Steps, mean and sample std over seeds of the normalised score at each evaluation step (over the seeds
    that evaluated at that step; no spread where only one did)."""
    by_step = defaultdict(list)
    for run in runs:
        for row in progress_rows(run.run_dir):
            if SCORE_KEY in row:
                by_step[row["step"]].append(row[SCORE_KEY])
    steps = sorted(by_step)
    stats = [mean_and_std(by_step[step]) for step in steps]
    return steps, [mean for mean, _ in stats], [std or 0.0 for _, std in stats]


def plot_curves(cells: dict, dataset: str, path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for agent in sorted({agent for name, agent in cells if name == dataset}, key=agent_rank):
        steps, means, stds = map(np.array, learning_curve(cells[dataset, agent]))
        axes.plot(steps, means, label=f"{agent} (n={len(cells[dataset, agent])})")
        axes.fill_between(steps, means - stds, means + stds, alpha=0.2)
    axes.set(xlabel="training step", ylabel="normalised score", title=f"{dataset}: mean ± std over seeds")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def file_slug(dataset: str) -> str:
    """A dataset name as a file name: local/hopper-medium-v0 -> local_hopper-medium-v0."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", dataset)


def run_rows(cells: dict, summary_key: str) -> list[dict]:
    """Every run behind the tables, for statistics of your own."""
    return [{"dataset": dataset, "agent": agent, "seed": run.seed, summary_key: run.score, "run_dir": str(run.run_dir)}
            for (dataset, agent), runs in sorted(cells.items()) for run in runs]


def make_tables(root: Path, layout: str, metric: str, out: Path | None, reps: int) -> str:
    """Writes every file into out and returns the markdown."""
    if reps < 1:
        raise UserInputError(f"--reps must be at least 1, got {reps}")
    if not root.is_dir():
        raise UserInputError(f"--root {root} is not a folder")
    summary_key = SUMMARY_KEYS[metric]
    cells = runs_by_cell(root, summary_key)
    if not cells:
        raise UserInputError(f"no finished run with {summary_key} under {root} (a finished run's folder holds "
                             "config.json and summary.json)")
    sections = [(each, datasets) for each in LAYOUTS[layout] if (datasets := shown_datasets(each, cells))]
    if not sections:
        raise UserInputError(f"no finished run on the datasets of {LAYOUTS[layout][0].title} under {root}; "
                             "--layout all shows every dataset")
    out = out or root / "tables"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserInputError(f"cannot create --out {out} ({error.strerror}); choose a writable folder") from None
    write_csv(out / "runs.csv", run_rows(cells, summary_key))
    text = [table_section(each, cells, datasets, summary_key, reps, out) for each, datasets in sections]
    for dataset in [dataset for _, datasets in sections for dataset in datasets]:
        plot_curves(cells, dataset, out / f"curve_{file_slug(dataset)}.png")
    return "\n\n".join(text + [f"Files (CSV, LaTeX, PNG): {out}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="folder with finished runs, at any depth")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="all",
                        help="table1 (D4RL), table2 (four-goal Fetch) or all, which adds other datasets")
    parser.add_argument("--metric", choices=list(SUMMARY_KEYS), default="final",
                        help="final: the last evaluation (final_score); last10pct: the mean of the last 10 %% of "
                             "evaluations (last10pct_mean_score)")
    parser.add_argument("--out", type=Path, help="folder for the CSV, LaTeX and PNG files (default <root>/tables)")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS,
                        help=f"bootstrap resamples for the confidence intervals (default {DEFAULT_REPS})")
    args = parser.parse_args(argv)
    return exit_status(lambda: print(make_tables(args.root, args.layout, args.metric, args.out, args.reps)))


if __name__ == "__main__":
    sys.exit(main())
