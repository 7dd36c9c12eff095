"""Algorithm 1, lines 1-4: learn the behaviour model (LOM's MDN) until convergence, or load it from the cache."""

import copy
import math

from tqdm import tqdm

from agents.base import Agent
from utils.buffer import Buffer
from utils.dataset import Dataset
from utils.errors import Interrupted
from utils.logger import RunLogger
from utils.pretrain_cache import cache_file, load_pretrained, save_pretrained
from utils.runtime import raise_if_diverged
from utils.settings import Config


def pretrain(agent: Agent, buffer: Buffer, dataset: Dataset, config: Config, logger: RunLogger,
             signals=None) -> None:
    """Pretrain the agent's behaviour model, or load it from the cache; then freeze it."""
    if agent.pretrain_steps > 0:
        run = config.run
        path = cache_file(run.gmm_dir, dataset, run.agent, run.seed, pretrain_key(agent, config))
        modules = agent.pretrained_modules()
        record = load_pretrained(modules, path) if run.save_gmm and not run.retrain_gmm else None
        if record is not None:
            tqdm.write(f"loaded the pretrained behaviour model from {path}")
        else:
            record = pretrain_until_converged(agent, buffer, logger, signals)
            if run.save_gmm:
                save_pretrained(modules, path, record)
        logger.pretraining = {f"pretrain_{key}": value for key, value in record.items()}
    agent.finish_pretraining(buffer)


def pretrain_key(agent: Agent, config: Config) -> dict:
    """Every setting that changes the pretrained modules: the agent's own, and how states are scaled."""
    key = {"normalise": config.run.normalise, **agent.pretrain_signature()}
    if config.run.scaler_noise > 0:  # only then: the cache entries of runs with the default scaler keep their key
        key["scaler_noise"] = config.run.scaler_noise
    return key


def pretrain_until_converged(agent: Agent, buffer: Buffer, logger: RunLogger, signals=None) -> dict:
    """Pretrain until the held-out loss has not improved for `pretrain_patience` checks (paper Sec. 5.1:
    "until convergence"), at most `pretrain_steps` steps; the modules of the best check are kept.
    `signals` (trainer.loop.StopRequests): a stop request ends pretraining at the next step."""
    agent.start_pretraining(buffer)
    best_loss, best_step, best_state, checks_without_improvement = math.inf, None, None, 0
    bar = tqdm(range(1, agent.pretrain_steps + 1), desc=f"{type(agent).__name__} pretraining", unit="step",
               dynamic_ncols=True)
    for step in bar:
        if signals is not None and signals.received is not None:
            bar.close()
            raise Interrupted(f"stopped by signal {signals.received} during pretraining at step {step}, before the "
                              "first checkpoint; pretraining starts again on the next run", signals.received)
        metrics = agent.pretrain_step(buffer)
        if step % agent.pretrain_check_every and step != agent.pretrain_steps:
            continue
        values = {key: value.item() for key, value in metrics.items()}
        held_out = agent.held_out_loss(buffer)
        if held_out is not None:
            values["held_out_loss"] = held_out.item()
        raise_if_diverged(next(((k, step) for k, v in values.items() if not math.isfinite(v)), None), logger.run_dir)
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
