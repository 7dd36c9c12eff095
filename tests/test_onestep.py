"""agents/onestep.py and its policies: each loss by hand, the truncated Gaussian against numeric integration, the
pretraining phases, and what defines the method on a tiny problem (exp_weight at temperature 0 is behaviour
cloning; reverse_kl with a huge alpha keeps pi at beta^)."""

import copy
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from agents.onestep import ACTION_MARGIN, OneStep, OneStepSettings
from networks.policies import SoftClampedGaussianPolicy, TruncatedGaussianPolicy
from trainer.config import parse_config
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays

CPU = torch.device("cpu")
PROBE_STATES = torch.linspace(-0.9, 0.9, 9).unsqueeze(1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_buffer(states, actions, rewards, terminals, timeouts=None) -> Buffer:
    dataset = transitions_from_arrays("onestep-test", states, actions, rewards, terminals, timeouts,
                                      eval_env_id="unused", source="test")
    return Buffer(dataset, CPU, normalise=False)


def line_buffer(size: int = 2000, seed: int = 0) -> Buffer:
    """One-step episodes: s ~ U(-1, 1), a = 0.5 s + 0.1 noise, reward a; so Q^beta(s, a) = a, and higher
    actions are better everywhere."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-1.0, 1.0, (size, 1))
    actions = (0.5 * states + 0.1 * rng.standard_normal((size, 1))).clip(-1, 1)
    return make_buffer(states, actions, actions[:, 0], np.ones(size))


def agent_for(buffer: Buffer, discount: float = 0.99, **settings) -> OneStep:
    torch.manual_seed(0)
    defaults = {"hidden": 32, "behaviour_steps": 1, "sarsa_steps": 1}
    return OneStep(buffer.obs_dim, buffer.act_dim, OneStepSettings(**{**defaults, **settings}), discount)


def perturbed(module: torch.nn.Module, scale: float = 0.3, seed: int = 1) -> None:
    """Move every weight, so that two copies (pi and beta^, Q and its target) differ as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


def q_first(agent: OneStep, states: torch.Tensor, actions: torch.Tensor, target: bool = False) -> torch.Tensor:
    """Q(s, a) straight from the one member's layers: (B, obs), (B, A) -> (B,)."""
    critic = agent.critic_target if target else agent.critic
    return critic.q.member(torch.cat([states, actions], dim=-1), 0).squeeze(-1)


def normal_log_prob(actions, mean, std) -> torch.Tensor:
    return Normal(mean, std).log_prob(actions).sum(-1)


def pretrained(buffer: Buffer, behaviour_steps: int, sarsa_steps: int, **settings) -> OneStep:
    agent = agent_for(buffer, behaviour_steps=behaviour_steps, sarsa_steps=sarsa_steps, pretrain_batch_size=256,
                      behaviour_lr=3e-3, critic_lr=3e-3, policy_batch_size=256, **settings)
    agent.start_pretraining(buffer)
    for _ in range(agent.pretrain_steps):
        agent.pretrain_step(buffer)
    agent.finish_pretraining(buffer)
    return agent


def trained(agent: OneStep, buffer: Buffer, steps: int) -> OneStep:
    for step in range(1, steps + 1):
        agent.update(buffer, step)
    return agent


# ---- the two Gaussian heads ----------------------------------------------------------------------------


def test_gaussian_head_soft_clamps_mean_into_the_box_and_log_std_into_minus5_0():
    policy = SoftClampedGaussianPolicy(obs_dim=2, act_dim=3, hidden=(8,))
    raw = torch.tensor([-4.0, 0.3, 9.0, -2.0, 0.0, 1.5])  # 3 means, then 3 log-stds, before clamping
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.copy_(raw)
    mean, std = policy(torch.randn(4, 2))
    expected_log_std = [-5.0 + 5.0 * (math.tanh(x) + 1.0) / 2.0 for x in (-2.0, 0.0, 1.5)]
    torch.testing.assert_close(mean, torch.tanh(raw[:3]).expand(4, 3))
    torch.testing.assert_close(std.log(), torch.tensor(expected_log_std).expand(4, 3))
    torch.testing.assert_close(policy.act(torch.randn(4, 2)), torch.tanh(raw[:3]).expand(4, 3))


# (mu, sigma): centred, near an edge, wide, and as narrow as the head allows near an edge
CASES = [(0.0, 0.3), (0.9, 0.5), (-0.6, 1.0), (0.97, math.exp(-5.0))]


def standard_normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def log_normaliser(mu: float, sigma: float) -> float:
    """log Z = log(Phi((1 - mu) / sigma) - Phi((-1 - mu) / sigma)), with math.erf."""
    return math.log(standard_normal_cdf((1.0 - mu) / sigma) - standard_normal_cdf((-1.0 - mu) / sigma))


def truncated_log_density(a: float, mu: float, sigma: float) -> float:
    """log(N(a; mu, sigma) / Z) for a in [-1, 1]."""
    return -0.5 * ((a - mu) / sigma) ** 2 - math.log(sigma * math.sqrt(2.0 * math.pi)) - log_normaliser(mu, sigma)


def truncated_density_on(grid: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((grid - mu) / sigma) ** 2 - math.log(sigma * math.sqrt(2.0 * math.pi))
                  - log_normaliser(mu, sigma))


def case_parameters():
    mean = torch.tensor([[mu] for mu, _ in CASES], dtype=torch.float64)
    std = torch.tensor([[sigma] for _, sigma in CASES], dtype=torch.float64)
    return mean, std


def test_truncated_log_density_matches_the_closed_form_and_integrates_to_one_over_the_box():
    policy = TruncatedGaussianPolicy(1, 1, (4,))
    mean, std = case_parameters()
    grid = torch.linspace(-1.0, 1.0, 400_001, dtype=torch.float64)
    density = policy.log_density(grid.view(-1, 1, 1), mean, std).exp()           # (grid, cases)
    for k, (mu, sigma) in enumerate(CASES):
        assert torch.trapezoid(density[:, k], grid).item() == pytest.approx(1.0, abs=1e-6)
        for a in (-0.99, -0.2, 0.5, 0.96):
            got = policy.log_density(torch.tensor([[[a]]], dtype=torch.float64), mean[k:k + 1], std[k:k + 1])
            assert got.item() == pytest.approx(truncated_log_density(a, mu, sigma), rel=1e-9)

    # Several action dimensions: the log-densities add.
    two_d = torch.tensor([[0.3, -0.5]], dtype=torch.float64)
    joint = policy.log_density(two_d, mean[:2].T, std[:2].T)
    assert joint.item() == pytest.approx(truncated_log_density(0.3, *CASES[0])
                                         + truncated_log_density(-0.5, *CASES[1]), rel=1e-9)


def test_truncated_samples_stay_in_the_box_follow_the_distribution_and_carry_gradients():
    policy = TruncatedGaussianPolicy(1, 1, (4,))
    mean, std = (p.float().requires_grad_() for p in case_parameters())
    torch.manual_seed(0)
    draws = 200_000
    samples = policy.rsample(mean, std, num_samples=draws)                        # (n, cases, 1)
    assert samples.abs().max() <= 1.0
    grid = np.linspace(-1.0, 1.0, 400_001)
    for k, (mu, sigma) in enumerate(CASES):
        density = truncated_density_on(grid, mu, sigma)
        drawn = samples[:, k, 0].detach().double().numpy()
        expected_mean = np.trapezoid(grid * density, grid)
        assert drawn.mean() == pytest.approx(expected_mean, abs=5 * sigma / math.sqrt(draws))  # 5 standard errors
        assert policy.distribution_mean(mean, std)[k, 0].item() == pytest.approx(expected_mean, abs=1e-5)
        for point in (-0.5, 0.0, 0.5, 0.97):  # the empirical CDF against the integrated density
            below = grid <= point
            assert (drawn <= point).mean() == pytest.approx(np.trapezoid(density[below], grid[below]), abs=5e-3)
    samples.sum().backward()  # reparameterised: finite gradients reach mu and sigma
    assert torch.isfinite(mean.grad).all() and torch.isfinite(std.grad).all() and mean.grad.abs().min() > 0


def test_act_is_the_mean_of_pis_distribution():
    states = torch.randn(6, 2)
    normal, truncated = SoftClampedGaussianPolicy(2, 3, (8,)), TruncatedGaussianPolicy(2, 3, (8,))
    truncated.load_state_dict(normal.state_dict())
    mean, std = normal(states)
    torch.testing.assert_close(normal.act(states), mean)
    torch.testing.assert_close(truncated.act(states), truncated.distribution_mean(mean, std))
    with torch.no_grad():
        truncated.net[-1].bias[:3].fill_(3.0)   # mu near 1: the truncated mean sits well below mu
        truncated.net[-1].bias[3:].fill_(5.0)   # sigma near 1
    mean, std = truncated(states)
    assert (mean - truncated.act(states)).min() > 0.2 and truncated.act(states).abs().max() <= 1.0


# ---- stages 1 and 2 (pretraining) -----------------------------------------------------------------------


def test_behaviour_nll_is_minus_the_mean_gaussian_log_likelihood_of_dataset_actions():
    rng = np.random.default_rng(0)
    buffer = make_buffer(rng.standard_normal((64, 3)), rng.uniform(-1, 1, (64, 2)), np.zeros(64), np.ones(64))
    agent = agent_for(buffer)
    rows = torch.arange(0, 64, 3)
    with torch.no_grad():
        mean, std = agent.behaviour(buffer.observations[rows])
    expected = -normal_log_prob(buffer.actions[rows], mean, std).mean()
    torch.testing.assert_close(agent.behaviour_loss(buffer, rows), expected)


def test_sarsa_loss_bootstraps_from_the_dataset_next_action_with_the_target_q():
    rng = np.random.default_rng(1)
    size = 30
    states, actions = rng.standard_normal((size, 2)), rng.uniform(-1, 1, (size, 1))
    rewards, terminals, timeouts = rng.standard_normal(size), np.zeros(size), np.zeros(size)
    terminals[[9, 29]] = 1
    timeouts[19] = 1  # an episode cut by a timeout: its last row has no SARSA target
    buffer = make_buffer(states, actions, rewards, terminals, timeouts)
    agent = agent_for(buffer, discount=0.9)
    perturbed(agent.critic_target)
    rows = buffer.td_rows
    assert 19 not in rows.tolist() and len(rows) == size - 1

    states, actions, rewards, terminals = (torch.as_tensor(x, dtype=torch.float32)
                                           for x in (states, actions, rewards, terminals))
    following = (rows + 1).clamp(max=size - 1)  # row i+1 continues row i's episode unless row i is terminal
    with torch.no_grad():
        next_q = q_first(agent, states[following], actions[following], target=True)
        q = q_first(agent, states[rows], actions[rows])
    target = rewards[rows] + 0.9 * (1 - terminals[rows]) * next_q  # no bootstrap past a terminal
    torch.testing.assert_close(agent.sarsa_loss(buffer, rows), (target - q).square().mean())


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(module: torch.nn.Module, before: list[torch.Tensor]) -> bool:
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before))


def test_pretraining_trains_beta_for_behaviour_steps_then_q_by_sarsa_with_a_target_every_two_steps():
    buffer = line_buffer(256)
    agent = agent_for(buffer, behaviour_steps=3, sarsa_steps=4, pretrain_batch_size=32)
    assert agent.pretrain_steps == 7
    agent.start_pretraining(buffer)
    modules = {"behaviour": agent.behaviour, "critic": agent.critic, "target": agent.critic_target,
               "policy": agent.policy}
    # (logged key, modules that move) for calls 1-7: the target follows Q after SARSA steps 2 and 4 (calls 5, 7).
    expected = ([("behaviour_nll", {"behaviour"})] * 3
                + [("sarsa_loss", {"critic"}), ("sarsa_loss", {"critic", "target"})] * 2)
    for call, (key, moved) in enumerate(expected, start=1):
        before = {name: snapshot(module) for name, module in modules.items()}
        assert set(agent.pretrain_step(buffer)) == {key}, call
        assert {name for name, module in modules.items() if changed(module, before[name])} == moved, call

    agent.start_pretraining(buffer)  # an interrupted pretraining starts again: stage 1 first
    before = snapshot(agent.critic)
    assert set(agent.pretrain_step(buffer)) == {"behaviour_nll"} and not changed(agent.critic, before)


def test_pretrain_signature_covers_the_pretraining_settings_and_the_discount_only():
    buffer = line_buffer(64)
    base = agent_for(buffer).pretrain_signature()
    assert base["discount"] == 0.99 and agent_for(buffer, discount=0.9).pretrain_signature() != base
    for name, value in {"behaviour_steps": 2, "sarsa_steps": 2, "pretrain_batch_size": 64, "behaviour_lr": 1e-3,
                        "critic_lr": 1e-3, "tau": 0.01, "target_update_every": 1, "hidden": 16}.items():
        assert agent_for(buffer, **{name: value}).pretrain_signature() != base, name
    for name, value in {"improvement": "exp_weight", "alpha": 3.0, "temperature": 1.0, "max_weight": 10.0,
                        "num_action_samples": 5, "policy_distribution": "truncated", "policy_batch_size": 64,
                        "policy_lr": 1e-3, "pretrain_check_every": 7}.items():
        assert agent_for(buffer, **{name: value}).pretrain_signature() == base, name


def test_pi_starts_from_beta_once_and_a_restore_keeps_its_trained_weights():
    buffer = line_buffer(256)
    agent = agent_for(buffer, policy_batch_size=32)
    perturbed(agent.behaviour)
    agent.finish_pretraining(buffer)
    for mine, beta in zip(agent.policy.parameters(), agent.behaviour.parameters()):
        assert torch.equal(mine, beta) and mine.requires_grad and not beta.requires_grad
    assert not any(p.requires_grad for p in agent.critic.parameters())  # Q^beta is frozen in stage 3

    trained(agent, buffer, 3)
    policy_after = snapshot(agent.policy)
    assert changed(agent.policy, snapshot(agent.behaviour))
    agent.finish_pretraining(buffer)  # as after a checkpoint restore
    assert not changed(agent.policy, policy_after)
    fresh = agent_for(buffer, policy_batch_size=32)
    fresh.load_state_dict(agent.state_dict())
    fresh.finish_pretraining(buffer)
    assert not changed(fresh.policy, policy_after)


# ---- stage 3: the two improvement operators ----------------------------------------------------------


def test_reverse_kl_loss_is_minus_q_at_a_pi_sample_plus_alpha_times_the_sampled_kl():
    rng = np.random.default_rng(2)
    buffer = make_buffer(rng.standard_normal((40, 3)), rng.uniform(-1, 1, (40, 2)), np.zeros(40), np.ones(40))
    agent = agent_for(buffer, alpha=0.5, num_action_samples=4)
    agent.finish_pretraining(buffer)
    perturbed(agent.policy, scale=0.2)
    rows = torch.arange(0, 40, 2)
    torch.manual_seed(5)
    loss, metrics = agent.reverse_kl_loss(buffer, rows)

    # The same draws in the same order: one action per state for Q, then 4 per state for the KL.
    torch.manual_seed(5)
    states = buffer.observations[rows]
    with torch.no_grad():
        mean, std = agent.policy(states)
        beta_mean, beta_std = agent.behaviour(states)
        q = q_first(agent, states, mean + std * torch.randn(20, 2))
        kl_actions = mean + std * torch.randn(4, 20, 2)
        kl = (normal_log_prob(kl_actions, mean, std) - normal_log_prob(kl_actions, beta_mean, beta_std)).mean(0)
    torch.testing.assert_close(loss, (-q + 0.5 * kl).mean())
    torch.testing.assert_close(metrics["kl"], kl.mean())
    torch.testing.assert_close(metrics["q_value"], q.mean())

    # With many samples the KL estimate approaches the closed-form KL between the two Gaussians.
    agent.settings.num_action_samples = 20_000
    _, metrics = agent.reverse_kl_loss(buffer, rows)
    exact = kl_divergence(Normal(mean, std), Normal(beta_mean, beta_std)).sum(-1).mean()
    assert metrics["kl"].item() == pytest.approx(exact.item(), rel=0.05)


def test_exp_weight_loss_weights_the_clamped_log_likelihood_by_the_clipped_exp_advantage_over_a_beta_baseline():
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, (40, 2))
    actions[:4] = [[1.0, -1.0], [1.0, 0.0], [-1.0, 0.5], [0.2, 1.0]]  # on the box's edge: clamped for log pi
    buffer = make_buffer(rng.standard_normal((40, 3)), actions, np.zeros(40), np.ones(40))
    agent = agent_for(buffer, improvement="exp_weight", temperature=30.0, max_weight=1.5, num_action_samples=4)
    agent.finish_pretraining(buffer)
    perturbed(agent.behaviour, scale=0.2)
    rows = torch.arange(0, 40, 2)
    torch.manual_seed(6)
    loss, metrics = agent.exp_weight_loss(buffer, rows)

    torch.manual_seed(6)
    states, dataset_actions = buffer.observations[rows], buffer.actions[rows]
    with torch.no_grad():
        beta_mean, beta_std = agent.behaviour(states)
        beta_actions = beta_mean + beta_std * torch.randn(4, 20, 2)  # unclipped, as the released code draws them
        baseline = torch.stack([q_first(agent, states, beta_actions[i]) for i in range(4)]).mean(0)
        advantage = q_first(agent, states, dataset_actions) - baseline
        weight = torch.exp(30.0 * advantage).clamp(max=1.5)
        mean, std = agent.policy(states)
    inside = dataset_actions.clamp(-1 + ACTION_MARGIN, 1 - ACTION_MARGIN)
    torch.testing.assert_close(loss, -(weight * normal_log_prob(inside, mean, std)).mean())
    torch.testing.assert_close(metrics["advantage"], advantage.mean())
    assert 0 < metrics["weight_clipped"] < 1  # the clip is exercised on some rows, not all
    assert not torch.allclose(loss, -(weight * normal_log_prob(dataset_actions, mean, std)).mean())


@pytest.mark.parametrize("improvement", ["reverse_kl", "exp_weight"])
def test_a_truncated_pi_trains_with_both_operators(improvement):
    buffer = line_buffer(256)
    agent = agent_for(buffer, improvement=improvement, policy_distribution="truncated", policy_batch_size=64)
    agent.finish_pretraining(buffer)
    before = snapshot(agent.policy)
    metrics = trained(agent, buffer, 5).update(buffer, 6)
    assert all(torch.isfinite(value) for value in metrics.values()) and changed(agent.policy, before)
    assert agent.act(PROBE_STATES).abs().max() <= 1.0


# ---- what defines the method, on a tiny problem ----------------------------------------------------------


def probe(policy) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return policy(PROBE_STATES)


def test_exp_weight_at_temperature_zero_is_behaviour_cloning_and_pi_ends_at_beta():
    """All weights are exp(0) = 1, so the loss is pi's negative log-likelihood of the data: pi, restarted from
    fresh weights, learns the same Gaussian as beta^. At temperature 20 the weights favour higher actions
    (Q^beta(s, a) = a here) and pi's mean moves up: the comparison is not vacuous."""
    buffer = line_buffer()
    agent = pretrained(buffer, 600, 200, improvement="exp_weight", temperature=0.0, policy_lr=3e-3)
    warm = copy.deepcopy(agent)
    warm.settings.temperature = 20.0
    rows = torch.arange(0, 2000, 7)
    loss, metrics = agent.exp_weight_loss(buffer, rows)
    inside = buffer.actions[rows].clamp(-1 + ACTION_MARGIN, 1 - ACTION_MARGIN)
    torch.testing.assert_close(loss, -agent.policy.log_prob(buffer.observations[rows], inside).mean())
    assert metrics["weight"] == 1.0

    torch.manual_seed(3)
    agent.policy.net.apply(lambda layer: layer.reset_parameters() if isinstance(layer, torch.nn.Linear) else None)
    beta_mean, beta_std = probe(agent.behaviour)
    assert (probe(agent.policy)[0] - beta_mean).abs().max() > 0.3  # the fresh pi starts elsewhere
    pi_mean, pi_std = probe(trained(agent, buffer, 600).policy)
    assert (pi_mean - beta_mean).abs().max() < 0.05
    assert (pi_std / beta_std - 1).abs().max() < 0.15
    assert (probe(trained(warm, buffer, 300).policy)[0] - beta_mean).min() > 0.05


def test_reverse_kl_with_a_huge_alpha_keeps_pi_at_beta_while_a_small_alpha_climbs_q():
    """Here Q^beta(s, a) = a: with alpha = 0.01 pi's mean heads for the top of the box; with alpha = 1e4 the
    KL term holds pi where it started, at beta^."""
    buffer = line_buffer()
    tied = pretrained(buffer, 300, 200, alpha=1e4, policy_lr=1e-3)
    free = copy.deepcopy(tied)
    free.settings.alpha = 0.01
    beta_mean, beta_std = probe(tied.behaviour)
    pi_mean, pi_std = probe(trained(tied, buffer, 200).policy)
    assert (pi_mean - beta_mean).abs().max() < 0.02
    assert (pi_std / beta_std - 1).abs().max() < 0.1
    assert (probe(trained(free, buffer, 200).policy)[0] - beta_mean).min() > 0.2


# ---- settings -----------------------------------------------------------------------------------------


def test_onestep_runs_on_raw_states_for_1e5_steps_by_default():
    config = parse_config(["--agent", "onestep"])
    assert config.agent == OneStepSettings()
    assert config.run.normalise is False and config.run.training_steps == 100_000
    assert parse_config(["--agent", "onestep", "--normalise", "1"]).run.normalise is True
