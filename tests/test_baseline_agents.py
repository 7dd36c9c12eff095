"""agents/mdn.py and agents/awac.py: their losses and actions by hand, what they learn on 1-D two-mode data,
and real train.py runs with each."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.awac import AWAC, AWACSettings
from agents.bc import BC, BCSettings
from agents.mdn import MDN, MDNSettings
from networks.policies import GaussianPolicy
from trainer.config import parse_config
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays
from utils.errors import UserInputError

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
GOOD, BAD = 0.8, -0.8  # the two action modes of the 1-D data
PROBE_STATES = torch.linspace(-1.5, 1.5, 11).unsqueeze(1)  # normalised states across the data's range


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_mode_buffer(size: int, good_share: float, good_reward: float, seed: int = 0,
                    terminals: np.ndarray | None = None) -> Buffer:
    """States uniform in [-1, 1]; action GOOD with probability good_share, else BAD (plus noise 0.05);
    reward good_reward for the GOOD mode, 0 for the BAD one; one-step episodes unless terminals say otherwise."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-1.0, 1.0, (size, 1))
    good = rng.random(size) < good_share
    actions = np.where(good, GOOD, BAD)[:, None] + 0.05 * rng.standard_normal((size, 1))
    dataset = transitions_from_arrays(
        "two-mode", states, actions.clip(-1, 1), np.where(good, good_reward, 0.0),
        np.ones(size) if terminals is None else terminals, eval_env_id="unused", source="test")
    return Buffer(dataset, CPU, normalise=True)


def trained(agent, buffer: Buffer, steps: int):
    for step in range(1, steps + 1):
        agent.update(buffer, step)
    return agent


# ---- MDN behaviour cloning -----------------------------------------------------------------------------


def test_mdn_acts_with_the_mean_of_the_component_with_the_largest_logit():
    torch.manual_seed(0)
    agent = MDN(obs_dim=3, act_dim=2, settings=MDNSettings(num_mixtures=4, mdn_hidden=32), discount=0.99)
    states = torch.randn(64, 3)
    mixture = agent.mdn(states)
    expected = torch.stack([mixture.means[i, int(np.argmax(mixture.logits[i].detach().numpy()))]
                            for i in range(len(states))])
    assert len(set(mixture.logits.argmax(-1).tolist())) > 1  # the states do not all pick one component
    torch.testing.assert_close(agent.act(states), expected.detach())

    # An output layer that makes component 2 the likeliest everywhere, with a known mean.
    last = agent.mdn.body[-1]
    means, log_stds, logits = torch.linspace(-0.6, 0.6, 8), torch.zeros(8), torch.tensor([0.0, 1.0, 3.0, 2.0])
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.cat([torch.atanh(means), log_stds, logits]))
    torch.testing.assert_close(agent.act(states), means.view(4, 2)[2].expand(64, 2))


def test_mdn_picks_the_most_frequent_mode_where_bc_averages():
    """70 % of the actions at +0.8, 30 % at -0.8: the MDN acts at +0.8; a Gaussian's mean sits near 0.32.
    Three components, one spare: with two, 3 seeds in 20 had one component still straddling both modes
    after 300 steps; with five, 1 in 20 had split the +0.8 mode over two components, each lighter than the
    -0.8 one at some states (the argmax then picks -0.8 there, as the method says it should)."""
    buffer = two_mode_buffer(2000, good_share=0.7, good_reward=0.0)
    torch.manual_seed(0)
    agent = trained(MDN(1, 1, MDNSettings(num_mixtures=3, mdn_hidden=64), 0.99), buffer, 300)
    actions = agent.act(PROBE_STATES)
    assert actions.sub(GOOD).abs().max() < 0.05
    average = buffer.actions.mean()
    assert abs(average - 0.32) < 0.05 and actions.sub(average).abs().min() > 0.4


# ---- AWAC ------------------------------------------------------------------------------------------------


def test_gaussian_policy_sample_is_mean_plus_std_noise_clipped_and_differentiable():
    torch.manual_seed(0)
    policy = GaussianPolicy(obs_dim=2, act_dim=3, hidden=(16,))
    states = torch.randn(5, 2)
    torch.manual_seed(1)
    samples = policy.sample(states)
    torch.manual_seed(1)
    mean, std = policy(states)
    torch.testing.assert_close(samples, (mean + std * torch.randn_like(mean)).clamp(-1, 1))
    samples.sum().backward()  # reparameterised: gradients reach the policy
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
    with torch.no_grad():
        policy.net[-1].bias[3:].fill_(3.0)  # log std above LOG_STD_MAX: wide samples must still be clipped
        assert policy.sample(states).abs().max() <= 1.0


def awac_with_distinct_target(discount: float = 0.9, **settings) -> AWAC:
    """An AWAC agent whose target critics differ from its critics (as they do after any update)."""
    torch.manual_seed(0)
    agent = AWAC(1, 1, AWACSettings(hidden=32, **settings), discount)
    with torch.no_grad():
        for parameter in agent.critic_target.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return agent


def test_awac_td_target_bootstraps_from_the_min_target_q_at_a_policy_action():
    terminals = np.zeros(40)
    terminals[[9, 19, 39]] = 1  # three episodes: the other rows bootstrap from the next state
    buffer = two_mode_buffer(40, good_share=0.5, good_reward=1.0, terminals=terminals)
    agent = awac_with_distinct_target(discount=0.9)
    rows = buffer.td_rows
    assert buffer.terminals[rows].sum() == 3 and len(rows) == 40

    torch.manual_seed(7)
    target = agent.td_target(buffer, rows)
    torch.manual_seed(7)
    next_states = buffer.next_observations[rows]
    with torch.no_grad():
        mean, std = agent.policy(next_states)
        next_actions = (mean + std * torch.randn_like(mean)).clamp(-1, 1)
        pairs = torch.cat([next_states, next_actions], dim=-1)
        q1, q2 = (agent.critic_target.q.member(pairs, k).squeeze(-1) for k in (0, 1))
        online = agent.critic.q.member(pairs, 0).squeeze(-1)
    expected = buffer.rewards[rows] + 0.9 * (1 - buffer.terminals[rows]) * torch.minimum(q1, q2)
    torch.testing.assert_close(target, expected)
    ends = buffer.terminals[rows] == 1
    torch.testing.assert_close(target[ends], buffer.rewards[rows][ends])  # no bootstrap past a terminal
    assert not torch.allclose(target, buffer.rewards[rows] + 0.9 * (1 - buffer.terminals[rows]) * online)

    # The critic loss: each critic's mean squared error to that target, summed over the two critics.
    torch.manual_seed(7)
    loss = agent.value_loss(buffer, rows)
    with torch.no_grad():
        pairs = torch.cat([buffer.observations[rows], buffer.actions[rows]], dim=-1)
        q = [agent.critic.q.member(pairs, k).squeeze(-1) for k in (0, 1)]
    torch.testing.assert_close(loss, sum((qk - expected).square().mean() for qk in q))


def test_awac_weight_is_exp_advantage_over_lambda_clipped_at_exp_adv_max():
    agent = AWAC(1, 1, AWACSettings(awac_lambda=0.5, exp_adv_max=100.0, hidden=8), 0.99)
    advantages = torch.tensor([-2.0, 0.0, 1.0, 2.3, 3.0, 10.0])
    expected = torch.tensor([math.exp(-4), 1.0, math.exp(2), math.exp(4.6), 100.0, 100.0])
    torch.testing.assert_close(agent.advantage_weight(advantages), expected)


def test_awac_advantage_is_min_q_at_the_action_minus_min_q_at_a_policy_sample():
    agent = awac_with_distinct_target()
    states, actions = torch.randn(16, 1), torch.rand(16, 1) * 2 - 1
    torch.manual_seed(3)
    advantage = agent.advantage(states, actions)
    torch.manual_seed(3)
    with torch.no_grad():
        policy_actions = agent.policy.sample(states)
        expected = (agent.critic(states, actions).min(0).values
                    - agent.critic(states, policy_actions).min(0).values)
    torch.testing.assert_close(advantage, expected)


def test_awac_has_corl_networks_and_one_batch_for_both_steps():
    """Three hidden layers for the policy and each critic; a Gaussian with an unsquashed mean and one
    state-independent log-std clamped to [-20, 2]; the critic and policy steps read the same rows."""
    agent = AWAC(4, 2, AWACSettings(hidden=16), 0.99)
    linear_policy = [m for m in agent.policy.net if isinstance(m, torch.nn.Linear)]
    assert len(linear_policy) == 4 and len(agent.critic.q.net) == 7  # 3 hidden + output; 3 x (layer, ReLU) + 1
    assert agent.policy.log_std.shape == (2,)
    with torch.no_grad():
        agent.policy.net[-1].bias.fill_(5.0)
        agent.policy.log_std.fill_(-30.0)
    mean, std = agent.policy(torch.randn(3, 4))
    assert mean.min() > 1.0 and torch.allclose(std, torch.full((2,), math.exp(-20.0)))  # no tanh; clamped
    assert agent.act(torch.randn(3, 4)).max() == 1.0  # acts with the mean clipped to the action range

    buffer = two_mode_buffer(256, good_share=0.5, good_reward=1.0)
    agent = AWAC(1, 1, AWACSettings(hidden=8, batch_size=16), 0.99)
    drawn = []
    original = buffer.sample_td_indices
    buffer.sample_td_indices = lambda size: drawn.append(original(size)) or drawn[-1]
    buffer.sample_indices = None  # the policy step must not draw a second batch
    agent.update(buffer, 1)
    assert len(drawn) == 1


def test_awac_moves_toward_the_rewarded_mode_where_bc_averages():
    """Half the actions at +0.8 (reward 1), half at -0.8 (reward 0), one-step episodes. BC's mean stays
    near 0; AWAC weights the +0.8 actions e^(1/lambda) = e times more, so its weighted-likelihood optimum is
    0.8 * tanh(1 / 2) = 0.37."""
    buffer = two_mode_buffer(2000, good_share=0.5, good_reward=1.0)
    torch.manual_seed(0)
    awac = trained(AWAC(1, 1, AWACSettings(hidden=64), 0.99), buffer, 400).act(PROBE_STATES).mean()
    torch.manual_seed(0)
    bc = trained(BC(1, 1, BCSettings(hidden=64), 0.99), buffer, 400).act(PROBE_STATES).mean()
    assert abs(bc) < 0.1
    assert abs(awac - GOOD * math.tanh(0.5)) < 0.1 and awac - bc > 0.25


# ---- flags and train.py --------------------------------------------------------------------------------


def test_flags_of_each_agent_parse_and_their_yaml_is_optional(tmp_path, monkeypatch):
    config = parse_config(["--agent", "mdn", "--num_mixtures", "8"])
    assert config.agent == MDNSettings(num_mixtures=8)
    config = parse_config(["--agent", "awac", "--awac_lambda", "0.5", "--batch_size", "64"])
    assert config.agent == AWACSettings(awac_lambda=0.5, batch_size=64)
    with pytest.raises(UserInputError, match="--gmm_steps"):  # LOM's flags are not AWAC's
        parse_config(["--agent", "awac", "--gmm_steps", "5"])

    import trainer.config

    monkeypatch.setattr(trainer.config, "CONFIG_DIR", tmp_path)  # no YAML at all
    assert parse_config(["--agent", "mdn"]).agent == MDNSettings()
    assert parse_config(["--agent", "awac", "--env_name", "hopper-medium-v2"]).agent == AWACSettings()


def test_help_for_awac_lists_its_flags():
    result = subprocess.run([sys.executable, "train.py", "--agent", "awac", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--awac_lambda" in result.stdout and "--exp_adv_max" in result.stdout
    assert "--num_mixtures" not in result.stdout


@pytest.mark.parametrize("agent_class, logged", [
    (MDN, {"policy_loss"}),
    (AWAC, {"value_loss", "policy_loss", "advantage", "weight", "weight_clipped"}),
])
def test_update_logs_the_agents_own_losses(agent_class, logged):
    """What progress.csv shows as train/* for the agent (the contract suite checks that they are finite)."""
    buffer = two_mode_buffer(256, good_share=0.5, good_reward=1.0)
    agent = agent_class(buffer.obs_dim, buffer.act_dim, agent_class.Settings(batch_size=32), discount=0.99)
    assert set(agent.update(buffer, 1)) == logged
