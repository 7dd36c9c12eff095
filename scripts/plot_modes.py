"""The paper's Figures 2 and 4 on our data: at one state with conflicting action labels, what each agent does.

In the plane of the first two action dimensions (the gripper's x and y displacement on the Fetch tasks), at
one dataset state (by default the first row: a start state, which the data gives one label per goal):

- Figure 2 (`--figure 2`), one panel each: the dataset's actions at that state (every row with exactly that
  observation); BC's action; the MDN agent's mixture (its components as density contours, labelled with
  their weights, and samples); AWAC's Gaussian (samples and its action); LOM's behaviour MDN with samples of
  the component its hyper Q selects (the actions LOM imitates) and LOM's action. It reads the finished
  train.py runs of one task and seed, one per agent.
- Figure 4 (`--figure 4`): one panel per finished LOM run of that task and seed, in the order of M (run
  them with --num_mixtures 1, 2, 4, 8, 16): the MDN's components and the selected component's samples.

    python -m scripts.plot_modes runs/table2 --task fetchreach-fourgoal-v0 --seed 0 --out docs/fig2.png
    python -m scripts.plot_modes runs/figure4 --figure 4 --seed 0 --out docs/fig4.png

Next to the PNG it writes the plotted numbers as JSON (<out>.json).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from scripts.tables import finished_runs
from trainer.build import load_data, make_agent, make_buffer
from trainer.config import saved_config
from utils.buffer import Buffer
from utils.checkpoints import load_latest_checkpoint

FIGURE2_AGENTS = ("bc", "mdn", "awac", "lom")
SAMPLES = 300
GRID = 200
PANEL_INCHES = 3.2


def trained_runs(log_path: Path, task: str, seed: int, agents: tuple[str, ...]) -> list[tuple[str, object, Buffer]]:
    """(agent name, agent with its last checkpoint's weights, the run's Buffer) for each finished run of
    `agents` on `task` with `seed`."""
    runs = []
    for dataset, name, run_seed, _, run_dir in finished_runs(log_path):
        if dataset != task or run_seed != seed or name not in agents:
            continue
        config = saved_config(run_dir)
        buffer = make_buffer(config, load_data(config), torch.device("cpu"))
        agent = make_agent(config, buffer)
        agent.load_state_dict(load_latest_checkpoint(run_dir)["agent"])
        agent.finish_pretraining(buffer)
        runs.append((name, agent.eval(), buffer))
    return runs


def rows_at_state(buffer: Buffer, row: int) -> torch.Tensor:
    """Every row whose observation is exactly that of `row`: the labels the data gives this state."""
    return (buffer.observations == buffer.observations[row]).all(dim=1).nonzero().squeeze(1)


def mixture_numbers(mixture) -> dict:
    """The first state's mixture in the action plane, and samples drawn from it."""
    weights = torch.softmax(mixture.logits[0], -1)
    components = torch.multinomial(weights, SAMPLES, replacement=True)
    samples = mixture.means[0, components] + mixture.stds[0, components] * torch.randn_like(mixture.means[0, components])
    return {"weights": weights.tolist(), "means": mixture.means[0, :, :2].tolist(),
            "stds": mixture.stds[0, :, :2].tolist(), "samples": samples.clamp(-1, 1)[:, :2].tolist()}


@torch.no_grad()
def agent_panel(name: str, agent, state: torch.Tensor) -> dict:
    """What one agent's panel shows: its action and, where it has one, its action distribution."""
    panel = {"agent": name, "action": agent.act(state)[0, :2].tolist()}
    if name == "mdn":
        panel |= mixture_numbers(agent.mdn(state))
    elif name == "awac":
        panel["samples"] = agent.policy.sample(state.repeat(SAMPLES, 1)).clamp(-1, 1)[:, :2].tolist()
    elif name == "lom":
        mixture = agent.behaviour_mdn(state)
        chosen = int(agent.select_mode(state)[0])
        mean, std = mixture.means[0, chosen], mixture.stds[0, chosen]
        selected = (mean + std * torch.randn(SAMPLES, len(mean))).clamp(-1.0, 1.0)  # the actions LOM imitates
        panel |= mixture_numbers(mixture) | {"num_mixtures": mixture.means.shape[1], "selected_component": chosen,
                                             "hyper_q": agent.hyper_q(state)[0].tolist(),
                                             "samples": selected[:, :2].tolist()}
    return panel


def picture(runs: list, row: int) -> dict:
    """The numbers a figure shows, all in the first two action dimensions."""
    buffer = runs[0][2]  # every run of one task and seed reads the same data
    return {"row": row, "dataset_actions": buffer.actions[rows_at_state(buffer, row), :2].tolist(),
            "panels": [agent_panel(name, agent, buffer.observations[row : row + 1]) for name, agent, _ in runs]}


def component_density(mean, std, grid_x, grid_y) -> np.ndarray:
    """Density of one diagonal Gaussian in the action plane."""
    z = ((grid_x - mean[0]) / std[0]) ** 2 + ((grid_y - mean[1]) / std[1]) ** 2
    return np.exp(-0.5 * z) / (2 * np.pi * std[0] * std[1])


def draw_components(axes, panel: dict) -> None:
    grid_x, grid_y = np.meshgrid(np.linspace(-1, 1, GRID), np.linspace(-1, 1, GRID))
    for index, (weight, mean, std) in enumerate(zip(panel["weights"], panel["means"], panel["stds"])):
        selected = index == panel.get("selected_component")
        peak = 1.0 / (2 * np.pi * std[0] * std[1])  # contours at 1 and 2 standard deviations
        axes.contour(grid_x, grid_y, component_density(mean, std, grid_x, grid_y),
                     levels=[peak * np.exp(-2.0), peak * np.exp(-0.5)],
                     colors="tab:red" if selected else "0.55", linewidths=1.2 if selected else 0.7)
        axes.annotate(f"w={weight:.2f}", mean, fontsize=6, color="tab:red" if selected else "0.35")


def draw_panel(axes, panel: dict | None, dataset_actions: np.ndarray, title: str) -> None:
    axes.scatter(dataset_actions[:, 0], dataset_actions[:, 1], s=50, facecolors="none", edgecolors="black",
                 linewidths=1.2, label="dataset actions at this state")
    if panel is not None:
        if "weights" in panel:
            draw_components(axes, panel)
        if "samples" in panel:
            samples = np.array(panel["samples"])
            axes.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.25, color="tab:red")
        axes.scatter(*panel["action"], marker="*", s=160, color="tab:red", edgecolors="black", zorder=5)
    axes.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), aspect="equal", title=title, xlabel="action x")
    axes.axhline(0, color="0.85", zorder=0)
    axes.axvline(0, color="0.85", zorder=0)


def draw(panels: list[tuple[str, dict | None]], dataset_actions: list, heading: str, out: Path) -> None:
    """One panel per (title, panel numbers) side by side; None draws the dataset's actions alone."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(PANEL_INCHES * len(panels), PANEL_INCHES + 0.4),
                                squeeze=False)
    for axis, (title, panel) in zip(axes[0], panels):
        draw_panel(axis, panel, np.array(dataset_actions), title)
    axes[0, 0].set_ylabel("action y")
    figure.suptitle(heading, fontsize=9)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("log_path", type=Path, help="folder with finished runs (train.py --log_path)")
    parser.add_argument("--figure", type=int, choices=(2, 4), default=2, help="the paper's figure to draw")
    parser.add_argument("--task", default="fetchreach-fourgoal-v0", help="the runs' dataset name")
    parser.add_argument("--seed", type=int, default=0, help="the runs' seed")
    parser.add_argument("--row", type=int, default=0, help="dataset row whose state is shown (default 0)")
    parser.add_argument("--out", type=Path, default=Path("modes.png"), help="PNG to write (default modes.png)")
    args = parser.parse_args(argv)
    runs = trained_runs(args.log_path, args.task, args.seed, FIGURE2_AGENTS if args.figure == 2 else ("lom",))
    if not any(name == "lom" for name, _, _ in runs):
        print(f"error: no finished LOM run of {args.task} with seed {args.seed} under {args.log_path}; "
              "train one with train.py first", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    if args.figure == 2:
        runs.sort(key=lambda run: FIGURE2_AGENTS.index(run[0]))
        numbers = picture(runs, args.row)
        panels = [("data", None), *[(panel["agent"].upper(), panel) for panel in numbers["panels"]]]
    else:
        runs.sort(key=lambda run: run[1].settings.num_mixtures)
        numbers = picture(runs, args.row)
        panels = [(f"LOM, M = {panel['num_mixtures']}", panel) for panel in numbers["panels"]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(panels, numbers["dataset_actions"], f"{args.task}, seed {args.seed}, dataset row {args.row}", args.out)
    args.out.with_suffix(".json").write_text(json.dumps(numbers, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({', '.join(title for title, _ in panels)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
