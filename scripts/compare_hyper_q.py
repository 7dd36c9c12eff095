"""Does the faster multi-head hyper Q choose the same components as the released one-hot form, and does
early-stopped MDN pretraining change which component LOM selects?  On D4RL-shaped multi-modal data.

The data has the shape of halfcheetah-medium-replay-v2 (202,000 rows, 17-dim states, 6-dim actions,
1000-step episodes). Actions come from five state-dependent modes; the reward is highest near mode 0,
and next states are drawn independently, so the true value of a mixture component at a state is, up to a
constant, the expected reward of its actions. That gives an oracle choice of component to compare with:

1. pretrain the MDN with early stopping (held-out NLL), report the steps it took;
2. train LOM's critic and hyper Q with each hyper Q form (same seed, same MDN) for --steps steps;
3. on 5,000 dataset states report how often each form's argmax equals the oracle's, how often the two
   forms agree, and the expected reward of the chosen components;
4. train the MDN on to --long_gmm_steps without early stopping and report how far the oracle-best
   component's mean moves (the action LOM imitates), against the early-stopped MDN's.

    python -m scripts.compare_hyper_q --steps 5000      # about 15 minutes on 2 CPU cores
"""

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from agents.lom import LOM, LOMSettings
from trainer.pretraining import pretrain_until_converged
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays
from utils.logger import RunLogger

SIZE, OBS_DIM, ACT_DIM, MODES, EPISODE = 202_000, 17, 6, 5, 1000


class ModalTask:
    """Five modes c_k(s) = 0.8 tanh(W_k s + b_k); reward 1 - mean((a - c_0(s))^2)."""

    def __init__(self, rng: np.random.Generator):
        self.weights = rng.standard_normal((MODES, OBS_DIM, ACT_DIM)) / np.sqrt(OBS_DIM)
        self.biases = rng.standard_normal((MODES, ACT_DIM)) * 0.5

    def centres(self, states: np.ndarray) -> np.ndarray:
        return 0.8 * np.tanh(np.einsum("no,koa->nka", states, self.weights) + self.biases)  # (N, K, A)

    def reward(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        best = self.centres(states)[:, 0]
        return 1.0 - ((actions - best) ** 2).mean(-1)


def make_data(task: ModalTask, rng: np.random.Generator):
    states = rng.standard_normal((SIZE, OBS_DIM)).astype(np.float32)
    modes = rng.integers(MODES, size=SIZE)
    actions = task.centres(states)[np.arange(SIZE), modes] + 0.1 * rng.standard_normal((SIZE, ACT_DIM))
    actions = np.clip(actions, -1, 1).astype(np.float32)
    timeouts = np.arange(SIZE) % EPISODE == EPISODE - 1
    return transitions_from_arrays("synthetic-halfcheetah-shaped", states, actions, task.reward(states, actions),
                                   np.zeros(SIZE), timeouts, eval_env_id="HalfCheetah-v4", source="synthetic")


@torch.no_grad()
def oracle_values(agent: LOM, buffer: Buffer, task: ModalTask, rows: torch.Tensor, raw_states, samples=64):
    """E_{a ~ component u} r(s, a) by Monte Carlo with the true reward: (R, M)."""
    mixture = agent.behaviour_mdn(buffer.observations[rows])
    values = np.zeros((len(rows), mixture.means.shape[1]))
    for _ in range(samples):
        actions = (mixture.means + mixture.stds * torch.randn_like(mixture.means)).clamp(-1, 1).numpy()
        for u in range(actions.shape[1]):
            values[:, u] += task.reward(raw_states, actions[:, u]) / samples
    return values, mixture.means.numpy()


def train_lom(settings: LOMSettings, mdn_state: dict, buffer: Buffer, steps: int, seed: int) -> LOM:
    torch.manual_seed(seed)
    agent = LOM(OBS_DIM, ACT_DIM, settings, discount=0.99)
    agent.behaviour_mdn.load_state_dict(mdn_state)
    agent.finish_pretraining(buffer)
    torch.manual_seed(seed + 1)
    for step in range(1, steps + 1):
        agent.update(buffer, step)
    return agent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="LOM steps per hyper Q form")
    parser.add_argument("--gmm_steps", type=int, default=200_000, help="cap of the early-stopped MDN pretraining")
    parser.add_argument("--long_gmm_steps", type=int, default=60_000, help="MDN steps without early stopping")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log_dir", default="runs/compare_hyper_q", help="where pretraining rows are written")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    task = ModalTask(rng)
    dataset = make_data(task, rng)
    buffer = Buffer(dataset, torch.device("cpu"), normalise=True)
    # halfcheetah-medium-replay's settings
    base = LOMSettings(num_mixtures=MODES, K=1, beta=5.0, ac_rand=0.4, C=100.0, gmm_steps=args.gmm_steps)

    torch.manual_seed(args.seed)
    pretrainer = LOM(OBS_DIM, ACT_DIM, base, discount=0.99)
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(log_dir, {})
    record = pretrain_until_converged(pretrainer, buffer, logger)
    logger.close()
    print(json.dumps({"mdn_early_stopping": record}))
    early_mdn = copy.deepcopy(pretrainer.behaviour_mdn.state_dict())

    rows = torch.arange(0, SIZE, SIZE // 5000)[:5000]
    raw_states = dataset.observations[rows.numpy()]
    choices = {}
    for form in ("onehot", "multihead"):
        agent = train_lom(dataclasses.replace(base, hyper_q=form), early_mdn, buffer, args.steps, args.seed)
        with torch.no_grad():
            choices[form] = agent.select_mode(buffer.observations[rows]).numpy()
    values, early_means = oracle_values(pretrainer, buffer, task, rows, raw_states)
    oracle = values.argmax(1)
    report = {"states": len(rows), "oracle_mean_value_of_best": float(values.max(1).mean()),
              "mean_value_over_components": float(values.mean())}
    for form, chosen in choices.items():
        report[f"{form}_matches_oracle"] = float((chosen == oracle).mean())
        report[f"{form}_mean_value_of_choice"] = float(values[np.arange(len(rows)), chosen].mean())
    report["forms_agree"] = float((choices["onehot"] == choices["multihead"]).mean())
    print(json.dumps({"hyper_q_forms": report}))

    torch.manual_seed(args.seed)
    long_run = LOM(OBS_DIM, ACT_DIM, dataclasses.replace(base, gmm_holdout=0.0), discount=0.99)
    long_run.start_pretraining(buffer)
    for _ in range(args.long_gmm_steps):
        long_run.pretrain_step(buffer)
    long_values, long_means = oracle_values(long_run, buffer, task, rows, raw_states)
    picked_early = early_means[np.arange(len(rows)), oracle]
    picked_long = long_means[np.arange(len(rows)), long_values.argmax(1)]
    distance = np.abs(picked_early - picked_long).max(1)
    print(json.dumps({"mdn_early_vs_long": {
        "early_steps": record["steps"], "long_steps": args.long_gmm_steps,
        "selected_mean_max_abs_difference_median": float(np.median(distance)),
        "share_within_0.1": float((distance < 0.1).mean()),
        "value_of_selected_early": float(values.max(1).mean()),
        "value_of_selected_long": float(long_values.max(1).mean())}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
