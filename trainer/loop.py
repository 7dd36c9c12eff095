"""Algorithm 1, lines 5-21: agent updates with an evaluation every eval_every steps and at the last step; a
checkpoint after every evaluation and when SIGTERM or SIGINT arrives."""

import signal
from contextlib import contextmanager

from tqdm import tqdm

from agents.base import Agent
from utils.buffer import Buffer
from utils.checkpoints import restore_rng_states, rng_states, save_checkpoint
from utils.errors import Interrupted
from utils.evaluation import Evaluator, torch_policy
from utils.logger import RunLogger
from utils.runtime import MetricAverager, NonFiniteWatch, raise_if_diverged
from utils.settings import Config

POSTFIX_EVERY = 1_000  # steps between progress-bar updates (each reads metrics from the device once)


class StopRequests:
    """SIGTERM and SIGINT (a cluster pre-empting the job, Ctrl-C) for the whole run, never a traceback.

    Until `defer()`, while nothing but atomic files has been written, a signal stops at once: the handler
    raises Interrupted, except inside `held()`, which it is left to finish first. Once the run has a
    directory, a signal only sets `received`; the pretraining and training loops look at it every step and
    stop cleanly (the training loop after a checkpoint)."""

    def __enter__(self):
        self.received, self.deferred, self.holding = None, False, False
        self.previous = {sig: signal.signal(sig, self.receive) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def defer(self) -> None:
        self.deferred = True

    @contextmanager
    def held(self):
        """A block that a stop must not cut short; a signal that arrives inside it stops the run at its end."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.received is not None and not self.deferred:
            raise self.stop_before_start()

    def receive(self, signal_number, frame):
        self.received = signal_number
        if not (self.deferred or self.holding):
            raise self.stop_before_start()

    def stop_before_start(self) -> Interrupted:
        return Interrupted(f"stopped by signal {self.received} before the run started; nothing was written",
                           self.received)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def checkpoint_state(step: int, agent: Agent, averager: MetricAverager, watch: NonFiniteWatch,
                     logger_position: dict) -> dict:
    """Everything a resumed run needs to continue bit for bit: networks, optimisers, RNGs, metrics so far."""
    return {"step": step, "agent": agent.state_dict(),
            "optimisers": {name: o.state_dict() for name, o in agent.optimisers().items()},
            "rng": rng_states(), "averager": averager.state_dict(), "watch": watch.state_dict(),
            "logger": logger_position}


def restore(agent: Agent, buffer: Buffer, checkpoint: dict) -> None:
    """Networks, optimisers and every RNG as they were at the checkpoint."""
    agent.load_state_dict(checkpoint["agent"])
    for name, optimiser in agent.optimisers().items():
        optimiser.load_state_dict(checkpoint["optimisers"][name])
    agent.finish_pretraining(buffer)
    restore_rng_states(checkpoint["rng"])


def train(agent: Agent, buffer: Buffer, evaluator: Evaluator, logger: RunLogger, config: Config,
          signals: StopRequests, checkpoint: dict | None = None) -> dict:
    run = config.run
    policy = torch_policy(agent.act, buffer.normaliser, buffer.device)
    averager, watch, last = MetricAverager(), NonFiniteWatch(), {}
    start = 0
    if checkpoint is not None:
        start = checkpoint["step"]
        averager.load_state_dict(checkpoint["averager"])
        watch.load_state_dict(checkpoint["watch"])

    def save(step: int) -> None:
        save_checkpoint(logger.run_dir, step, checkpoint_state(step, agent, averager, watch, logger.position()))

    bar = tqdm(range(start + 1, run.training_steps + 1), desc=f"{run.agent} training", unit="step",
               dynamic_ncols=True, initial=start, total=run.training_steps)
    for step in bar:
        metrics = agent.update(buffer, step)
        averager.add(metrics)
        watch.add(metrics, step)
        if step % POSTFIX_EVERY == 0 or step % run.eval_every == 0 or step == run.training_steps:
            raise_if_diverged(watch.first_failure(), logger.run_dir)
        if step % run.eval_every == 0 or step == run.training_steps:
            row = {f"train/{k}": v for k, v in averager.mean().items()} | evaluator(policy)
            logger.log(step, row)
            save(step)
            last["score"] = row.get("eval/normalised_score", row["eval/return"])
        elif signals.received is not None:
            raise_if_diverged(watch.first_failure(), logger.run_dir)  # never checkpoint a diverged state
            save(step)
        if signals.received is not None:
            bar.close()
            raise Interrupted(f"stopped by signal {signals.received} at step {step} with a checkpoint; "
                              f"continue with: python train.py --resume {logger.run_dir}", signals.received)
        if step % POSTFIX_EVERY == 0 or step == run.training_steps:
            bar.set_postfix({**{k: f"{v.item():.3g}" for k, v in metrics.items() if "loss" in k},
                             **{k: f"{v:.1f}" for k, v in last.items()}})
    return logger.finish()
