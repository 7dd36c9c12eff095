"""The baselines of MAHALO's paper (Li et al., ICML 2023), as the authors' baselines.py runs them: each is ATAC
(agents/atac.py) on rows chosen and labelled its own way, except BCO and BC, which only clone.

| agent  | trains ATAC on                                                                                      |
| rp     | D_a with rewards clip(g(s, s', d), r_min, r_max), g regressed on D_r                                 |
| ap     | D_r with actions clip(IDM(s, s', d), +-(1 - 1e-6)), the inverse dynamics regressed on D_a               |
| arp    | both of the above                                                                                   |
| uds    | D_a (without the appended expert copy) with reward r_min, plus D_r with its actions (Yu et al. 2022) |
| uds_a  | the same, but the expert copy in D_a also gets r_min                                                |
| oracle | D_a with the true environment rewards                                                               |
| bco    | no ATAC: clones D_r's actions labelled by the inverse dynamics                                      |
| bc_reward_set | no ATAC: clones D_r's own actions (the paper's BC)                                          |

Label models are regressed (MSE) in a pretraining phase before ATAC's behaviour pretraining, on rows with a
defined next state; they label every such row once, after that phase.
"""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from agents.atac import (ATAC, HIDDEN_LAYERS, LOG_STD_RANGE, RUN_DEFAULTS, ATACSettings, Transitions, TransitionNet,
                         tuned_cloning_losses)
from agents.base import Agent, AgentSettings, adam, optimise
from agents.mahalo import reward_regression_loss
from networks.policies import TanhGaussianPolicy
from utils.buffer import Buffer
from utils.settings import setting

def inverse_dynamics_loss(inverse_dynamics: TransitionNet, action_set: Buffer, rows: torch.Tensor) -> torch.Tensor:
    """E_Da[mean_j (IDM_j(s, s', d) - a_j)^2]: the inverse dynamics fitted to the action set's actions."""
    predicted = inverse_dynamics(action_set.observations[rows], action_set.next_observations[rows],
                                 action_set.terminals[rows])
    return (predicted - action_set.actions[rows]).square().mean()


def with_predicted_rewards(action_set: Buffer, reward_model: TransitionNet) -> Transitions:
    """D_a's rows labelled r = clip(g(s, s', d), r_min, r_max)."""
    rows = Transitions.of(action_set)
    return dataclasses.replace(rows, rewards=rows.labels(reward_model).clamp(*action_set.reward_range))


def with_predicted_actions(reward_set: Buffer, inverse_dynamics: TransitionNet) -> Transitions:
    """D_r's rows (with their reward labels) labelled a = clip(IDM(s, s', d), +-(1 - 1e-6)), as the policy's tanh
    needs them strictly inside the box; D_r's own actions, if any, are not read."""
    rows = Transitions.of(reward_set)
    bound = 1.0 - TanhGaussianPolicy.ACTION_MARGIN
    return dataclasses.replace(rows, actions=rows.labels(inverse_dynamics).clamp(-bound, bound))


@dataclass
class LabelSettings(ATACSettings):
    needs_reward_set_actions = ""  # labels replace what is missing: every scenario works

    label_steps: int = setting(100_000, "steps of the label models' regression (MSE) before the behaviour "
                               "pretraining", at_least=0)


class ActionRewardPrediction(ATAC):
    """arp: ATAC on D_a labelled by the reward model plus D_r labelled by the inverse dynamics. rp and ap keep
    one half each."""

    Settings = LabelSettings
    predicts_rewards = predicts_actions = True

    def __init__(self, obs_dim: int, act_dim: int, settings: LabelSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        if self.predicts_rewards:
            self.reward_model = TransitionNet(obs_dim, 1, self.hidden, squash=False)
        if self.predicts_actions:
            self.inverse_dynamics = TransitionNet(obs_dim, act_dim, self.hidden, squash=True)

    @property
    def label_steps(self) -> int:
        return self.settings.label_steps

    def label_models(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name, used in (("reward_model", self.predicts_rewards),
                                                             ("inverse_dynamics", self.predicts_actions)) if used}

    def label_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        """min_g E_Dr[(g - r)^2] and min_IDM E_Da[||IDM - a||^2], one step of each model in use."""
        batch_size, losses = self.settings.batch_size, {}
        if self.predicts_rewards:
            losses["reward_label_loss"] = reward_regression_loss(
                self.reward_model, buffer.reward_set, buffer.reward_set.sample_td_indices(batch_size))
        if self.predicts_actions:
            losses["action_label_loss"] = inverse_dynamics_loss(self.inverse_dynamics, buffer,
                                                                buffer.sample_td_indices(batch_size))
        optimise(self.pretraining_optimisers["labels"], sum(losses.values()))
        return {key: value.detach() for key, value in losses.items()}

    def training_rows(self, buffer: Buffer) -> Transitions:
        parts = []
        if self.predicts_rewards:
            parts.append(with_predicted_rewards(buffer, self.reward_model))
        if self.predicts_actions:
            parts.append(with_predicted_actions(buffer.reward_set, self.inverse_dynamics))
        return sum(parts[1:], parts[0])


class RewardPrediction(ActionRewardPrediction):
    """rp: ATAC on D_a with the reward model's labels."""

    predicts_actions = False


class ActionPrediction(ActionRewardPrediction):
    """ap: ATAC on D_r with the inverse dynamics' actions."""

    predicts_rewards = False


class UDS(ATAC):
    """uds: D_a's rows get the lowest reward r_min and join D_r (with its own actions and labels); the expert
    copy appended to D_a in il and rl_expert is left out, its twin in D_r being labelled."""

    relabels_expert_copy = False

    def training_rows(self, buffer: Buffer) -> Transitions:
        rows = buffer.td_rows
        if not self.relabels_expert_copy:
            rows = rows[rows < buffer.size - buffer.expert_copy_size]
        unlabelled = Transitions.of(buffer, rows)
        unlabelled = dataclasses.replace(unlabelled, rewards=torch.full_like(unlabelled.rewards,
                                                                             buffer.reward_range[0]))
        return unlabelled + Transitions.of(buffer.reward_set)


class UDSWithoutOverlap(UDS):
    """uds_a: UDS without knowing which D_a rows are also in D_r: the expert copy gets r_min too."""

    relabels_expert_copy = True


@dataclass
class OracleSettings(ATACSettings):
    needs_reward_set_actions = ""  # it reads only D_a


class Oracle(ATAC):
    """oracle: ATAC on D_a with the true environment rewards (the V range still from the reward set's)."""

    Settings = OracleSettings

    def training_rows(self, buffer: Buffer) -> Transitions:
        return Transitions.of(buffer)


@dataclass
class RewardSetBCSettings(AgentSettings):
    learns_from_two_datasets: ClassVar[bool] = True
    needs_reward_set_actions: ClassVar[str] = "clones them"

    lr: float = setting(5e-4, "Adam learning rate of the policy, the temperature and the inverse dynamics", above=0,
                        at_most=1)
    batch_size: int = setting(256, "rows per step", at_least=1,
                              at_most=1_000_000)  # half of D4RL's largest set; 1M x 256 floats: 1 GB a layer
    hidden: int = setting(256, "width of the three hidden layers of the policy and the inverse dynamics",
                          at_least=1, at_most=8192)  # one 8192-wide layer is 256 MB of float32 weights


class RewardSetBC(Agent):
    """bc_reward_set, the paper's BC: behaviour cloning of the reward set's own actions by ATAC's pretraining
    loss, NS(-E log pi(a | s), -H, alpha), alpha tuned (in the original, the policy after `common`'s behaviour
    pretraining)."""

    Settings = RewardSetBCSettings
    run_defaults = {**RUN_DEFAULTS, "training_steps": 100_000}  # the original's 100k cloning steps

    def __init__(self, obs_dim: int, act_dim: int, settings: RewardSetBCSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        s, self.hidden = settings, (settings.hidden,) * HIDDEN_LAYERS
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, self.hidden, LOG_STD_RANGE, zero_log_std_init=True)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = -float(act_dim)
        self.policy_optimiser = adam(self.policy.parameters(), s.lr)
        self.alpha_optimiser = adam([self.log_alpha], s.lr)
        self.training_set: Transitions | None = None

    def finish_pretraining(self, buffer: Buffer) -> None:
        self.training_set = Transitions.of(buffer.reward_set)

    def update(self, buffer: Buffer, step_index: int) -> dict[str, torch.Tensor]:
        """The temperature first, then cloning with the new alpha (as ATAC's pretraining)."""
        batch = self.training_set.sample(self.settings.batch_size)
        losses = tuned_cloning_losses(self.policy, self.log_alpha, self.alpha_optimiser, self.target_entropy,
                                      batch.observations, batch.actions)
        optimise(self.policy_optimiser, losses["cloning_loss"])
        return {key: value.detach() for key, value in losses.items()}

    @torch.no_grad()
    def act(self, states: torch.Tensor) -> torch.Tensor:
        return self.policy.act(states)


@dataclass
class BCOSettings(RewardSetBCSettings):
    needs_reward_set_actions = ""  # the inverse dynamics supplies them: every scenario works

    label_steps: int = setting(100_000, "steps of the inverse dynamics' regression (MSE) before cloning",
                               at_least=0)


class BCO(RewardSetBC):
    """bco: behaviour cloning from observation: an inverse dynamics model regressed on the action set labels the
    reward set's actions, which are then cloned as bc_reward_set clones its own (in the original, the policy
    after `ap`'s behaviour pretraining)."""

    Settings = BCOSettings

    def __init__(self, obs_dim: int, act_dim: int, settings: BCOSettings, discount: float):
        super().__init__(obs_dim, act_dim, settings, discount)
        self.inverse_dynamics = TransitionNet(obs_dim, act_dim, self.hidden, squash=True)
        self.pretrain_steps = settings.label_steps
        self.pretraining_optimisers: dict[str, torch.optim.Optimizer] = {}

    def start_pretraining(self, buffer: Buffer) -> None:
        self.pretraining_optimisers = {"labels": adam(self.inverse_dynamics.parameters(), self.settings.lr)}

    def pretrain_step(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        """min_IDM E_Da[||IDM(s, s', d) - a||^2]."""
        loss = inverse_dynamics_loss(self.inverse_dynamics, buffer, buffer.sample_td_indices(self.settings.batch_size))
        optimise(self.pretraining_optimisers["labels"], loss)
        return {"action_label_loss": loss.detach()}

    def pretrained_modules(self) -> dict[str, nn.Module]:
        return {"inverse_dynamics": self.inverse_dynamics}

    def pretrain_signature(self) -> dict:
        s = self.settings
        return {"label_steps": s.label_steps, "batch_size": s.batch_size, "hidden": s.hidden, "lr": s.lr}

    def finish_pretraining(self, buffer: Buffer) -> None:
        self.training_set = with_predicted_actions(buffer.reward_set, self.inverse_dynamics)
        self.pretraining_optimisers = {}
