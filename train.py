"""Train an offline RL agent on a dataset, evaluate it, and log the scores: `python train.py --help`.

The run follows the paper's Algorithm 1: pretrain the behaviour model (LOM's MDN), then alternate
agent updates with periodic evaluations of the deterministic policy. The pieces live in `trainer/`.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from tqdm import tqdm

import envs
from trainer.build import check_output_folders, load_data, make_agent, make_buffer, wandb_options
from trainer.config import parse_config, record_training_steps, resumed_config
from trainer.loop import StopRequests, restore, train
from trainer.pretraining import pretrain
from utils.checkpoints import checkpoints, load_latest_checkpoint
from utils.errors import Interrupted, UserInputError, exit_status
from utils.evaluation import Evaluator
from utils.logger import RunLogger, latest_unfinished_run, run_directory, wandb_problem
from utils.runlock import RunLock
from utils.runtime import keep_freed_memory, resolve_device, seed_everything
from utils.settings import Config, check_against_dataset

EVAL_SEED_OFFSET = 10_000  # evaluation episodes use seed + this, apart from the training streams


def run(config: Config, signals: StopRequests) -> dict:
    """Everything that can fail on bad input happens before the run directory is made or touched."""
    lock, resume_dir = None, None
    try:
        config, lock, resume_dir = claim_named_run(config)  # before anything else: a second writer stops at once
        seed_everything(config.run.seed)
        torch.use_deterministic_algorithms(config.run.deterministic)
        device = resolve_device(config.run.device)
        check_output_folders(config)
        with signals.held():
            envs.import_simulator()
        dataset = load_data(config)
        if config.run.resume == "auto":
            resume_dir = latest_unfinished_run(config.run.log_path, dataset.name, config.run.agent, config.run.seed)
            if resume_dir is not None:
                config = resumed_config(config, resume_dir, compare_all=True)
                lock = RunLock(resume_dir).acquire()
        if resume_dir is not None and (summary := finished_summary(resume_dir, config.run.training_steps)):
            tqdm.write(f"{resume_dir} is finished: {summary['steps']} steps, final score "
                       f"{summary.get('final_score', summary.get('final_return'))}; nothing to do (raise "
                       "--training_steps to extend it)")
            return summary
        checkpoint = load_latest_checkpoint(resume_dir) if resume_dir else None
        if resume_dir is not None and checkpoint is None:
            raise UserInputError(f"--resume {resume_dir}: no checkpoint there to continue from")
        check_against_dataset(config, dataset.size)
        if config.run.enable_wandb and (problem := wandb_problem()):
            raise UserInputError(problem)
        evaluator = Evaluator(dataset, config.run.eval_episodes, config.run.seed + EVAL_SEED_OFFSET)
        buffer = make_buffer(config, dataset, device)
        agent = make_agent(config, buffer)
        agent.check_data(buffer)

        if lock is None:
            lock = RunLock(new_run_directory(config, dataset.name)).acquire()
        if resume_dir is not None:
            extend(resume_dir, config.run.training_steps)
        signals.defer()  # from here on the run has a directory: a signal stops it at the next step, cleanly
        return train_in(lock.path.parent, config, dataset, device, evaluator, buffer, agent, checkpoint, signals)
    finally:
        if lock is not None:
            lock.release()


def claim_named_run(config: Config) -> tuple[Config, RunLock | None, Path | None]:
    """The run a command names and its lock: --resume DIR, or a --run_dir that holds a run (which continues with
    the same settings, or starts over in place if it never reached a checkpoint). (config, None, None) when
    the command names no existing run."""
    if config.run.resume not in ("", "auto"):
        resume_dir = Path(config.run.resume)
        config = resumed_config(config, resume_dir, compare_all=False)
        return config, RunLock(resume_dir).acquire(), resume_dir
    named = Path(config.run.run_dir) if config.run.run_dir else None
    if named is None or not named.is_dir():
        return config, None, None
    if not (named / "config.json").exists():
        if any(named.iterdir()):
            raise UserInputError(f"--run_dir {named} holds files but no run (no config.json); choose a new or "
                                 "empty folder")
        return config, None, None
    config = resumed_config(config, named, compare_all=True, flag="--run_dir")
    lock = RunLock(named).acquire()
    return config, lock, named if checkpoints(named) or (named / "summary.json").exists() else None


def train_in(run_dir: Path, config: Config, dataset, device, evaluator, buffer, agent, checkpoint,
             signals: StopRequests) -> dict:
    """Algorithm 1 in the run directory: pretrain (or restore the checkpoint), then train and evaluate."""
    tqdm.write(f"{'resuming' if checkpoint else 'run directory:'} {run_dir}")
    tqdm.write(f"settings from {', '.join(config.files) or 'flags and defaults only'}")
    try:
        logger = RunLogger(run_dir, config.to_dict() | {"config_files": list(config.files), "dataset": dataset.name,
                                                        "dataset_source": dataset.source, "device": str(device)}
                           | ({"dataset_parts": dataset.parts} if dataset.parts else {}),
                           wandb_options(config, dataset), checkpoint and checkpoint["logger"])
    except BaseException:
        evaluator.close()
        if checkpoint is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # no half-made run directory when logging cannot start
        raise
    try:
        if checkpoint is None:
            pretrain(agent, buffer, dataset, config, logger, signals)
            # Re-seeded so the main loop is the same whether the behaviour model was trained or loaded.
            torch.manual_seed(config.run.seed + 1)
        else:
            restore(agent, buffer, checkpoint)
        summary = train(agent, buffer, evaluator, logger, config, signals, checkpoint)
    except Interrupted as stop:
        if checkpoints(run_dir):
            raise
        logger.close()
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing to resume from: --resume auto would skip it
        raise Interrupted(f"{stop}; the run had no checkpoint yet, so {run_dir} was removed: run the same "
                          "command again to start over", stop.signal_number) from None
    finally:
        logger.close()
        evaluator.close()
    tqdm.write(f"final score {summary.get('final_score', summary.get('final_return'))}; results in {run_dir}")
    return summary


def new_run_directory(config: Config, dataset_name: str) -> Path:
    """--run_dir when given (a sweep names each run's directory), else a new dated one under --log_path."""
    if not config.run.run_dir:
        return run_directory(config.run.log_path, dataset_name, config.run.agent, config.run.seed)
    folder = Path(config.run.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def finished_summary(run_dir: Path, training_steps: int) -> dict | None:
    """The run's summary when it has trained `training_steps` steps already, else None."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("steps", 0) >= training_steps else None


def extend(run_dir: Path, training_steps: int) -> None:
    """A run asked to go further than it was set to: its config.json says so, and it is unfinished again."""
    record_training_steps(run_dir, training_steps)
    (run_dir / "summary.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    with StopRequests() as signals:
        return exit_status(lambda: run(parse_config(argv), signals))


if __name__ == "__main__":
    sys.exit(main())
