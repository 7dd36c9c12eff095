"""Does the behaviour MDN find the four goals' modes? The paper's Figure 2c, measured on a four-goal Fetch set.

    python -m scripts.mdn_modes --task fetchreach-fourgoal-v0 --num_mixtures 4,8 --init plain,spread
    python -m scripts.mdn_modes --task fetchreach-fourgoal-v0 --fetch_data start_only --starts 200

For each M and initialisation it trains LOM's behaviour MDN (LOM's defaults: two hidden layers of 512, batch
512, learning rate 1e-3, z-scored states; --steps steps, as the Fetch configs' gmm_steps) on the set, then
looks at --states branch states of the data (states with one label toward each goal) whose tracked body
(gripper or cube) is at least 5 cm from every goal. A state counts as separated when three or more of the
MDN's components there carry at least 10 % of the weight each with means in distinct quadrants of the
action's xy-plane. It prints the share of separated states (and writes them as JSON with --out).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from agents.lom import LOMSettings
from agents.mdn import MDN, MDNSettings
from datagen import fetch
from datasources import generated
from envs.fetch_fourgoal import GOAL_RADIUS, FetchFourGoalEnv, TASKS
from networks.mdn import MDN_INITS, GaussianMixture, MixtureDensityNetwork
from utils.buffer import Buffer
from utils.errors import UserInputError, exit_status
from utils.files import write_json

MIN_WEIGHT = 0.1  # a component counts as a mode where it carries at least this share of the mixture
MIN_QUADRANTS = 3
DEFAULT_STATES = 1000


def separated_quadrants(mixture: GaussianMixture, min_weight: float = MIN_WEIGHT) -> torch.Tensor:
    """Per state, in how many distinct quadrants of the xy-plane the means of the components carrying at
    least `min_weight` of the mixture lie: (B,) integers 0-4."""
    weights = torch.softmax(mixture.logits, dim=-1)
    quadrant = 2 * (mixture.means[..., 0] >= 0).long() + (mixture.means[..., 1] >= 0).long()  # (B, M)
    heavy = torch.zeros(len(weights), 4, device=weights.device)
    heavy.scatter_add_(1, quadrant, (weights >= min_weight).float())
    return (heavy > 0).sum(dim=1)


def branch_states(name: str, observations: np.ndarray, branch_ids: np.ndarray, goals: np.ndarray, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Rows of `count` random branch states whose tracked body is at least GOAL_RADIUS from every goal."""
    branch_rows = np.flatnonzero(branch_ids >= 0)
    _, first = np.unique(branch_ids[branch_rows], return_index=True)
    rows = branch_rows[first]
    tracked = observations[rows][:, TASKS[generated.FETCH_TASKS[name]].tracked]
    far = np.linalg.norm(tracked[:, None, :] - goals[None], axis=-1).min(axis=1) >= GOAL_RADIUS
    rows = rows[far]
    return rng.choice(rows, size=min(count, len(rows)), replace=False)


def train_mdn(buffer: Buffer, num_mixtures: int, init: str, steps: int) -> MixtureDensityNetwork:
    """LOM's behaviour MDN, trained `steps` steps (Eq. 15) by the MDN agent with LOM's pretraining settings."""
    lom = LOMSettings()
    settings = MDNSettings(num_mixtures=num_mixtures, batch_size=lom.gmm_batch_size, policy_lr=lom.gmm_lr,
                           mdn_hidden=lom.mdn_hidden, mdn_init=init)
    agent = MDN(buffer.obs_dim, buffer.act_dim, settings, discount=1.0)
    for step in range(1, steps + 1):
        agent.update(buffer, step)
    return agent.mdn


def measure(name: str, layout: str, starts: int, seed: int, data_dir: str | None, mixtures: list[int],
            inits: list[str], steps: int, states: int) -> list[dict]:
    dataset = generated.load_fetch(name, starts, seed, data_dir, layout)
    _, branch_ids = generated.read_fetch_labels(generated.fetch_file(name, starts, seed, data_dir, layout))
    task = generated.FETCH_TASKS[name]
    env = FetchFourGoalEnv(task, goal_distance=fetch.LAYOUTS[layout].goal_distance(task))
    goals = env.goals
    env.close()
    rows = branch_states(name, dataset.observations, branch_ids, goals, states, np.random.default_rng(seed))
    buffer = Buffer(dataset, torch.device("cpu"), normalise=True, seed=seed)
    results = []
    for num_mixtures in mixtures:
        for init in inits:
            torch.manual_seed(seed)
            mdn = train_mdn(buffer, num_mixtures, init, steps)
            with torch.no_grad():
                quadrants = separated_quadrants(mdn(buffer.observations[torch.as_tensor(rows)]))
            results.append({"dataset": name, "layout": layout, "starts": starts, "seed": seed, "M": num_mixtures,
                            "init": init, "steps": steps, "states": len(rows),
                            "separated_share": float((quadrants >= MIN_QUADRANTS).float().mean()),
                            "quadrant_counts": [int((quadrants == k).sum()) for k in range(5)]})
            print(markdown_row(results[-1]), flush=True)
    return results


def markdown_row(result: dict) -> str:
    return (f"| {result['dataset']} | {result['layout']} | {result['M']} | {result['init']} | {result['steps']} "
            f"| {result['states']} | {100 * result['separated_share']:.1f} % | {result['quadrant_counts']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--task", default=generated.FETCH_REACH_NAME, choices=list(generated.FETCH_TASKS))
    parser.add_argument("--fetch_data", choices=list(fetch.LAYOUTS), default=fetch.BRANCHING.name)
    parser.add_argument("--starts", type=int, default=50, help="start states of the data (--fetch_starts)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the MDN and the chosen states")
    parser.add_argument("--data_dir", default=None, help="data folder (default: $LOM_DATA_DIR, else "
                        "~/.cache/lom/datasets)")
    parser.add_argument("--num_mixtures", default="4,8", help="comma-separated values of M")
    parser.add_argument("--init", default="plain", help=f"comma-separated MDN initialisations: {', '.join(MDN_INITS)}")
    parser.add_argument("--steps", type=int, default=10_000, help="MDN training steps")
    parser.add_argument("--states", type=int, default=DEFAULT_STATES, help="branch states looked at")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    return exit_status(lambda: run(parser.parse_args(argv)))


def run(args: argparse.Namespace) -> None:
    inits = args.init.split(",")
    if unknown := [init for init in inits if init not in MDN_INITS]:
        raise UserInputError(f"--init: unknown {', '.join(unknown)}; choose from {', '.join(MDN_INITS)}")
    try:
        mixtures = [int(m) for m in args.num_mixtures.split(",")]
    except ValueError:
        raise UserInputError(f"--num_mixtures takes comma-separated integers, got {args.num_mixtures!r}") from None
    if min(mixtures) < 1 or args.steps < 0 or args.states < 1 or args.starts < 1:
        raise UserInputError("--num_mixtures, --states and --starts must be at least 1, --steps at least 0")
    print("| task | data | M | init | steps | states | separated | states by quadrants 0-4 |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    results = measure(args.task, args.fetch_data, args.starts, args.seed, args.data_dir, mixtures, inits,
                      args.steps, args.states)
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    sys.exit(main())
