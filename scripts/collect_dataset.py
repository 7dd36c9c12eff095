"""Make D4RL-format locomotion datasets locally: train SAC (stable-baselines3) and write random, medium,
medium-replay, full-replay and, when the run gets good enough, expert and medium-expert files.

    pip install stable-baselines3     # only this script needs it
    python -m scripts.collect_dataset --env halfcheetah --steps 1000000
    python train.py --env_name local/halfcheetah-medium-replay-v0

Files go to --out (default $LOM_DATA_DIR/local, else ~/.cache/lom/datasets/local) as
<env>-<quality>-v0.hdf5, with the env id, seed, SAC steps and returns as HDF5 attributes; the SAC run
(model, replay buffer, snapshots) lives in <out>/runs/<env>-<version>-seed<seed>. Rerunning the same
command continues from the last checkpoint; a larger --steps extends a finished run.

medium: rollouts of the snapshot whose D4RL-normalised return is closest to --target (default: 1/3 of
the best snapshot's score), actions sampled from the policy's own squashed-Gaussian noise, as D4RL's
were. medium-replay: the replay buffer up to that snapshot. full-replay: the whole buffer. expert
(the best snapshot's rollouts) and medium-expert only when the best snapshot reaches --expert_threshold.
"""

import argparse
import sys
from pathlib import Path

from datagen.collection import ENV_NAMES, VERSIONS, Collection, Settings
from utils.errors import UserInputError

DEFAULTS = Settings()


def parse_args(argv=None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=DEFAULTS.env, choices=tuple(ENV_NAMES), help="MuJoCo task")
    parser.add_argument("--version", default=DEFAULTS.version, choices=VERSIONS, help="gymnasium env version")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of SAC, the env and the rollouts")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, help="SAC environment steps in all")
    parser.add_argument("--learning_starts", type=int, default=DEFAULTS.learning_starts,
                        help="random-action steps before SAC's first update")
    parser.add_argument("--snapshot_every", type=int, default=DEFAULTS.snapshot_every,
                        help="steps between policy snapshots (each evaluated)")
    parser.add_argument("--checkpoint_every", type=int, default=DEFAULTS.checkpoint_every,
                        help="steps between checkpoints of SAC, its buffer and the snapshots")
    parser.add_argument("--eval_episodes", type=int, default=DEFAULTS.eval_episodes,
                        help="deterministic episodes per snapshot evaluation")
    parser.add_argument("--size", type=int, default=DEFAULTS.size, help="rows of random, medium and expert sets")
    parser.add_argument("--target", type=float, default=None,
                        help="D4RL-normalised score for medium (default: 1/3 of the best snapshot's)")
    parser.add_argument("--expert_threshold", type=float, default=DEFAULTS.expert_threshold,
                        help="best snapshot's normalised score needed to write expert and medium-expert")
    parser.add_argument("--out", default="", help="dataset folder (default: $LOM_DATA_DIR/local)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    args.pop("no_progress")
    return Settings(**args)


def main(argv=None) -> int:
    progress = "--no_progress" not in (argv if argv is not None else sys.argv[1:])
    try:
        settings = parse_args(argv)
        collection = Collection(settings)
        collection.train(progress=progress)
        paths = collection.write_datasets()
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for quality, path in paths.items():
        print(f"{quality}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
