"""The paper's Figure 2 on our data: at one state with conflicting action labels, what each agent does.

For one dataset state (by default the first row: a start state, from which the data has one trajectory
to each goal) the picture shows, in the plane of the first two action dimensions (the gripper's x and y
displacement on the Fetch tasks):
- the dataset's actions at that state (every row with exactly that observation);
- the components of LOM's behaviour MDN there, as density contours, each labelled with its weight;
- samples of the component LOM's hyper Q selects (the actions LOM imitates);
- the action of every trained agent (BC, MDN, AWAC, LOM) at that state.

It reads the finished train.py runs of one task and seed, one per agent:

    python -m scripts.plot_modes runs/multimodal --task fetchreach-fourgoal-v0 --seed 0 --out docs/modes.png

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

AGENT_MARKERS = {"bc": ("s", "tab:blue"), "mdn": ("^", "tab:green"), "awac": ("D", "tab:purple"),
                 "lom": ("*", "tab:red")}
SELECTED_SAMPLES = 300
GRID = 200


def trained_agents(log_path: Path, task: str, seed: int) -> dict:
    """agent name -> (agent with its last checkpoint's weights, the run's Buffer) for each finished run."""
    agents = {}
    for dataset, name, run_seed, _, run_dir in finished_runs(log_path):
        if dataset != task or run_seed != seed:
            continue
        config = saved_config(run_dir)
        buffer = make_buffer(config, load_data(config), torch.device("cpu"))
        agent = make_agent(config, buffer)
        agent.load_state_dict(load_latest_checkpoint(run_dir)["agent"])
        agent.finish_pretraining(buffer)
        agents[name] = (agent.eval(), buffer)
    return agents


def rows_at_state(buffer: Buffer, row: int) -> torch.Tensor:
    """Every row whose observation is exactly that of `row`: the labels the data gives this state."""
    return (buffer.observations == buffer.observations[row]).all(dim=1).nonzero().squeeze(1)


@torch.no_grad()
def mode_picture(agents: dict, row: int) -> dict:
    """The numbers the figure shows, all in the first two action dimensions."""
    _, buffer = agents["lom"]  # every run of one task and seed reads the same data
    picture = {"row": row, "agent_actions": {},
               "dataset_actions": buffer.actions[rows_at_state(buffer, row), :2].tolist()}
    for name, (agent, buffer) in agents.items():
        state = buffer.observations[row : row + 1]
        picture["agent_actions"][name] = agent.act(state)[0, :2].tolist()
        if name == "lom":
            mixture = agent.behaviour_mdn(state)
            chosen = int(agent.select_mode(state)[0])
            mean, std = mixture.means[0, chosen], mixture.stds[0, chosen]
            samples = (mean + std * torch.randn(SELECTED_SAMPLES, len(mean))).clamp(-1.0, 1.0)
            picture |= {"mdn_weights": torch.softmax(mixture.logits[0], -1).tolist(),
                        "mdn_means": mixture.means[0, :, :2].tolist(), "mdn_stds": mixture.stds[0, :, :2].tolist(),
                        "hyper_q": agent.hyper_q(state)[0].tolist(), "selected_component": chosen,
                        "selected_samples": samples[:, :2].tolist()}
    return picture


def component_density(mean, std, grid_x, grid_y) -> np.ndarray:
    """Density of one diagonal Gaussian in the action plane."""
    z = ((grid_x - mean[0]) / std[0]) ** 2 + ((grid_y - mean[1]) / std[1]) ** 2
    return np.exp(-0.5 * z) / (2 * np.pi * std[0] * std[1])


def draw(picture: dict, task: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 6.0))
    grid_x, grid_y = np.meshgrid(np.linspace(-1, 1, GRID), np.linspace(-1, 1, GRID))
    for index, (weight, mean, std) in enumerate(zip(picture.get("mdn_weights", []), picture.get("mdn_means", []),
                                                     picture.get("mdn_stds", []))):
        selected = index == picture["selected_component"]
        peak = 1.0 / (2 * np.pi * std[0] * std[1])  # contours at 1 and 2 standard deviations
        axes.contour(grid_x, grid_y, component_density(mean, std, grid_x, grid_y),
                     levels=[peak * np.exp(-2.0), peak * np.exp(-0.5)],
                     colors="tab:red" if selected else "0.55", linewidths=1.2 if selected else 0.7)
        axes.annotate(f"u={index}: w={weight:.2f}", mean, fontsize=7, color="tab:red" if selected else "0.35")
    if "selected_samples" in picture:
        samples = np.array(picture["selected_samples"])
        axes.scatter(samples[:, 0], samples[:, 1], s=4, alpha=0.25, color="tab:red",
                     label=f"samples of the selected component u*={picture['selected_component']}")
    data = np.array(picture["dataset_actions"])
    axes.scatter(data[:, 0], data[:, 1], s=60, facecolors="none", edgecolors="black", linewidths=1.5,
                 label="dataset actions at this state")
    for name, action in picture["agent_actions"].items():
        marker, colour = AGENT_MARKERS.get(name, ("o", "tab:gray"))
        axes.scatter(*action, marker=marker, s=140, color=colour, edgecolors="black", zorder=5,
                     label=f"{name.upper()} action")
    axes.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal", xlabel="action x (gripper)",
             ylabel="action y (gripper)", title=f"{task}: one start state, dataset row {picture['row']}")
    axes.axhline(0, color="0.85", zorder=0)
    axes.axvline(0, color="0.85", zorder=0)
    axes.legend(loc="lower left", fontsize=7, framealpha=0.9)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log_path", type=Path, help="folder with finished runs (train.py --log_path)")
    parser.add_argument("--task", default="fetchreach-fourgoal-v0", help="the runs' dataset name")
    parser.add_argument("--seed", type=int, default=0, help="the runs' seed")
    parser.add_argument("--row", type=int, default=0, help="dataset row whose state is shown (default 0)")
    parser.add_argument("--out", type=Path, default=Path("modes.png"), help="PNG to write (default modes.png)")
    args = parser.parse_args(argv)
    agents = trained_agents(args.log_path, args.task, args.seed)
    if "lom" not in agents:
        print(f"error: no finished LOM run of {args.task} with seed {args.seed} under {args.log_path}; "
              "train one with train.py first", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    picture = mode_picture(agents, args.row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(picture, args.task, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(picture, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({', '.join(sorted(agents))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
