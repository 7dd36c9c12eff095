"""agents/mixawac.py: the mixture likelihood, the component parameterisation, the component it acts with, each
loss against a hand computation, and what it learns on the toy task."""

import math

import pytest
import torch
from torch.distributions import Normal
from torch.nn import functional as F

from agents.mixawac import GaussianMixturePolicy, MixAWAC, MixAWACSettings
from datasources import load_dataset
from trainer.config import parse_config
from utils.buffer import Buffer

CPU = torch.device("cpu")
K = 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_agent(buffer: Buffer, **settings) -> MixAWAC:
    """K = 3 components and 8-wide networks, with target networks that differ from the online ones."""
    torch.manual_seed(0)
    agent = MixAWAC(buffer.obs_dim, buffer.act_dim, MixAWACSettings(num_components=K, hidden=8, **settings), 0.9)
    with torch.no_grad():
        for target in (agent.policy_target, agent.critic_target):
            for parameter in target.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
    return agent


def component(policy: GaussianMixturePolicy, states: torch.Tensor, k: int) -> Normal:
    """Component k alone, from its own pass of the network."""
    codes = F.one_hot(torch.full((states.shape[0],), k), K).float()
    return Normal(*policy.component_distribution(policy.components(states, codes)))


def test_log_prob_is_the_log_of_the_alpha_weighted_sum_of_component_densities(toy_buffer):
    policy = tiny_agent(toy_buffer).policy
    states, actions = toy_buffer.observations[:30], toy_buffer.actions[:30]
    with torch.no_grad():
        alpha = policy.mixture_weights(states)
        density = sum(alpha[:, k] * component(policy, states, k).log_prob(actions).sum(-1).exp() for k in range(K))
        assert torch.allclose(policy.log_prob(states, actions), density.log(), atol=1e-5)
    assert torch.allclose(alpha.sum(-1), torch.ones(30))


def test_log_prob_keeps_a_gradient_where_every_component_is_far_from_the_action(toy_buffer):
    """Ten units from every mean, each density is below e^-1000: the sum of densities underflows to 0 (the
    released code's log then sits on its 1e-12 floor, with no gradient). The log-sum-exp stays finite and
    still pulls the components toward the action."""
    policy = tiny_agent(toy_buffer).policy
    states, far = toy_buffer.observations[:4], torch.full((4, 2), 10.0)
    log_prob = policy.log_prob(states, far)
    assert torch.isfinite(log_prob).all() and log_prob.max() < -1000
    log_prob.sum().backward()
    assert policy.components.net[-1].bias.grad.abs().sum() > 0


def test_components_have_tanh_means_and_a_log_std_squashed_twice_into_minus_4_40_minus_0_60(toy_buffer):
    policy = tiny_agent(toy_buffer).policy
    outputs = torch.tensor([[1e3, -1e3, 1e3, -1e3], [0.3, -0.2, 0.0, 0.0]])
    mean, std = policy.component_distribution(outputs)
    assert mean[0].tolist() == pytest.approx([1.0, -1.0])
    assert mean[1].tolist() == pytest.approx([math.tanh(0.3), math.tanh(-0.2)], rel=1e-6)
    upper, lower = -5 + 2.5 * (math.tanh(1.0) + 1), -5 + 2.5 * (math.tanh(-1.0) + 1)
    assert std[0].log().tolist() == pytest.approx([upper, lower], rel=1e-5)
    assert (upper, lower) == pytest.approx((-0.596, -4.404), abs=1e-3)
    assert std[1].log().tolist() == pytest.approx([-2.5, -2.5], rel=1e-6)


def test_acting_and_sampling_use_the_component_with_the_largest_mixture_weight(toy_buffer):
    policy = tiny_agent(toy_buffer).policy
    states = toy_buffer.observations[:40]
    with torch.no_grad():
        torch.manual_seed(1)
        policy.gating[-1].weight.normal_(0.0, 5.0)  # a gating whose favourite component changes with the state
        policy.gating[-1].bias.zero_()
        best = policy.mixture_weights(states).argmax(dim=-1)
        means = torch.stack([component(policy, states, k).mean for k in range(K)])[best, torch.arange(40)]
        stds = torch.stack([component(policy, states, k).stddev for k in range(K)])[best, torch.arange(40)]
    assert len(set(best.tolist())) > 1
    assert torch.allclose(policy.act(states), means, atol=1e-6)
    torch.manual_seed(4)
    sample = policy.sample(states)
    torch.manual_seed(4)
    assert torch.allclose(sample, means + stds * torch.randn(40, 2), atol=1e-6)


def test_critic_target_and_policy_loss_by_hand(toy_buffer):
    """y = r + gamma (1 - d) min(Q1', Q2')(s', a'), a' from the target policy; the policy loss is
    -mean W log pi(a | s) with A = min Q'(s, a) - min Q'(s, a~) and W = exp(10 (A - max A) / (max A - min A))."""
    agent = tiny_agent(toy_buffer)
    rows = torch.arange(25)
    states, actions = toy_buffer.observations[rows], toy_buffer.actions[rows]
    next_states = toy_buffer.next_observations[rows]
    torch.manual_seed(6)
    target = agent.critic_target_value(toy_buffer, rows)
    torch.manual_seed(6)
    with torch.no_grad():
        next_q = torch.minimum(*agent.critic_target(next_states, agent.policy_target.sample(next_states)))
    assert torch.allclose(target, toy_buffer.rewards[rows] + 0.9 * (1 - toy_buffer.terminals[rows]) * next_q, atol=1e-6)

    torch.manual_seed(8)
    loss, metrics = agent.policy_loss(toy_buffer, rows)
    torch.manual_seed(8)
    with torch.no_grad():
        q = torch.minimum(*agent.critic_target(states, actions))
        advantage = q - torch.minimum(*agent.critic_target(states, agent.policy_target.sample(states)))
        weight = torch.exp(10 * (advantage - advantage.max()) / (advantage.max() - advantage.min()))
        expected = -(weight * agent.policy.log_prob(states, actions)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["weight"].item() == pytest.approx(weight.mean().item(), rel=1e-5)


def test_mixawac_acts_on_the_rewarded_mode_of_the_toy_task(act_on_toy_probe):
    """The mixture keeps the modes apart and the advantage weights make the rewarded mode's component the most
    probable, so the action is on that mode. Over four seeds after 1,000 steps: within 0.12 of mode 0."""
    data = load_dataset("toy-multimodal", toy_size=2000, seed=2)
    toy_buffer = Buffer(data, CPU, normalise=True)
    torch.manual_seed(2)
    agent = MixAWAC(1, 2, MixAWACSettings(hidden=64, batch_size=128, policy_lr=1e-3, critic_lr=1e-3), 0.99)
    for step in range(1, 1001):
        agent.update(toy_buffer, step)
    actions, from_rewarded = act_on_toy_probe(agent, toy_buffer)
    assert from_rewarded.max() < 0.15


def test_flags_parse_with_the_released_defaults():
    assert MixAWACSettings() == MixAWACSettings(num_components=8, scale=10.0, policy_freq=2, policy_lr=3e-4,
                                                critic_lr=3e-4, batch_size=256, tau=0.005, hidden=256)
    config = parse_config(["--agent", "mixawac", "--num_components", "4", "--scale", "2"])
    assert (config.agent.num_components, config.agent.scale) == (4, 2.0)
    assert config.run.normalise
