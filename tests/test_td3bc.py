"""agents/td3bc.py: the critic and actor losses by hand, lambda's scale and missing gradient, the delayed
actor/target schedule, and where the actor settles between the data action and what Q prefers."""

import copy
import math

import numpy as np
import pytest
import torch

from agents.base import optimise
from agents.td3bc import TD3BC, TD3BCSettings
from trainer.config import parse_config
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays
from utils.errors import UserInputError

CPU = torch.device("cpu")
SLOPE, OFFSET = 0.3, -0.2  # the data's action: a = SLOPE * s + OFFSET, s uniform in [-1, 1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def linear_policy_buffer(size: int, obs_dim: int = 1, act_dim: int = 1, terminal_every: int = 10,
                         seed: int = 0) -> Buffer:
    """States uniform in [-1, 1]; every action dimension SLOPE * s_0 + OFFSET (noise-free); rewards N(0, 1);
    an episode ends in a terminal every `terminal_every` rows."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-1.0, 1.0, (size, obs_dim))
    actions = np.repeat(SLOPE * states[:, :1] + OFFSET, act_dim, axis=1)
    terminals = (np.arange(size) % terminal_every == terminal_every - 1).astype(float)
    dataset = transitions_from_arrays("linear", states, actions, rng.standard_normal(size), terminals,
                                      eval_env_id="unused", source="test")
    return Buffer(dataset, CPU, normalise=True)


def agent_with_distinct_targets(buffer: Buffer, **settings) -> TD3BC:
    """A TD3BC agent whose target networks differ from the online ones, as they do after any update."""
    torch.manual_seed(0)
    agent = TD3BC(buffer.obs_dim, buffer.act_dim, TD3BCSettings(hidden=32, **settings), discount=0.9)
    with torch.no_grad():
        for parameter in [*agent.critic_target.parameters(), *agent.actor_target.parameters()]:
            parameter.add_(0.3 * torch.randn_like(parameter))
    return agent


def member_q(critic, states: torch.Tensor, actions: torch.Tensor, k: int) -> torch.Tensor:
    """Critic member k alone, through the ensemble's per-member path: (B,)."""
    return critic.q.member(torch.cat([states, actions], dim=-1), k).squeeze(-1)


def all_parameters(module) -> list[torch.Tensor]:
    return [parameter.detach().clone() for parameter in module.parameters()]


def same(first: list[torch.Tensor], second) -> bool:
    second = list(second.parameters()) if isinstance(second, torch.nn.Module) else second
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


# ---- losses by hand --------------------------------------------------------------------------------------


def test_critic_loss_is_each_critics_mse_to_the_smoothed_clipped_double_q_target():
    buffer = linear_policy_buffer(60, obs_dim=3, act_dim=2)
    # Wide noise so that both clips act: the noise clip on most entries, the action range on some.
    agent = agent_with_distinct_targets(buffer, policy_noise=2.0, noise_clip=0.5)
    rows = buffer.td_rows
    states, actions = buffer.observations[rows], buffer.actions[rows]
    next_states, rewards, terminals = buffer.next_observations[rows], buffer.rewards[rows], buffer.terminals[rows]
    assert terminals.sum() == 6

    torch.manual_seed(5)
    loss = agent.critic_loss(buffer, rows)
    torch.manual_seed(5)
    with torch.no_grad():
        target_actions = torch.tanh(agent.actor_target.net(next_states))
        noise = torch.randn_like(target_actions) * 2.0
        assert (noise.abs() > 0.5).float().mean() > 0.5
        smoothed = (target_actions + noise.clamp(-0.5, 0.5)).clamp(-1.0, 1.0)
        assert (smoothed.abs() == 1.0).any()
        next_q = torch.minimum(member_q(agent.critic_target, next_states, smoothed, 0),
                               member_q(agent.critic_target, next_states, smoothed, 1))
        y = rewards + 0.9 * (1.0 - terminals) * next_q
        expected = sum((member_q(agent.critic, states, actions, k) - y).square().mean() for k in (0, 1))
    torch.testing.assert_close(loss, expected)

    # The same target, and no bootstrap past a terminal.
    torch.manual_seed(5)
    target = agent.critic_target_value(buffer, rows)
    torch.testing.assert_close(target, y)
    torch.testing.assert_close(target[terminals == 1], rewards[terminals == 1])


def test_actor_loss_is_minus_lambda_q1_plus_the_mse_over_batch_and_action_dimensions():
    buffer = linear_policy_buffer(64, obs_dim=3, act_dim=2)
    agent = agent_with_distinct_targets(buffer, alpha=2.5)
    rows = torch.arange(64)
    states, actions = buffer.observations[rows], buffer.actions[rows]

    loss, metrics = agent.actor_loss(buffer, rows)
    with torch.no_grad():
        policy_actions = torch.tanh(agent.actor.net(states))
        q1 = member_q(agent.critic, states, policy_actions, 0)
        lam = 2.5 / q1.abs().mean()
        squared_error = (policy_actions - actions).square()
        expected = -lam * q1.mean() + squared_error.sum() / squared_error.numel()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(metrics["bc_lambda"], lam)
    torch.testing.assert_close(metrics["q_mean"], q1.mean())
    # Q1 alone, not the minimum of the two critics, and the square averaged (not summed) over actions.
    q_min = agent.critic(states, policy_actions).min(dim=0).values.detach()
    assert not torch.allclose(loss, -(2.5 / q_min.abs().mean()) * q_min.mean() + squared_error.mean())
    assert not torch.allclose(loss, -lam * q1.mean() + squared_error.sum(-1).mean())


def test_lambda_is_alpha_over_mean_abs_q_exactly_and_carries_no_gradient():
    buffer = linear_policy_buffer(64, obs_dim=3, act_dim=2)
    agent = agent_with_distinct_targets(buffer, alpha=4.0)
    q = torch.tensor([-3.0, 1.0, 0.5, -0.5], requires_grad=True)
    lam = agent.bc_lambda(q)
    assert lam == torch.tensor(3.2) and not lam.requires_grad  # 4 / mean(3, 1, 0.5, 0.5)

    rows = torch.arange(64)
    loss, _ = agent.actor_loss(buffer, rows)
    gradient = torch.autograd.grad(loss, list(agent.actor.parameters()))

    # The same loss with lambda a plain number: the gradient must match.
    states, actions = buffer.observations[rows], buffer.actions[rows]
    policy_actions = agent.actor(states)
    q1 = member_q(agent.critic, states, policy_actions, 0)
    constant = 4.0 / q1.abs().mean().item()
    with_constant = -constant * q1.mean() + (policy_actions - actions).square().mean()
    expected = torch.autograd.grad(with_constant, list(agent.actor.parameters()))
    for mine, theirs in zip(gradient, expected, strict=True):
        torch.testing.assert_close(mine, theirs)

    # Lambda left in the graph gives another gradient: the comparison above can tell them apart.
    policy_actions = agent.actor(states)
    q1 = member_q(agent.critic, states, policy_actions, 0)
    attached = -(4.0 / q1.abs().mean()) * q1.mean() + (policy_actions - actions).square().mean()
    wrong = torch.autograd.grad(attached, list(agent.actor.parameters()))
    assert any(not torch.allclose(mine, theirs) for mine, theirs in zip(gradient, wrong))


# ---- the update schedule -----------------------------------------------------------------------------------


def test_actor_and_targets_move_every_second_step_only_and_the_actor_uses_that_steps_batch():
    buffer = linear_policy_buffer(200, obs_dim=3, act_dim=2)
    agent = agent_with_distinct_targets(buffer, batch_size=32)
    actor, critic = all_parameters(agent.actor), all_parameters(agent.critic)
    actor_target, critic_target = all_parameters(agent.actor_target), all_parameters(agent.critic_target)

    metrics = agent.update(buffer, 1)
    assert set(metrics) == {"critic_loss"}
    assert not same(critic, agent.critic)
    assert same(actor, agent.actor) and same(actor_target, agent.actor_target)
    assert same(critic_target, agent.critic_target)

    # Step 2 by hand on a copy: one batch, the critic step, then the actor step on the same rows with the
    # critic just updated, then both targets <- (1 - tau) target + tau online.
    by_hand = copy.deepcopy(agent)
    torch.manual_seed(11)
    metrics = agent.update(buffer, 2)
    torch.manual_seed(11)
    rows = buffer.sample_td_indices(32)
    optimise(by_hand.critic_optimiser, by_hand.critic_loss(buffer, rows))
    actor_loss, _ = by_hand.actor_loss(buffer, rows)
    # The actor's loss builds no gradient for the critics, and the actor step leaves them trainable.
    assert all(gradient is None for gradient in torch.autograd.grad(
        actor_loss, list(by_hand.critic.parameters()), allow_unused=True, retain_graph=True))
    optimise(by_hand.actor_optimiser, actor_loss)
    assert all(p.requires_grad for p in agent.critic.parameters())
    assert set(metrics) == {"critic_loss", "actor_loss", "bc_lambda", "q_mean"}
    torch.testing.assert_close(metrics["actor_loss"], actor_loss.detach())
    assert same(all_parameters(by_hand.actor), agent.actor) and same(all_parameters(by_hand.critic), agent.critic)
    assert not same(actor, agent.actor)
    for old, target, online in [(actor_target, agent.actor_target, agent.actor),
                                (critic_target, agent.critic_target, agent.critic)]:
        for before, after, now in zip(old, target.parameters(), online.parameters(), strict=True):
            torch.testing.assert_close(after, before + 0.005 * (now - before))

    actor, critic = all_parameters(agent.actor), all_parameters(agent.critic)
    actor_target, critic_target = all_parameters(agent.actor_target), all_parameters(agent.critic_target)
    assert set(agent.update(buffer, 3)) == {"critic_loss"}
    assert not same(critic, agent.critic)
    assert same(actor, agent.actor) and same(actor_target, agent.actor_target)
    assert same(critic_target, agent.critic_target)


# ---- what the actor learns -----------------------------------------------------------------------------------


def set_critic_to_action_plus_two(agent: TD3BC) -> None:
    """Both critics become Q(s, a) = a + 2 (one action dimension): a ReLU path that carries a + 2 > 0."""
    action_input = agent.obs_dim
    with torch.no_grad():
        layers = [layer for layer in agent.critic.q.net if hasattr(layer, "weight")]
        for layer in layers:
            layer.weight.zero_()
            layer.bias.zero_()
            layer.weight[:, 0, 0] = 1.0
        layers[0].weight[:, 0, 0] = 0.0
        layers[0].weight[:, action_input, 0] = 1.0
        layers[0].bias[:, 0, 0] = 2.0


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.5])
def test_actor_settles_at_the_data_action_shifted_toward_higher_q_by_lambda_over_two(alpha):
    """Q(s, a) = a + 2 prefers larger actions everywhere. Per sample the actor loss has its minimum at
    pi(s) = a + lambda / 2, with lambda = alpha / mean(pi + 2); with m = mean(a) + 2 that fixed point is
    lambda = sqrt(m^2 + 2 alpha) - m. alpha = 0: the data action itself; larger alpha: a shift that grows
    with alpha but stays bounded, however strongly Q keeps preferring larger actions."""
    buffer = linear_policy_buffer(2000, terminal_every=1)
    torch.manual_seed(0)
    agent = TD3BC(1, 1, TD3BCSettings(alpha=alpha, hidden=32, actor_lr=3e-3), discount=0.99)
    set_critic_to_action_plus_two(agent)
    probe = torch.linspace(-1.0, 1.0, 11).unsqueeze(1)
    q = agent.critic(probe, probe)
    torch.testing.assert_close(q, (probe.squeeze(1) + 2.0).expand(2, 11))

    for _ in range(400):  # actor steps alone: the critic stays as set
        loss, _ = agent.actor_loss(buffer, buffer.sample_indices(128))
        optimise(agent.actor_optimiser, loss)

    m = buffer.actions.mean().item() + 2.0
    shift = (math.sqrt(m * m + 2.0 * alpha) - m) / 2.0
    learned = agent.act(buffer.observations[:500])
    data = buffer.actions[:500]
    assert (learned - data - shift).abs().max() < 0.03
    # Bounded: pi >= a makes mean(pi + 2) >= m, so lambda / 2 <= alpha / (2 m) whatever Q's slope.
    assert learned.sub(data).mean() <= alpha / (2.0 * m) + 0.01


# ---- settings ------------------------------------------------------------------------------------------------


def test_flags_parse_with_the_originals_defaults_and_bad_values_are_one_line_errors():
    config = parse_config(["--agent", "td3bc", "--alpha", "5", "--policy_freq", "3"])
    assert config.agent == TD3BCSettings(alpha=5.0, policy_freq=3)
    assert config.run.normalise  # the paper's state normalisation is on by default
    assert TD3BCSettings() == TD3BCSettings(alpha=2.5, policy_noise=0.2, noise_clip=0.5, policy_freq=2,
                                            actor_lr=3e-4, critic_lr=3e-4, batch_size=256, tau=0.005,
                                            hidden=256)
    for flag, value in [("--policy_freq", "0"), ("--tau", "1.5"), ("--alpha", "-1"), ("--noise_clip", "-0.1")]:
        with pytest.raises(UserInputError, match=flag) as error:
            parse_config(["--agent", "td3bc", flag, value])
        assert "\n" not in str(error.value)
