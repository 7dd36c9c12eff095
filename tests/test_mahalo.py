"""agents/mahalo.py: the two backups and the four losses against hand computations on a tiny batch, the NS
combination, the split gradients (Q sees a fixed reward, g a fixed Q), the two pretraining phases, and that
MAHALO reads neither D_a's rewards nor D_r's actions."""

import dataclasses

import pytest
import torch

from agents.mahalo import MAHALO, MAHALOSettings, reward_regression_loss
from datasources import load_dataset
from utils.buffer import Buffer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GAMMA = 0.9
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("toy-multimodal", toy_size=512, seed=0, scenario="rl_sample", remove_terminals=False)


@pytest.fixture(scope="module")
def buffer(dataset):
    return Buffer(dataset, CPU, normalise=True)


def tiny_mahalo(obs_dim: int, act_dim: int, seed: int = 0, **settings) -> MAHALO:
    torch.manual_seed(seed)
    defaults = {"hidden": 8, "batch_size": 8, "warmstart_steps": 3, "behaviour_steps": 3}
    return MAHALO(obs_dim, act_dim, MAHALOSettings(**{**defaults, **settings}), GAMMA)


def trained(buffer: Buffer, updates: int = 3, **settings) -> MAHALO:
    """A MAHALO agent after its whole pretraining and a few updates, seeded the same way every time."""
    agent = tiny_mahalo(buffer.obs_dim, buffer.act_dim, **settings)
    agent.start_pretraining(buffer)
    for _ in range(agent.pretrain_steps):
        agent.pretrain_step(buffer)
    agent.finish_pretraining(buffer)
    for step in range(1, updates + 1):
        agent.update(buffer, step)
    return agent


def assert_same_state(first: MAHALO, second: MAHALO) -> None:
    for (key, mine), (_, theirs) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), key


# Tiny batch for the loss-by-hand tests: K = 2 critics, B = 2 rows, gamma 0.9, r in [0, 1], V in [-10, 20].
Q_DATA = [[1.0, 2.0], [0.5, -1.0]]
Q_NEXT = [[3.0, 40.0], [-30.0, 4.0]]  # 40 and -30 reach past the V range: clamped
Q_TARGET = [10.0, 300.0]
REWARD_HAT = [2.0, -0.5]  # both outside [0, 1]: y_Q clips them, y_g does not
TERMINALS = [0.0, 1.0]


def hand_backup(reward: float, terminal: float, next_q: float) -> float:
    return reward + GAMMA * (1 - terminal) * min(max(next_q, -10.0), 20.0)


def hand_bellman(q: list, targets: list, residual_targets: list) -> float:
    """sum_k 0.5 mean_b (q_kb - y_b)^2 + 0.5 mean_b (q_kb - y_kb)^2 in plain Python."""
    total = 0.0
    for k in range(2):
        total += 0.5 * sum((q[k][b] - targets[b]) ** 2 for b in range(2)) / 2
        total += 0.5 * sum((q[k][b] - residual_targets[k][b]) ** 2 for b in range(2)) / 2
    return total


@pytest.fixture
def hand_agent():
    agent = tiny_mahalo(2, 2)
    agent.reward_range, agent.value_range = (0.0, 1.0), (-10.0, 20.0)
    return agent


def test_q_and_g_bellman_losses_by_hand(hand_agent):
    q_data, q_next = torch.tensor(Q_DATA), torch.tensor(Q_NEXT)
    tensors = torch.tensor(Q_TARGET), torch.tensor(REWARD_HAT), torch.tensor(TERMINALS)
    clipped = [min(max(r, 0.0), 1.0) for r in REWARD_HAT]
    q_bellman = hand_bellman(Q_DATA, [hand_backup(clipped[b], TERMINALS[b], Q_TARGET[b]) for b in range(2)],
                             [[hand_backup(clipped[b], TERMINALS[b], Q_NEXT[k][b]) for b in range(2)]
                              for k in range(2)])
    g_bellman = hand_bellman(Q_DATA, [hand_backup(REWARD_HAT[b], TERMINALS[b], Q_TARGET[b]) for b in range(2)],
                             [[hand_backup(REWARD_HAT[b], TERMINALS[b], Q_NEXT[k][b]) for b in range(2)]
                              for k in range(2)])
    assert hand_agent.q_bellman_loss(q_data, q_next, *tensors).item() == pytest.approx(q_bellman, rel=1e-6)
    assert hand_agent.g_bellman_loss(q_data, q_next, *tensors).item() == pytest.approx(g_bellman, rel=1e-6)
    # y_Q(Qbar) = [1 + 0.9 * 10, 0]: the reward clipped, the future clamped at V_max = 20 only where it bootstraps
    assert hand_agent.q_backup(tensors[1], tensors[2], tensors[0]).tolist() == pytest.approx([10.0, 0.0])
    assert hand_agent.g_backup(tensors[1], tensors[2], tensors[0]).tolist() == pytest.approx([11.0, -0.5])


def test_pessimism_and_reward_losses_by_hand(hand_agent, buffer):
    q_policy = [[1.5, 2.5], [0.0, 0.0]]
    expected = sum(sum(q_policy[k][b] - Q_DATA[k][b] for b in range(2)) / 2 for k in range(2))
    assert hand_agent.pessimism_loss(torch.tensor(Q_DATA), torch.tensor(q_policy)).item() == pytest.approx(expected)
    agent = tiny_mahalo(buffer.obs_dim, buffer.act_dim)
    reward_set, rows = buffer.reward_set, torch.tensor([0, 1, 2])
    predicted = [agent.reward_model(reward_set.observations[i:i + 1], reward_set.next_observations[i:i + 1],
                                    reward_set.terminals[i:i + 1]).item() for i in range(3)]
    expected = sum((p - r) ** 2 for p, r in zip(predicted, reward_set.rewards[:3].tolist())) / 3
    assert reward_regression_loss(agent.reward_model, reward_set, rows).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("beta", [10.0, 0.5])
def test_the_update_combines_the_losses_as_ns_pess_qbell_beta_plus_ns_gbell_r_rho(buffer, beta):
    agent = tiny_mahalo(buffer.obs_dim, buffer.act_dim, beta=beta, alpha_beta_ratio=1e5)
    agent.finish_pretraining(buffer)
    metrics = agent.update(buffer, 1)
    pess, q_bell, g_bell, r_loss = (metrics[key].item() for key in ("pessimism_loss", "q_bellman_loss",
                                                                    "g_bellman_loss", "reward_loss"))
    first = pess / beta + q_bell if beta > 1 else pess + beta * q_bell
    assert metrics["critic_reward_loss"].item() == pytest.approx(first + g_bell / 1e5 + r_loss, rel=1e-5)


def test_gradients_are_split_q_loss_reaches_no_g_and_g_loss_reaches_no_q(buffer):
    agent = tiny_mahalo(buffer.obs_dim, buffer.act_dim)
    agent.finish_pretraining(buffer)
    states, actions, next_states, terminals = agent.action_set_batch(buffer)
    next_actions, next_q_target = agent.next_step(next_states)
    policy_actions, _ = agent.policy.rsample(states)

    def losses():
        reward_hat = agent.reward_hypothesis(states, next_states, terminals)
        q = agent.critic_values(states, actions, next_states, next_actions, policy_actions.detach())
        arguments = (q[0], q[1], next_q_target, reward_hat, terminals)
        return agent.q_bellman_loss(*arguments), agent.g_bellman_loss(*arguments)

    def gradients(module):
        return [parameter.grad for parameter in module.parameters()]

    agent.zero_grad(set_to_none=True)
    losses()[0].backward()
    assert all(grad is None for grad in gradients(agent.reward_model))
    assert all(grad is not None and grad.abs().sum() > 0 for grad in gradients(agent.critic))
    agent.zero_grad(set_to_none=True)
    losses()[1].backward()
    assert all(grad is None for grad in gradients(agent.critic))
    assert all(grad is not None for grad in gradients(agent.reward_model))


def test_warm_start_trains_only_g_then_joint_pretraining_the_rest_then_fresh_main_phase(buffer):
    agent = tiny_mahalo(buffer.obs_dim, buffer.act_dim, warmstart_steps=3, behaviour_steps=2)
    assert agent.pretrain_steps == 5
    policy, critic, reward = (dict(module.state_dict()) for module in (agent.policy, agent.critic, agent.reward_model))
    policy, critic, reward = ({k: v.clone() for k, v in d.items()} for d in (policy, critic, reward))
    agent.start_pretraining(buffer)
    for _ in range(3):
        assert "warmstart_reward_loss" in agent.pretrain_step(buffer)
    assert all(torch.equal(v, agent.policy.state_dict()[k]) for k, v in policy.items())
    assert all(torch.equal(v, agent.critic.state_dict()[k]) for k, v in critic.items())
    assert any(not torch.equal(v, agent.reward_model.state_dict()[k]) for k, v in reward.items())
    for _ in range(2):
        metrics = agent.pretrain_step(buffer)
    assert {"cloning_loss", "bellman_loss", "reward_loss"} <= set(metrics)
    assert any(not torch.equal(v, agent.policy.state_dict()[k]) for k, v in policy.items())
    target = [parameter.clone() for parameter in agent.critic_target.parameters()]
    agent.finish_pretraining(buffer)
    assert all(torch.equal(a, b) for a, b in zip(target, agent.critic_target.parameters()))  # the pretraining's
    assert agent.log_alpha.item() == 0 and agent.pretrain_log_alpha.item() != 0  # a fresh alpha = 1
    assert not agent.critic_optimiser.state and not agent.policy_optimiser.state and not agent.pretraining_optimisers
    # one restart: an interrupted pretraining starts again at phase A
    agent.start_pretraining(buffer)
    assert "warmstart_reward_loss" in agent.pretrain_step(buffer)


def test_mahalo_never_reads_the_action_sets_rewards(dataset, buffer):
    scrambled = Buffer(dataset, CPU, normalise=True)
    scrambled.rewards = 7.0 * scrambled.rewards[torch.randperm(scrambled.size)] - 3.0
    assert not torch.equal(scrambled.rewards, buffer.rewards)
    assert_same_state(trained(buffer), trained(scrambled))


def test_mahalo_never_reads_the_reward_sets_actions(dataset, buffer):
    reward_set = dataset.reward_set
    without = dataclasses.replace(dataset, reward_set=dataclasses.replace(
        reward_set, actions=reward_set.actions[:, :0], next_actions=reward_set.next_actions[:, :0]))
    no_actions = Buffer(without, CPU, normalise=True)
    assert no_actions.reward_set.actions.shape == (reward_set.size, 0)
    assert_same_state(trained(buffer), trained(no_actions))
