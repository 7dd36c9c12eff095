"""agents/cql.py: each loss against a hand computation on a tiny batch, the one-pass sampling and critic
evaluation against per-pair evaluation, what CQL's regulariser does to Q away from the data, and the
Lagrange multiplier."""

import copy
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from agents.cql import CQL, CQLSettings
from networks.critics import ensemble_mse
from trainer.config import parse_config
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays
from utils.errors import UserInputError

CPU = torch.device("cpu")
DATA_ACTION = 0.5  # where the 1-D dataset actions concentrate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def concentrated_buffer(size: int, obs_dim: int = 1, act_dim: int = 1, seed: int = 0,
                        terminals: np.ndarray | None = None) -> Buffer:
    """States uniform in [-1, 1]^obs; actions DATA_ACTION + 0.05 N(0, 1) in every dimension; reward 1 - |a|^2;
    one-step episodes unless `terminals` says otherwise."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-1.0, 1.0, (size, obs_dim))
    actions = (DATA_ACTION + 0.05 * rng.standard_normal((size, act_dim))).clip(-1, 1)
    dataset = transitions_from_arrays(
        "concentrated", states, actions, 1.0 - np.square(actions).sum(-1),
        np.ones(size) if terminals is None else terminals, eval_env_id="unused", source="test")
    return Buffer(dataset, CPU, normalise=False)


def cql_agent(obs_dim: int = 2, act_dim: int = 2, discount: float = 0.9, seed: int = 0, **settings) -> CQL:
    """A small agent whose target critics differ from its critics (as they do after any update)."""
    torch.manual_seed(seed)
    agent = CQL(obs_dim, act_dim, CQLSettings(**{"hidden": 32, **settings}), discount)
    with torch.no_grad():
        for parameter in agent.critic_target.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return agent


def member_q(critic, states: torch.Tensor, actions: torch.Tensor, k: int) -> torch.Tensor:
    """Q_k(s, a) of critic k alone, one row per (s, a) pair: (B,)."""
    return critic.q.member(torch.cat([states, actions], dim=-1), k).squeeze(-1)


def tanh_gaussian(agent: CQL, states: torch.Tensor) -> TransformedDistribution:
    mean, std = agent.policy(states)
    return TransformedDistribution(Normal(mean, std), [TanhTransform()])


# ---- the policy's samples and log-densities --------------------------------------------------------------


def test_sample_policy_draws_n_plus_one_actions_at_s_and_at_s_prime_in_one_pass():
    agent = cql_agent(num_sampled_actions=4)
    states, next_states = torch.randn(5, 2), torch.randn(5, 2)
    torch.manual_seed(11)
    actions, log_pi, next_actions, next_log_pi, proposals, proposal_log_pi = agent.sample_policy(states, next_states)

    torch.manual_seed(11)
    mean, std = agent.policy(torch.cat([states, next_states]))  # (10, 2)
    u = (mean + std * torch.randn(5, 10, 2)).detach()  # 1 + n samples of every state
    expected = torch.tanh(u)
    torch.testing.assert_close(actions, expected[0, :5])
    torch.testing.assert_close(next_actions, expected[0, 5:])
    # Proposals alternate between pi(. | s) and pi(. | s'); each column of the batch keeps its own state.
    torch.testing.assert_close(proposals[0::2], expected[1:, :5])
    torch.testing.assert_close(proposals[1::2], expected[1:, 5:])
    assert proposals.shape == (8, 5, 2) and proposal_log_pi.shape == (8, 5)

    # Each log-probability is the tanh-Gaussian density of its own action (torch.distributions as reference).
    reference = tanh_gaussian(agent, torch.cat([states, next_states]))
    log_probs = reference.log_prob(expected).sum(-1).detach()  # (5, 10)
    torch.testing.assert_close(log_pi, log_probs[0, :5], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(next_log_pi, log_probs[0, 5:], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(proposal_log_pi[0::2], log_probs[1:, :5], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(proposal_log_pi[1::2], log_probs[1:, 5:], rtol=1e-4, atol=1e-4)

    # Only the policy-loss sample carries a gradient; what the critics and the target read is fixed.
    assert actions.requires_grad and log_pi.requires_grad
    assert not any(t.requires_grad for t in (next_actions, next_log_pi, proposals, proposal_log_pi))


def test_data_log_prob_is_the_tanh_gaussian_density_and_stays_finite_at_the_action_bounds():
    agent = cql_agent()
    states = torch.randn(6, 2)
    actions = torch.rand(6, 2) * 1.6 - 0.8  # interior: the authors' epsilons change nothing measurable
    reference = tanh_gaussian(agent, states).log_prob(actions).sum(-1)
    torch.testing.assert_close(agent.data_log_prob(states, actions), reference, rtol=1e-4, atol=1e-4)

    # At a = +-1 the authors' form floors 1 +- a at 1e-6: u = atanh is 0.5 log(2 / 1e-6) and the Jacobian
    # term is log(1e-6).
    bounds = torch.tensor([[1.0, -1.0]]).expand(6, 2)
    mean, std = agent.policy(states)
    u = 0.5 * math.log(2 / 1e-6) * bounds
    expected = Normal(mean, std).log_prob(u).sum(-1) - 2 * math.log(1e-6)
    torch.testing.assert_close(agent.data_log_prob(states, bounds), expected)


# ---- 1. entropy temperature and policy -----------------------------------------------------------------


def test_alpha_loss_is_minus_log_alpha_times_log_pi_plus_target_entropy():
    agent = cql_agent(act_dim=3)
    with torch.no_grad():
        agent.log_alpha.fill_(0.4)
    log_pi = torch.tensor([-1.0, 2.0, 0.5], requires_grad=True)
    loss = agent.alpha_loss(log_pi)
    torch.testing.assert_close(loss, torch.tensor(-0.4 * ((-1 - 3) + (2 - 3) + (0.5 - 3)) / 3))
    loss.backward()
    assert log_pi.grad is None  # log pi is held fixed: this loss trains alpha alone
    # Entropy below target (log pi above 3 = |A|): the gradient step raises alpha.
    agent.log_alpha.grad = None
    agent.alpha_loss(torch.full((4,), 5.0)).backward()
    assert agent.log_alpha.grad < 0


def test_policy_loss_is_alpha_log_pi_minus_min_q_after_the_warm_start_and_bc_during_it():
    agent = cql_agent(bc_warmup_steps=10)
    states, data_actions = torch.randn(8, 2), torch.rand(8, 2) * 1.6 - 0.8
    actions, log_pi = torch.rand(8, 2) * 2 - 1, torch.randn(8)
    alpha = torch.tensor(0.3)
    with torch.no_grad():
        min_q = torch.minimum(member_q(agent.critic, states, actions, 0), member_q(agent.critic, states, actions, 1))
        mean, std = agent.policy(states)
        data_log_prob = (Normal(mean, std).log_prob(torch.atanh(data_actions))
                         - torch.log(1 - data_actions.square())).sum(-1)
        sac = agent.policy_loss(states, data_actions, actions, log_pi, alpha, step_index=11)
        bc_last = agent.policy_loss(states, data_actions, actions, log_pi, alpha, step_index=10)
    torch.testing.assert_close(sac, (0.3 * log_pi - min_q).mean())
    torch.testing.assert_close(bc_last, (0.3 * log_pi - data_log_prob).mean(), rtol=1e-4, atol=1e-4)


# ---- 2. conservative policy evaluation -------------------------------------------------------------------


@pytest.mark.parametrize("backup_entropy", [False, True])
def test_q_target_bootstraps_from_min_target_q_minus_entropy_only_if_asked(backup_entropy):
    agent = cql_agent(backup_entropy=backup_entropy, discount=0.9)
    rewards, terminals = torch.randn(6), torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    next_states, next_actions, next_log_pi = torch.randn(6, 2), torch.rand(6, 2) * 2 - 1, torch.randn(6)
    alpha = torch.tensor(0.7)
    target = agent.q_target(rewards, terminals, next_states, next_actions, next_log_pi, alpha)
    with torch.no_grad():
        next_v = torch.minimum(member_q(agent.critic_target, next_states, next_actions, 0),
                               member_q(agent.critic_target, next_states, next_actions, 1))
    if backup_entropy:
        next_v = next_v - 0.7 * next_log_pi
    torch.testing.assert_close(target, rewards + 0.9 * (1 - terminals) * next_v)
    torch.testing.assert_close(target[terminals == 1], rewards[terminals == 1])
    assert not target.requires_grad


def test_proposals_are_n_uniform_actions_then_the_policy_actions_with_their_log_densities():
    agent = cql_agent(act_dim=3, num_sampled_actions=50)
    policy_actions, policy_log_pi = torch.rand(100, 7, 3) * 2 - 1, torch.randn(100, 7)
    proposals, log_density = agent.proposals_with_uniform(policy_actions, policy_log_pi)
    assert proposals.shape == (150, 7, 3) and log_density.shape == (150, 7)
    uniform = proposals[:50]
    assert uniform.min() >= -1 and uniform.max() <= 1 and uniform.min() < -0.9 and uniform.max() > 0.9
    assert abs(uniform.mean()) < 0.05
    torch.testing.assert_close(log_density[:50], torch.full((50, 7), -3 * math.log(2)))  # log 0.5^3
    assert torch.equal(proposals[50:], policy_actions) and torch.equal(log_density[50:], policy_log_pi)


def test_critic_values_evaluate_each_state_with_its_data_action_and_its_own_proposals():
    agent = cql_agent()
    states, data_actions = torch.randn(4, 2), torch.rand(4, 2) * 2 - 1
    proposals = torch.rand(6, 4, 2) * 2 - 1
    q = agent.critic_values(states, data_actions, proposals)
    assert q.shape == (2, 7, 4)
    with torch.no_grad():
        for k in range(2):
            torch.testing.assert_close(q[k, 0], member_q(agent.critic, states, data_actions, k))
            for j in range(6):
                torch.testing.assert_close(q[k, 1 + j], member_q(agent.critic, states, proposals[j], k))


def gap_by_loops(q: torch.Tensor, log_density: torch.Tensor, temperature: float, importance_sampling: bool):
    """E_b[T log sum_j exp(x_j / T) - Q(s_b, a_data)] per critic, with plain Python sums: with importance
    sampling x_j = Q(s_b, a_j) - log density(a_j) over the proposals, without x_j = Q over all of them and the
    data action."""
    critics, rows, batch = q.shape
    gaps = []
    for k in range(critics):
        total = 0.0
        for b in range(batch):
            if importance_sampling:
                terms = [float(q[k, 1 + j, b] - log_density[j, b]) for j in range(rows - 1)]
            else:
                terms = [float(q[k, j, b]) for j in range(rows)]
            total += temperature * math.log(sum(math.exp(x / temperature) for x in terms)) - float(q[k, 0, b])
        gaps.append(total / batch)
    return torch.tensor(gaps)


@pytest.mark.parametrize("importance_sampling", [True, False])
def test_cql_gap_is_the_temperature_logsumexp_minus_the_data_q(importance_sampling):
    """End to end from fixed proposals: the critics' values through cql_gap, against explicit loops over
    critics, states and actions; T = 0.5 so the temperature is checked too."""
    agent = cql_agent(num_sampled_actions=2, cql_temperature=0.5, importance_sampling=importance_sampling)
    states, data_actions = torch.randn(5, 2), torch.rand(5, 2) * 2 - 1
    torch.manual_seed(4)
    proposals, log_density = agent.proposals_with_uniform(torch.rand(4, 5, 2) * 2 - 1, torch.randn(4, 5))
    with torch.no_grad():
        q = agent.critic_values(states, data_actions, proposals)
        gap = agent.cql_gap(q, log_density)
    torch.testing.assert_close(gap, gap_by_loops(q, log_density, 0.5, importance_sampling))
    # The uniform actions' importance weight: Q - log(0.5^2) = Q + 2 log 2.
    if importance_sampling:
        assert torch.allclose(log_density[:2], torch.tensor(-2 * math.log(2)))


def test_q_loss_is_td_error_plus_cql_alpha_times_the_gap_summed_over_both_critics():
    agent = cql_agent(cql_alpha=5.0)
    q, target = torch.randn(2, 7, 4), torch.randn(4)
    gap = agent.cql_gap(q, torch.randn(6, 4))
    torch.testing.assert_close(agent.conservative_loss(gap), 5.0 * (gap[0] + gap[1]))
    td = sum((q[k, 0] - target).square().mean() for k in range(2))
    torch.testing.assert_close(ensemble_mse(q[:, 0], target), td)


def test_update_combines_the_losses_of_one_shared_batch_as_documented():
    """Replays one update's random draws by hand (same seed, same order) and recomputes every logged loss."""
    terminals = np.zeros(64)
    terminals[[15, 31, 63]] = 1
    buffer = concentrated_buffer(64, obs_dim=2, act_dim=2, terminals=terminals)
    for backup_entropy in (False, True):
        agent = cql_agent(bc_warmup_steps=0, batch_size=16, num_sampled_actions=3, backup_entropy=backup_entropy)
        replay = copy.deepcopy(agent)
        torch.manual_seed(5)
        metrics = agent.update(buffer, step_index=1)

        torch.manual_seed(5)
        rows = buffer.sample_td_indices(16)
        s, a, s2 = buffer.observations[rows], buffer.actions[rows], buffer.next_observations[rows]
        actions, log_pi, next_actions, next_log_pi, policy_proposals, policy_log_pi = replay.sample_policy(s, s2)
        alpha_loss = -(replay.log_alpha * (log_pi + replay.target_entropy)).mean()
        # The authors step alpha first and use the new value: Adam's first step moves log alpha by lr = 1e-4
        # against the sign of its gradient -(log pi + target entropy).
        grad = -(log_pi.detach() + replay.target_entropy).mean()
        alpha = torch.exp(replay.log_alpha.detach() - 1e-4 * grad / (grad.abs() + 1e-8))
        proposals, log_density = replay.proposals_with_uniform(policy_proposals, policy_log_pi)
        with torch.no_grad():
            q = replay.critic_values(s, a, proposals)
            next_v = torch.minimum(member_q(replay.critic_target, s2, next_actions, 0),
                                   member_q(replay.critic_target, s2, next_actions, 1))
            if backup_entropy:
                next_v = next_v - alpha * next_log_pi
            y = buffer.rewards[rows] + 0.9 * (1 - buffer.terminals[rows]) * next_v
            td = sum((q[k, 0] - y).square().mean() for k in range(2))
            gap = gap_by_loops(q, log_density, 1.0, True)
            min_q = torch.minimum(member_q(replay.critic, s, actions, 0), member_q(replay.critic, s, actions, 1))
        torch.testing.assert_close(metrics["alpha_loss"], alpha_loss.detach())
        torch.testing.assert_close(metrics["alpha"], alpha.detach())
        torch.testing.assert_close(metrics["td_loss"], td)
        torch.testing.assert_close(metrics["cql_gap"], gap.mean())
        torch.testing.assert_close(metrics["q_loss"], td + 5.0 * gap.sum())
        torch.testing.assert_close(metrics["policy_loss"], (alpha * log_pi - min_q).mean().detach())


# ---- what the regulariser does -----------------------------------------------------------------------------


def q_drop_away_from_data(cql_alpha: float) -> float:
    """Train on 1-D actions near DATA_ACTION; return the mean over states of Q(s, data action) minus the mean
    Q at actions far from the data (-0.9, -0.5, 0.0)."""
    buffer = concentrated_buffer(1000)
    torch.manual_seed(0)
    agent = CQL(1, 1, CQLSettings(cql_alpha=cql_alpha, hidden=64, batch_size=32, bc_warmup_steps=25), 0.9)
    for step in range(1, 151):
        agent.update(buffer, step)
    states = torch.linspace(-1, 1, 21).unsqueeze(1)
    with torch.no_grad():
        def q_at(action: float) -> torch.Tensor:
            return agent.critic(states, torch.full_like(states, action)).mean()
        far = torch.stack([q_at(a) for a in (-0.9, -0.5, 0.0)]).mean()
        return float(q_at(DATA_ACTION) - far)


def test_cql_pushes_q_down_away_from_the_data_relative_to_plain_td():
    """Both agents fit Q at the data's actions (about 0.75, the reward there); CQL's regulariser lowers Q
    where the data has no actions, plain TD (cql_alpha = 0) extrapolates about flat. Measured over seeds
    0-2: a drop of 2.7 to 3.5 with CQL, 0.05 to 0.15 without."""
    conservative, plain = q_drop_away_from_data(5.0), q_drop_away_from_data(0.0)
    assert conservative > 1.5 and conservative - plain > 1.5


def test_lagrange_multiplier_rises_while_the_gap_exceeds_the_threshold_and_falls_below_it():
    buffer = concentrated_buffer(256)

    def alpha_primes(threshold: float) -> list[float]:
        torch.manual_seed(0)
        agent = CQL(1, 1, CQLSettings(cql_alpha=1.0, lagrange_threshold=threshold, hidden=32, batch_size=32), 0.9)
        return [float(agent.update(buffer, step)["alpha_prime"]) for step in range(1, 6)]

    # At the start the gap is about log(3n) = 3.4 plus the importance weights: above 0.5, far below 1000.
    rising, falling = alpha_primes(0.5), alpha_primes(1000.0)
    assert rising[0] == falling[0] == 1.0  # alpha' = exp(0) the first step
    assert all(later > earlier for earlier, later in zip(rising, rising[1:]))
    assert all(later < earlier for earlier, later in zip(falling, falling[1:]))


def test_lagrange_losses_hold_the_other_side_fixed():
    agent = cql_agent(cql_alpha=2.0, lagrange_threshold=3.0)
    with torch.no_grad():
        agent.log_alpha_prime.fill_(math.log(1.5))
    gap = torch.tensor([4.0, 2.0], requires_grad=True)
    conservative = agent.conservative_loss(gap)
    torch.testing.assert_close(conservative, torch.tensor(1.5 * ((8 - 3) + (4 - 3))))
    conservative.backward()
    assert agent.log_alpha_prime.grad is None  # the critics' loss does not train alpha'
    multiplier_loss = agent.alpha_prime_loss(gap)
    torch.testing.assert_close(multiplier_loss, torch.tensor(-1.5 * ((8 - 3) + (4 - 3)) / 2))
    gap.grad = None
    multiplier_loss.backward()
    assert gap.grad is None and agent.log_alpha_prime.grad < 0  # gap above tau on average: alpha' grows


# ---- settings -----------------------------------------------------------------------------------------------


def test_defaults_are_the_authors_mujoco_command_and_raw_states():
    config = parse_config(["--agent", "cql", "--env_name", "hopper-medium-v2"])
    assert config.agent == CQLSettings()
    s = config.agent
    assert (s.cql_alpha, s.lagrange_threshold, s.policy_lr, s.critic_lr, s.bc_warmup_steps) == (
        5.0, -1.0, 1e-4, 3e-4, 40_000)
    assert s.importance_sampling and not s.backup_entropy and s.num_sampled_actions == 10
    assert config.run.normalise is False
    agent = CQL(11, 3, s, 0.99)
    assert not agent.lagrange and "alpha_prime_optimiser" not in agent.optimisers()
    assert len(agent.policy.net) == 7 and agent.target_entropy == -3.0  # three hidden layers


def test_lagrange_without_a_conservative_weight_is_refused():
    with pytest.raises(UserInputError, match="--cql_alpha"):
        parse_config(["--agent", "cql", "--lagrange_threshold", "5", "--cql_alpha", "0"])
