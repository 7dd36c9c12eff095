"""agents/iql.py: each loss and the reward scaling by hand, the policy's learning-rate schedule, one whole update
replayed step by step (in the authors' order and in CORL's), and the defining property: V learns an expectile of
Q over the dataset's actions."""

import copy
import math

import numpy as np
import pytest
import torch

from agents.base import optimise
from agents.iql import IQL, IQLSettings
from trainer.config import parse_config
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays

CPU = torch.device("cpu")
OBS_DIM, ACT_DIM = 3, 2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_buffer(rewards, terminals, timeouts=None, states=None, actions=None, seed: int = 0) -> Buffer:
    """Raw states (IQL's default), random unless given."""
    rng = np.random.default_rng(seed)
    size = len(rewards)
    states = rng.standard_normal((size, OBS_DIM)) if states is None else states
    actions = rng.uniform(-1.0, 1.0, (size, ACT_DIM)) if actions is None else actions
    dataset = transitions_from_arrays("iql-test", states, actions, rewards, terminals, timeouts,
                                      eval_env_id="unused", source="test")
    return Buffer(dataset, CPU, normalise=False)


def episodes_buffer(seed: int = 0) -> Buffer:
    """64 rows in 8 episodes of 8 steps: odd episodes end in a terminal, even ones in a timeout (whose last row
    has no TD target); standard-normal rewards."""
    rewards = np.random.default_rng(seed + 1).standard_normal(64)
    ends = np.arange(64) % 8 == 7
    odd = (np.arange(64) // 8) % 2 == 1
    return make_buffer(rewards, terminals=ends & odd, timeouts=ends & ~odd, seed=seed)


def distinct_target_agent(**settings) -> IQL:
    """An agent whose target critics differ from its critics, as they do after any update."""
    torch.manual_seed(0)
    agent = IQL(OBS_DIM, ACT_DIM, IQLSettings(**{"hidden": 16, **settings}), discount=0.9)
    with torch.no_grad():
        for parameter in agent.critic_target.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return agent


def member_q(critic, states, actions) -> list[torch.Tensor]:
    """Each critic of the ensemble on its own, not through the batched call: Q_1, Q_2, each (B,)."""
    pairs = torch.cat([states, actions], dim=-1)
    return [critic.q.member(pairs, k).squeeze(-1) for k in range(2)]


def hand_log_prob(agent: IQL, states, actions) -> torch.Tensor:
    """log N(a; tanh(MLP(s)), exp(clamp(log_std, -5, 2))), summed over action dimensions."""
    mean = torch.tanh(agent.actor.net(states))
    std = agent.actor.log_std.clamp(-5.0, 2.0).exp()
    return torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)


def expectile(values: np.ndarray, tau: float) -> float:
    """The tau-expectile: the root of sum |tau - 1(q < v)| (q - v) = 0 (decreasing in v), by bisection."""
    low, high = values.min(), values.max()
    for _ in range(200):
        v = 0.5 * (low + high)
        if (np.where(values < v, 1 - tau, tau) * (values - v)).sum() > 0:
            low = v
        else:
            high = v
    return 0.5 * (low + high)


# ---- the three losses ------------------------------------------------------------------------------------


def test_value_loss_is_the_expectile_loss_of_the_min_target_q_minus_v():
    agent = distinct_target_agent(expectile=0.8)
    torch.manual_seed(1)
    states, actions = torch.randn(32, OBS_DIM), torch.rand(32, ACT_DIM) * 2 - 1
    target_q = agent.target_q(states, actions)
    with torch.no_grad():
        expected_q = torch.minimum(*member_q(agent.critic_target, states, actions))
        online_q = torch.minimum(*member_q(agent.critic, states, actions))
    torch.testing.assert_close(target_q, expected_q)
    assert not torch.allclose(target_q, online_q)  # V reads the target critics, not the online ones

    u = expected_q - agent.value(states)
    assert (u > 0).any() and (u < 0).any()  # both sides of the asymmetric weight are exercised
    expected = (torch.where(u > 0, 0.8, 0.2) * u.square()).mean()
    torch.testing.assert_close(agent.value_loss(states, target_q), expected)


def test_q_loss_regresses_both_critics_on_the_scaled_reward_plus_discounted_v_of_the_next_state():
    buffer = episodes_buffer()
    agent = distinct_target_agent()
    agent.finish_pretraining(buffer)
    rows = buffer.td_rows
    states, actions, next_states = buffer.observations[rows], buffer.actions[rows], buffer.next_observations[rows]
    rewards, terminals = buffer.rewards[rows], buffer.terminals[rows]
    assert terminals.sum() == 4 and len(rows) == 60  # the four timed-out last rows have no target
    batch = agent.batch(buffer, rows)
    torch.testing.assert_close(batch.rewards, rewards * agent.reward_factor)

    with torch.no_grad():
        v, next_v = agent.state_values(states, next_states)
        torch.testing.assert_close(v, agent.value(states))
        torch.testing.assert_close(next_v, agent.value(next_states))
        target = rewards * agent.reward_factor + 0.9 * (1 - terminals) * next_v
        q1, q2 = member_q(agent.critic, states, actions)
    expected = (q1 - target).square().mean() + (q2 - target).square().mean()
    torch.testing.assert_close(agent.q_loss(batch, next_v), expected)
    ends = terminals == 1
    torch.testing.assert_close(target[ends], rewards[ends] * agent.reward_factor)  # no bootstrap past a terminal


def test_actor_loss_is_minus_the_clipped_exp_advantage_weighted_log_likelihood():
    agent = distinct_target_agent(beta=2.0, exp_adv_max=100.0)
    with torch.no_grad():
        agent.actor.log_std.copy_(torch.tensor([-7.0, 0.4]))  # below the clamp: std is exp(-5) there
    torch.manual_seed(2)
    states, actions = torch.randn(12, OBS_DIM), torch.rand(12, ACT_DIM) * 2 - 1
    advantages = torch.linspace(-2.0, 4.0, 12)  # beta * A from -4 to 8: the top rows are clipped at 100

    loss, metrics = agent.actor_loss(states, actions, advantages)
    weight = torch.exp(2.0 * advantages).clamp(max=100.0)
    expected = -(weight * hand_log_prob(agent, states, actions)).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(metrics["advantage"], advantages.mean())
    torch.testing.assert_close(metrics["weight"], weight.mean())
    torch.testing.assert_close(metrics["weight_clipped"], torch.tensor(4 / 12))  # 2A >= log(100) = 4.6

    loss.backward()  # only the policy has parameters in the loss
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())


# ---- preprocessing and schedule --------------------------------------------------------------------------


def test_return_range_scale_is_1000_over_the_spread_of_episode_returns():
    # Episodes: [1, 2, 3] ending in a terminal (6), [0.5, 0.5] ending in a timeout (1), [-1, 4, 2] cut by the
    # end of the data (5): range 6 - 1 = 5.
    rewards = np.array([1.0, 2.0, 3.0, 0.5, 0.5, -1.0, 4.0, 2.0])
    terminals = np.array([0, 0, 1, 0, 0, 0, 0, 0])
    timeouts = np.array([0, 0, 0, 0, 1, 0, 0, 0])
    buffer = make_buffer(rewards, terminals, timeouts)
    agent = IQL(OBS_DIM, ACT_DIM, IQLSettings(hidden=8), 0.99)
    agent.finish_pretraining(buffer)
    assert agent.reward_factor == pytest.approx(1000.0 / 5.0)
    agent.finish_pretraining(buffer)  # called again after a checkpoint restore: the same value
    assert agent.reward_factor == pytest.approx(200.0)

    raw = IQL(OBS_DIM, ACT_DIM, IQLSettings(hidden=8, reward_scale="none"), 0.99)
    raw.finish_pretraining(buffer)
    assert raw.reward_factor == 1.0

    same_returns = make_buffer(np.array([1.0, 2.0, 2.0, 1.0]), np.array([0, 1, 0, 1]))  # both episodes return 3
    agent.finish_pretraining(same_returns)
    assert agent.reward_factor == 1.0


def test_actor_learning_rate_follows_a_cosine_from_actor_lr_to_zero_then_stays_zero():
    agent = IQL(OBS_DIM, ACT_DIM, IQLSettings(hidden=8, actor_lr=1e-3, actor_lr_decay_steps=100), 0.99)
    assert agent.actor_lr_at(1) == pytest.approx(1e-3)  # the first update uses the full rate
    assert agent.actor_lr_at(26) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert agent.actor_lr_at(51) == pytest.approx(5e-4)
    assert agent.actor_lr_at(101) == pytest.approx(0.0, abs=1e-12)
    assert agent.actor_lr_at(10_000) == pytest.approx(0.0, abs=1e-12)

    buffer = episodes_buffer()
    agent.finish_pretraining(buffer)
    agent.update(buffer, 51)  # the update sets the policy's rate from the step alone; the critics' stays
    actor_group, critic_group = agent.actor_critic_optimiser.param_groups
    assert actor_group["lr"] == pytest.approx(5e-4) and critic_group["lr"] == 3e-4
    assert {id(p) for p in actor_group["params"]} == {id(p) for p in agent.actor.parameters()}

    constant = IQL(OBS_DIM, ACT_DIM, IQLSettings(hidden=8, actor_lr=1e-3, actor_lr_decay_steps=0), 0.99)
    assert constant.actor_lr_at(1) == constant.actor_lr_at(5_000_000) == 1e-3


# ---- one whole update ------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["original", "corl"])
def test_update_is_v_step_then_policy_and_critic_steps_on_one_batch_then_polyak(order):
    """V's step comes first; the policy's advantage (with the target critics) and the critics' target then read
    V after that step (original, the authors' code) or before it (corl). Replayed here with plain torch formulas
    on a copy of the agent, the policy and the critics with separate Adam optimisers as in Algorithm 1."""
    buffer = episodes_buffer()
    # A large V step, so that reading V before or after it changes the policy and critic steps visibly.
    agent = distinct_target_agent(batch_size=32, value_lr=1e-2, actor_lr_decay_steps=10, update_order=order)
    agent.finish_pretraining(buffer)
    replica = copy.deepcopy(agent)
    step = 4

    torch.manual_seed(5)
    metrics = agent.update(buffer, step)

    torch.manual_seed(5)
    rows = buffer.sample_td_indices(32)
    states, actions, next_states = buffer.observations[rows], buffer.actions[rows], buffer.next_observations[rows]
    episode_returns = buffer.rewards.numpy().reshape(8, 8).sum(1)
    rewards = buffer.rewards[rows] * 1000.0 / float(episode_returns.max() - episode_returns.min())
    with torch.no_grad():
        q_hat = torch.minimum(*member_q(replica.critic_target, states, actions))

    with torch.no_grad():
        v_before, next_v_before = replica.value(states), replica.value(next_states)
    u = q_hat - replica.value(states)
    value_loss = (torch.where(u > 0, 0.7, 0.3) * u.square()).mean()
    optimise(replica.value_optimiser, value_loss)
    with torch.no_grad():
        v_after, next_v_after = replica.value(states), replica.value(next_states)
    assert not torch.allclose(v_after, v_before, rtol=0, atol=1e-3)  # which V is read matters
    v, next_v = (v_after, next_v_after) if order == "original" else (v_before, next_v_before)

    actor_lr = 3e-4 * 0.5 * (1 + math.cos(math.pi * (step - 1) / 10))
    weight = torch.exp(3.0 * (q_hat - v)).clamp(max=100.0)
    actor_loss = -(weight * hand_log_prob(replica, states, actions)).mean()
    optimise(torch.optim.Adam(replica.actor.parameters(), lr=actor_lr), actor_loss)

    with torch.no_grad():
        target = rewards + 0.9 * (1 - buffer.terminals[rows]) * next_v
    q1, q2 = member_q(replica.critic, states, actions)
    q_loss = (q1 - target).square().mean() + (q2 - target).square().mean()
    optimise(torch.optim.Adam(replica.critic.parameters(), lr=3e-4), q_loss)
    with torch.no_grad():
        for target_parameter, parameter in zip(replica.critic_target.parameters(), replica.critic.parameters()):
            target_parameter.mul_(1 - 0.005).add_(0.005 * parameter)

    for (key, mine), (_, expected) in zip(agent.state_dict().items(), replica.state_dict().items(), strict=True):
        torch.testing.assert_close(mine, expected, msg=key)
    torch.testing.assert_close(metrics["value_loss"], value_loss.detach())
    torch.testing.assert_close(metrics["actor_loss"], actor_loss.detach())
    torch.testing.assert_close(metrics["q_loss"], q_loss.detach())
    assert set(metrics) == {"value_loss", "q_loss", "actor_loss", "v", "advantage", "weight", "weight_clipped"}


# ---- the defining property: V is the tau-expectile of Q over the dataset's actions -----------------------


@pytest.mark.parametrize("tau", [0.5, 0.9])
def test_v_converges_to_the_tau_expectile_of_the_target_q_over_dataset_actions(tau):
    """One state, actions from a known set, target critics fixed at Q(s, a) = a: minimising L_V alone drives
    V(s) to the tau-expectile of the actions (the mean at tau = 0.5, higher at 0.9)."""
    action_set = np.repeat([-0.8, 0.0, 0.5, 0.9], [100, 200, 60, 40])[:, None]
    size = len(action_set)
    buffer = make_buffer(np.zeros(size), np.ones(size), states=np.full((size, 1), 0.3), actions=action_set)
    torch.manual_seed(0)
    agent = IQL(1, 1, IQLSettings(hidden=16, expectile=tau, value_lr=1e-2), 0.99)
    layers = [layer for layer in agent.critic_target.q.net if hasattr(layer, "weight")]
    with torch.no_grad():  # Q(s, a) = relu(relu(a + 1)) - 1 = a on [-1, 1], through hidden unit 0 of both critics
        for layer in layers:
            layer.weight.zero_()
            layer.bias.zero_()
        layers[0].weight[:, 1, 0] = 1.0  # input 1 is the action (input 0 the state)
        layers[0].bias[:, 0, 0] = 1.0
        layers[1].weight[:, 0, 0] = 1.0
        layers[2].weight[:, 0, 0] = 1.0
        layers[2].bias.fill_(-1.0)

    states, actions = buffer.observations, buffer.actions
    target_q = agent.target_q(states, actions)
    torch.testing.assert_close(target_q, actions.squeeze(-1))
    for _ in range(800):
        optimise(agent.value_optimiser, agent.value_loss(states, target_q))

    goal = expectile(action_set.ravel(), tau)
    if tau == 0.5:
        assert goal == pytest.approx(action_set.mean())
    else:
        assert goal > action_set.mean() + 0.2
    v = agent.value(states[:1]).item()
    assert v == pytest.approx(goal, abs=2e-3)


# ---- configuration ---------------------------------------------------------------------------------------


def test_iql_trains_on_raw_states_by_default_and_its_flags_parse():
    config = parse_config(["--agent", "iql", "--expectile", "0.9", "--reward_scale", "none"])
    assert config.run.normalise is False
    assert config.agent == IQLSettings(expectile=0.9, reward_scale="none")
    assert parse_config(["--agent", "iql", "--normalise", "1"]).run.normalise is True  # CORL's choice
