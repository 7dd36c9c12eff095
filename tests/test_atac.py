"""agents/atac.py: NS, the weight projection, the V range, ATAC's clamped backup and losses and the behaviour
pretraining's losses against hand computations on tiny batches, the new TanhGaussianPolicy options, and the
refusal of scenarios without the reward set's actions."""

import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from agents.atac import (ATAC, ATACSettings, Transitions, behaviour_cloning_loss, normalized_sum, project_weights,
                         temperature_loss, value_range)
from datasources import load_dataset
from networks.critics import CriticEnsemble
from networks.mlp import EnsembleLinear
from networks.policies import TanhGaussianPolicy
from utils.buffer import Buffer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GAMMA = 0.9


def tiny_atac(obs_dim: int = 2, act_dim: int = 2, seed: int = 0, **settings) -> ATAC:
    torch.manual_seed(seed)
    agent = ATAC(obs_dim, act_dim, ATACSettings(hidden=8, batch_size=4, behaviour_steps=0, **settings), GAMMA)
    with torch.no_grad():  # targets that differ from the critics, as after any update
        for parameter in agent.critic_target.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    agent.reward_range, agent.value_range = (0.0, 1.0), (-1.0, 1.5)  # a range the tiny batch reaches
    return agent


def tiny_batch(obs_dim: int = 2, act_dim: int = 2, size: int = 4) -> Transitions:
    generator = torch.Generator().manual_seed(5)
    return Transitions(torch.randn(size, obs_dim, generator=generator), torch.rand(size, act_dim, generator=generator)
                       * 1.8 - 0.9, torch.randn(size, obs_dim, generator=generator),
                       torch.tensor([0.0, 1.0, 0.0, 0.0])[:size], torch.tensor([0.5, 1.0, 0.0, 2.0])[:size])


def member_q(critic: CriticEnsemble, states: torch.Tensor, actions: torch.Tensor, k: int) -> torch.Tensor:
    """Q_k(s, a), one member at a time (the hand computation's way)."""
    return critic.q.member(torch.cat([states, actions], -1), k).squeeze(-1)


def test_normalized_sum_divides_by_a_weight_above_one_and_multiplies_by_one_below():
    x, y = torch.tensor(3.0), torch.tensor(2.0)
    assert normalized_sum(x, y, 10.0).item() == pytest.approx(3.0 / 10 + 2.0)
    assert normalized_sum(x, y, 0.5).item() == pytest.approx(3.0 + 0.5 * 2.0)
    assert normalized_sum(x, y, torch.tensor(10.0)).item() == pytest.approx(2.3)
    assert normalized_sum(x, y, torch.tensor(0.5)).item() == pytest.approx(4.0)
    assert normalized_sum(x, y, math.inf).item() == 2.0  # rho = inf: the first term is dropped


def test_projection_scales_a_layer_above_the_bound_to_it_and_leaves_one_below_unchanged():
    torch.manual_seed(0)
    critic = CriticEnsemble(3, 2, 2, (16, 16))
    first = next(layer for layer in critic.modules() if isinstance(layer, EnsembleLinear))
    with torch.no_grad():
        first.weight[0].mul_(100.0)  # member 0 far above c = 5, member 1 below it
    before = first.weight[1].clone()
    assert first.weight[0].norm() > 5 > before.norm()
    bias = first.bias.clone()
    project_weights(critic, 5.0)
    assert first.weight[0].norm().item() == pytest.approx(5.0, rel=1e-6)
    assert torch.equal(first.weight[1], before) and torch.equal(first.bias, bias)


def test_value_range_is_the_originals_clip_v_range():
    assert value_range((0.0, 1.0), 0.99, True) == pytest.approx((-100.0, 200.0))  # imitation: [-100, 200]
    assert value_range((-3.0, 0.25), 0.99, True) == pytest.approx((-600.0, 100.0))
    assert value_range((0.0, 1.0), 0.99, False) == (-math.inf, math.inf)


def test_atac_backup_clamps_the_whole_target():
    agent = tiny_atac()
    agent.value_range = (-100.0, 200.0)
    backup = agent.bellman_backup(torch.tensor([0.5, 1.0, 0.5]), torch.tensor([0.0, 1.0, 0.0]),
                                  torch.tensor([300.0, -500.0, -500.0]))
    # 0.5 + 0.9 * 300 = 270.5 -> 200; terminal: 1.0; 0.5 - 450 -> -100
    assert backup.tolist() == pytest.approx([200.0, 1.0, -100.0])


def test_atac_critic_loss_by_hand():
    agent, batch = tiny_atac(beta=10.0), tiny_batch()
    torch.manual_seed(3)
    loss, policy_actions, log_pi, parts = agent.critic_loss(batch)

    torch.manual_seed(3)  # the same draws: a' ~ pi(. | s') first, then a~ ~ pi(. | s)
    mean, std = agent.policy(batch.next_observations)
    next_actions = torch.tanh(mean + std * torch.randn(4, 2))
    mean, std = agent.policy(batch.observations)
    actions_pi = torch.tanh(mean + std * torch.randn(4, 2))
    torch.testing.assert_close(policy_actions, actions_pi)
    low, high = agent.value_range
    next_target = torch.minimum(member_q(agent.critic_target, batch.next_observations, next_actions, 0),
                                member_q(agent.critic_target, batch.next_observations, next_actions, 1))
    not_done = 1 - batch.terminals
    expected = 0.0
    for k in range(2):
        q = member_q(agent.critic, batch.observations, batch.actions, k)
        td = (batch.rewards + GAMMA * not_done * next_target).clamp(low, high)
        residual = (batch.rewards + GAMMA * not_done * member_q(agent.critic, batch.next_observations, next_actions,
                                                                k)).clamp(low, high)
        bellman = 0.5 * ((q - td) ** 2).mean() + 0.5 * ((q - residual) ** 2).mean()
        pessimism = (member_q(agent.critic, batch.observations, actions_pi, k) - q).mean()
        expected = expected + pessimism / 10.0 + bellman  # NS(pess, bell, 10)
    torch.testing.assert_close(loss, expected)
    assert parts["pessimism_loss"].item() != 0


def test_actor_and_temperature_losses_by_hand():
    agent, batch = tiny_atac(), tiny_batch()
    log_pi = torch.tensor([-1.0, -3.0])
    # H = 2, target -|A| = -2: log alpha * (2 + 2)
    assert temperature_loss(torch.tensor(math.log(2.0)), log_pi, -2.0).item() == pytest.approx(4 * math.log(2.0))
    actions = torch.rand(4, 2, requires_grad=True)
    log_pi = torch.tensor([-1.0, -2.0, 0.5, 1.5])
    for alpha in (3.0, 0.5):
        with torch.no_grad():
            agent.log_alpha.fill_(math.log(alpha))
        q_second = member_q(agent.critic, batch.observations, actions, 1)
        expected = -q_second.mean() / alpha + log_pi.mean() if alpha > 1 else -q_second.mean() + alpha * log_pi.mean()
        torch.testing.assert_close(agent.actor_loss(batch.observations, actions, log_pi), expected)
    agent.critic.zero_grad(set_to_none=True)
    agent.actor_loss(batch.observations, actions, log_pi).backward()
    assert all(parameter.grad is None for parameter in agent.critic.parameters())  # frozen: only a~ gets it
    assert actions.grad is not None and actions.grad.abs().sum() > 0


def test_tanh_gaussian_log_prob_of_given_actions_and_the_zero_log_std_start():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(3, 2, (8,), (math.log(1e-5), math.log(10.0)), zero_log_std_init=True)
    states = torch.randn(5, 3)
    mean, std = policy(states)
    assert torch.equal(std, torch.ones(5, 2))  # log sigma rows start at 0
    actions = torch.tensor([[0.3, -0.7], [0.99, 0.0], [-0.5, 0.5], [0.1, 0.2], [1.0, -1.0]])
    squashed = TransformedDistribution(Normal(mean, std), [TanhTransform()])
    bound = 1 - 1e-6
    expected = squashed.log_prob(actions.clamp(-bound, bound)).sum(-1)
    torch.testing.assert_close(policy.log_prob(states, actions), expected, atol=2e-3, rtol=1e-4)
    assert torch.isfinite(policy.log_prob(states, actions)).all()  # a = +-1 is pulled inside the box
    with torch.no_grad():
        policy.net[-1].bias[2:].fill_(50.0)
    assert policy(states)[1].max().item() == pytest.approx(10.0)  # sigma clamped at 10


def test_behaviour_pretraining_losses_by_hand():
    agent, batch = tiny_atac(), tiny_batch()
    log_pi = torch.tensor([-1.0, -2.0, 0.5, 1.5])
    mean, std = agent.policy(batch.observations)
    log_likelihood = TransformedDistribution(Normal(mean, std), [TanhTransform()]).log_prob(batch.actions).sum(-1)
    cloning = behaviour_cloning_loss(agent.policy, batch.observations, batch.actions, log_pi, torch.tensor(0.5))
    torch.testing.assert_close(cloning, -log_likelihood.mean() + 0.5 * log_pi.mean(), atol=1e-4, rtol=1e-4)

    torch.manual_seed(4)
    bellman = agent.pretraining_bellman_loss(batch.observations, batch.actions, batch.next_observations,
                                             batch.terminals, batch.rewards)
    torch.manual_seed(4)
    mean, std = agent.policy(batch.next_observations)
    next_actions = torch.tanh(mean + std * torch.randn(4, 2))
    next_target = torch.minimum(member_q(agent.critic_target, batch.next_observations, next_actions, 0),
                                member_q(agent.critic_target, batch.next_observations, next_actions, 1))
    expected = 0.0
    for k in range(2):
        q = member_q(agent.critic, batch.observations, batch.actions, k)
        td = (batch.rewards + GAMMA * (1 - batch.terminals) * next_target).clamp(*agent.value_range)
        residual = (batch.rewards + GAMMA * (1 - batch.terminals)
                    * member_q(agent.critic, batch.next_observations, next_actions, k)).clamp(*agent.value_range)
        # AL2 at 0.5 = half the squared error; w1 = w2 = 0.5
        expected = expected + 0.5 * (0.5 * (td - q) ** 2).mean() + 0.5 * (0.5 * (residual - q) ** 2).mean()
    torch.testing.assert_close(bellman, expected)


def test_behaviour_step_moves_the_target_before_the_loss_and_steps_policy_and_critics():
    agent, batch = tiny_atac(), tiny_batch()
    dataset = load_dataset("toy-multimodal", toy_size=512, seed=0, scenario="rl_sample", remove_terminals=False)
    agent.start_pretraining(Buffer(dataset, torch.device("cpu"), normalise=True))
    target = [parameter.clone() for parameter in agent.critic_target.parameters()]
    online = [parameter.clone() for parameter in agent.critic.parameters()]
    policy = [parameter.clone() for parameter in agent.policy.parameters()]
    agent.behaviour_step(batch.observations, batch.actions, batch.next_observations, batch.terminals, batch.rewards)
    for old, new, source in zip(target, agent.critic_target.parameters(), online):
        torch.testing.assert_close(new, torch.lerp(old, source, agent.settings.tau))  # EMA of the pre-step critics
    assert any(not torch.equal(old, new) for old, new in zip(policy, agent.policy.parameters()))
    assert agent.pretrain_log_alpha.item() != 0 and agent.log_alpha.item() == 0
