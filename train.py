"""Train an offline RL agent on a dataset, evaluate it, and log the scores: `python train.py --help`.

The run follows the paper's Algorithm 1: pretrain the behaviour model (LOM's MDN), then alternate
agent updates with periodic evaluations of the deterministic policy. The pieces live in `trainer/`.
"""

import shutil
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from trainer.build import load_data, make_agent, make_buffer, wandb_options
from trainer.config import parse_config, saved_config
from trainer.loop import restore, train
from trainer.pretraining import pretrain
from utils.checkpoints import load_latest_checkpoint
from utils.errors import Interrupted, TrainingDiverged, UserInputError
from utils.evaluation import Evaluator
from utils.logger import RunLogger, latest_unfinished_run, run_directory, wandb_problem
from utils.runtime import resolve_device, seed_everything
from utils.settings import Config, check_against_dataset

EVAL_SEED_OFFSET = 10_000  # evaluation episodes use seed + this, apart from the training streams


def run(config: Config) -> dict:
    """Everything that can fail on bad input happens before the run directory is made."""
    resume_dir = None
    if config.run.resume not in ("", "auto"):
        resume_dir = Path(config.run.resume)
        config = saved_config(resume_dir)
    seed_everything(config.run.seed)
    torch.use_deterministic_algorithms(config.run.deterministic)
    device = resolve_device(config.run.device)
    dataset = load_data(config)
    if config.run.resume == "auto":
        resume_dir = latest_unfinished_run(config.run.log_path, dataset.name, config.run.agent, config.run.seed)
    checkpoint = load_latest_checkpoint(resume_dir) if resume_dir else None
    if resume_dir is not None and checkpoint is None:
        raise UserInputError(f"--resume {resume_dir}: no checkpoint there to continue from")
    check_against_dataset(config, dataset.size)
    if config.run.enable_wandb and (problem := wandb_problem()):
        raise UserInputError(problem)
    evaluator = Evaluator(dataset, config.run.eval_episodes, config.run.seed + EVAL_SEED_OFFSET)
    buffer = make_buffer(config, dataset, device)
    agent = make_agent(config, buffer)

    run_dir = resume_dir or run_directory(config.run.log_path, dataset.name, config.run.agent, config.run.seed)
    tqdm.write(f"{'resuming' if checkpoint else 'run directory:'} {run_dir}")
    tqdm.write(f"settings from {', '.join(config.files) or 'flags and defaults only'}")
    try:
        logger = RunLogger(run_dir, config.to_dict() | {"config_files": list(config.files), "dataset": dataset.name,
                                                        "dataset_source": dataset.source, "device": str(device)},
                           wandb_options(config, dataset), checkpoint and checkpoint["logger"])
    except BaseException:
        if checkpoint is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # no half-made run directory when logging cannot start
        raise
    try:
        if checkpoint is None:
            pretrain(agent, buffer, dataset, config, logger)
            # Re-seeded so the main loop is the same whether the behaviour model was trained or loaded.
            torch.manual_seed(config.run.seed + 1)
        else:
            restore(agent, buffer, checkpoint)
        summary = train(agent, buffer, evaluator, logger, config, checkpoint)
    finally:
        logger.close()
        evaluator.close()
    tqdm.write(f"final score {summary.get('final_score', summary.get('final_return'))}; results in {run_dir}")
    return summary


def main(argv: list[str] | None = None) -> int:
    try:
        run(parse_config(argv))
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except Interrupted as stop:
        print(str(stop), file=sys.stderr)
        return 128 + stop.signal_number
    return 0


if __name__ == "__main__":
    sys.exit(main())
