"""How often LOM's mode choice lands on a mixture component that holds no data at the state.

LOM picks u* = argmax_u Q_phi(s, u) (Eq. 7). A component that carries almost none of the behaviour MDN's
mixing weight at s models no data there; its samples are actions the data never took at s, and the critic's
values of them are extrapolations. For each finished LOM run of a task under LOG_PATH, this draws --rows
dataset rows uniformly and prints the share of them where the component `LOM.select_mode` returns carries
less than --below of the mixing weight at that row's state:

    python -m scripts.mode_choice runs/table2 --task fetchreach-fourgoal-v0
"""

import argparse
import sys
from pathlib import Path

import torch

from scripts.plot_modes import trained_runs


@torch.no_grad()
def empty_choice_share(agent, buffer, rows: int, below: float) -> float:
    """Share of `rows` uniform dataset rows where the selected component's mixing weight is under `below`."""
    states = buffer.observations[buffer.sample_indices(rows)]
    weights = agent.behaviour_mdn(states).logits.softmax(dim=-1)
    chosen = agent.select_mode(states, weights)
    return (weights.gather(1, chosen.unsqueeze(1)) < below).float().mean().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("log_path", type=Path, help="folder with finished runs (train.py --log_path)")
    parser.add_argument("--task", default="fetchreach-fourgoal-v0", help="the runs' dataset name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the runs' seeds")
    parser.add_argument("--rows", type=int, default=5000, help="dataset rows drawn per run (default 5000)")
    parser.add_argument("--below", type=float, default=0.05, help="weight under which a component counts as "
                        "empty at a state (default 0.05)")
    args = parser.parse_args(argv)
    found = False
    for seed in args.seeds:
        for _, agent, buffer in trained_runs(args.log_path, args.task, seed, ("lom",)):
            torch.manual_seed(seed)
            share = empty_choice_share(agent, buffer, args.rows, args.below)
            print(f"{args.task} seed {seed} (M = {agent.settings.num_mixtures}): the selected component carries < {args.below:g} of the mixture at "
                  f"{100 * share:.1f} % of {args.rows} rows")
            found = True
    if not found:
        print(f"error: no finished LOM run of {args.task} with seeds {args.seeds} under {args.log_path}; "
              "train one with train.py first", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
