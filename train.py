"""Train an offline RL agent on a dataset, evaluate it, and log the scores: `python train.py --help`.

The run follows the paper's Algorithm 1: pretrain the behaviour model (LOM's MDN), then alternate
agent updates with periodic evaluations of the deterministic policy.
"""

import copy
import math
import shutil
import signal
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from agents import AGENTS
from agents.base import Agent
from utils.buffer import Buffer
from utils.checkpoints import load_latest_checkpoint, restore_rng_states, rng_states, save_checkpoint
from utils.config import Config, check_against_dataset, parse_config, saved_config
from utils.datasets import Dataset, load_dataset
from utils.errors import Interrupted, TrainingDiverged, UserInputError
from utils.evaluation import Evaluator, torch_policy
from utils.logger import RunLogger, latest_unfinished_run, run_directory, wandb_problem
from utils.pretrain_cache import cache_file, load_pretrained, save_pretrained
from utils.runtime import MetricAverager, NonFiniteWatch, resolve_device, seed_everything

POSTFIX_EVERY = 1_000  # steps between progress-bar updates (each reads metrics from the device once)
EVAL_SEED_OFFSET = 10_000  # evaluation episodes use seed + this, apart from the training streams


def load_data(config: Config) -> Dataset:
    run = config.run
    return load_dataset(run.env_name, dataset_path=run.dataset_path or None, eval_env=run.eval_env or None,
                        d4rl_dir=run.d4rl_dir or None, dataset_url=run.dataset_url or None,
                        toy_size=run.toy_size, fetch_starts=run.fetch_starts, data_dir=run.data_dir or None,
                        seed=run.seed,
                        ref_min_score=run.ref_min_score, ref_max_score=run.ref_max_score)


def pretrain(agent: Agent, buffer: Buffer, dataset: Dataset, config: Config, logger: RunLogger) -> None:
    """Algorithm 1, lines 1-4: learn the behaviour model, or load it from the cache."""
    if agent.pretrain_steps > 0:
        run = config.run
        path = cache_file(run.gmm_dir, dataset, run.agent, agent, run.normalise, run.seed)
        record = load_pretrained(agent, path) if run.save_gmm and not run.retrain_gmm else None
        if record is not None:
            tqdm.write(f"loaded the pretrained behaviour model from {path}")
        else:
            record = pretrain_until_converged(agent, buffer, logger)
            if run.save_gmm:
                save_pretrained(agent, path, record)
        logger.pretraining = {f"pretrain_{key}": value for key, value in record.items()}
    agent.finish_pretraining(buffer)


def pretrain_until_converged(agent: Agent, buffer: Buffer, logger: RunLogger) -> dict:
    """Pretrain until the held-out loss has not improved for `pretrain_patience` checks (paper Sec. 5.1:
    "until convergence"), at most `pretrain_steps` steps; the modules of the best check are kept."""
    agent.start_pretraining(buffer)
    best_loss, best_step, best_state, checks_without_improvement = math.inf, None, None, 0
    bar = tqdm(range(1, agent.pretrain_steps + 1), desc="MDN pretraining", unit="step", dynamic_ncols=True)
    for step in bar:
        metrics = agent.pretrain_step(buffer)
        if step % agent.pretrain_check_every and step != agent.pretrain_steps:
            continue
        values = {key: value.item() for key, value in metrics.items()}
        held_out = agent.held_out_loss(buffer)
        if held_out is not None:
            values["held_out_loss"] = held_out.item()
        stop_if_diverged(next(((k, step) for k, v in values.items() if not math.isfinite(v)), None), logger)
        logger.log_pretraining(step, values)
        bar.set_postfix({key: f"{value:.3f}" for key, value in values.items()})
        if held_out is None:
            continue
        if values["held_out_loss"] < best_loss:
            best_loss, best_step = values["held_out_loss"], step
            best_state, checks_without_improvement = snapshot(agent.pretrained_modules()), 0
        else:
            checks_without_improvement += 1
            if checks_without_improvement >= agent.pretrain_patience:
                break
    bar.close()
    if best_state is not None:
        for name, module in agent.pretrained_modules().items():
            module.load_state_dict(best_state[name])
    return {"steps": step, "best_step": best_step or step, "held_out_loss": best_loss if best_state else None}


def snapshot(modules: dict) -> dict:
    return {name: copy.deepcopy(module.state_dict()) for name, module in modules.items()}


class StopSignals:
    """While active, SIGTERM and SIGINT only set `received`; the loop then checkpoints and stops."""

    def __enter__(self):
        self.received = None
        self.previous = {sig: signal.signal(sig, self.receive) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def receive(self, signal_number, frame):
        self.received = signal_number

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(agent: Agent, buffer: Buffer, evaluator: Evaluator, logger: RunLogger, config: Config,
          checkpoint: dict | None = None) -> dict:
    """Algorithm 1, lines 5-21, with an evaluation every eval_every steps and at the last step; a checkpoint
    after every evaluation and when SIGTERM or SIGINT arrives."""
    run = config.run
    policy = torch_policy(agent.act, buffer.normaliser, buffer.device)
    averager, watch, last = MetricAverager(), NonFiniteWatch(), {}
    start = 0
    if checkpoint is not None:
        start = checkpoint["step"]
        averager.load_state_dict(checkpoint["averager"])
        watch.load_state_dict(checkpoint["watch"])

    def save(step: int) -> None:
        save_checkpoint(logger.run_dir, step, {
            "step": step, "agent": agent.state_dict(),
            "optimisers": {name: o.state_dict() for name, o in agent.optimisers().items()},
            "rng": rng_states(), "averager": averager.state_dict(), "watch": watch.state_dict(),
            "logger": logger.position()})

    bar = tqdm(range(start + 1, run.training_steps + 1), desc=f"{run.agent} training", unit="step",
               dynamic_ncols=True, initial=start, total=run.training_steps)
    with StopSignals() as signals:
        for step in bar:
            metrics = agent.update(buffer, step)
            averager.add(metrics)
            watch.add(metrics, step)
            if step % POSTFIX_EVERY == 0 or step % run.eval_every == 0 or step == run.training_steps:
                stop_if_diverged(watch.first_failure(), logger)
            if step % run.eval_every == 0 or step == run.training_steps:
                row = {f"train/{k}": v for k, v in averager.mean().items()} | evaluator(policy)
                logger.log(step, row)
                save(step)
                last["score"] = row.get("eval/normalised_score", row["eval/return"])
            elif signals.received is not None:
                stop_if_diverged(watch.first_failure(), logger)  # never checkpoint a diverged state
                save(step)
            if signals.received is not None:
                bar.close()
                raise Interrupted(f"stopped by signal {signals.received} at step {step} with a checkpoint; "
                                  f"continue with: python train.py --resume {logger.run_dir}", signals.received)
            if step % POSTFIX_EVERY == 0 or step == run.training_steps:
                bar.set_postfix({**{k: f"{v.item():.3g}" for k, v in metrics.items() if "loss" in k},
                                 **{k: f"{v:.1f}" for k, v in last.items()}})
    return logger.finish()


def restore(agent: Agent, buffer: Buffer, checkpoint: dict) -> None:
    """Networks, optimisers and every RNG as they were at the checkpoint."""
    agent.load_state_dict(checkpoint["agent"])
    for name, optimiser in agent.optimisers().items():
        optimiser.load_state_dict(checkpoint["optimisers"][name])
    agent.finish_pretraining(buffer)
    restore_rng_states(checkpoint["rng"])


def stop_if_diverged(failure: tuple[str, int] | None, logger: RunLogger) -> None:
    if failure is not None:
        name, step = failure
        raise TrainingDiverged(f"{name} became NaN or inf at step {step}; the run stopped there (its logs up to "
                               f"the last evaluation are in {logger.run_dir}); try a lower learning rate")


def wandb_options(config: Config, dataset: Dataset) -> dict | None:
    run = config.run
    if not run.enable_wandb:
        return None
    return {"project": run.project, "group": run.group or f"{dataset.name}_{run.agent}",
            "name": run.name or f"{run.agent}_{dataset.name}_seed{run.seed}"}


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
    buffer = Buffer(dataset, device, config.run.normalise)
    agent = AGENTS[config.run.agent](buffer.obs_dim, buffer.act_dim, config.agent, config.run.discount).to(device)

    run_dir = resume_dir or run_directory(config.run.log_path, dataset.name, config.run.agent, config.run.seed)
    tqdm.write(f"{'resuming' if checkpoint else 'run directory:'} {run_dir}")
    try:
        logger = RunLogger(run_dir, config.to_dict() | {"dataset": dataset.name, "dataset_source": dataset.source,
                                                        "device": str(device)},
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
