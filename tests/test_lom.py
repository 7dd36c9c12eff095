"""agents/lom.py and agents/bc.py on tiny in-memory datasets: every loss reproduced by hand from its formula
(docs/algorithms/lom.md)."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import envs
from agents.bc import BC, BCSettings
from agents.lom import LOM, LOMSettings
from datagen import toy
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays

CPU = torch.device("cpu")
DISCOUNT = 0.99
OBS_DIM, ACT_DIM, M = 3, 2, 3

# Twelve rows: terminals at rows 2 and 7, a timeout at row 5 (no terminal), row 11 is the data's tail.
# Rows without a SARSA target: 5 (timeout) and 11 (end of data).
TERMINALS = np.zeros(12, np.float32)
TERMINALS[[2, 7]] = 1
TIMEOUTS = np.zeros(12, np.float32)
TIMEOUTS[5] = 1
ROWS_WITHOUT_TD_TARGET = {5, 11}


def small_dataset(seed: int = 0):
    rng = np.random.default_rng(seed)
    return transitions_from_arrays(
        "small", rng.normal(size=(12, OBS_DIM)), rng.uniform(-1, 1, size=(12, ACT_DIM)),
        rng.normal(size=12), TERMINALS, TIMEOUTS, eval_env_id=envs.TOY_ENV_ID, source="test")


def small_settings(**overrides) -> LOMSettings:
    # The hand computations below read Q_phi through the one-hot form's inputs; test_lom_reference.py
    # checks both forms against a plain implementation.
    values = dict(hyper_q="onehot", num_mixtures=M, K=2, hidden=8, mdn_hidden=8, gmm_steps=0, value_batch_size=8,
                  hyper_batch_size=8, policy_batch_size=8, gmm_batch_size=8)
    return LOMSettings(**{**values, **overrides})


def make_agent(dataset=None, **overrides):
    dataset = dataset if dataset is not None else small_dataset()
    buffer = Buffer(dataset, CPU, normalise=True)
    torch.manual_seed(0)
    agent = LOM(buffer.obs_dim, buffer.act_dim, small_settings(**overrides), discount=DISCOUNT)
    agent.finish_pretraining(buffer)
    return agent, buffer


def spread_hyper_q(agent: LOM, seed: int = 3) -> None:
    """Redraw the hyper Q's weights from N(0, 1) so that different states prefer different components."""
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for parameter in agent.hyper_q.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))


class FixedScores(nn.Module):
    """Stands in for the hyper Q: returns the same (B, M) table whatever the states."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.table


# ---- buffer sampling ---------------------------------------------------------------------------------


def test_sample_td_indices_skips_rows_without_a_td_target_and_reaches_all_others():
    buffer = Buffer(small_dataset(), CPU, normalise=True)
    torch.manual_seed(0)
    drawn = set(buffer.sample_td_indices(4000).tolist())
    assert drawn == set(range(12)) - ROWS_WITHOUT_TD_TARGET


def test_sample_indices_covers_every_row():
    buffer = Buffer(small_dataset(), CPU, normalise=True)
    torch.manual_seed(0)
    rows = buffer.sample_indices(4000)
    assert rows.shape == (4000,) and rows.dtype == torch.int64
    assert set(rows.tolist()) == set(range(12))


def test_buffer_normalises_states_with_dataset_statistics():
    dataset = small_dataset()
    buffer = Buffer(dataset, CPU, normalise=True)
    mean, std = dataset.observations.mean(0), dataset.observations.std(0) + 1e-3
    np.testing.assert_allclose(buffer.observations.numpy(), (dataset.observations - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buffer.next_observations.numpy(), (dataset.next_observations - mean) / std,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(buffer.actions.numpy(), dataset.actions)


# ---- pretraining result ------------------------------------------------------------------------------


def test_finish_pretraining_tabulates_mdn_components_at_every_state_and_freezes_it():
    agent, buffer = make_agent()
    assert agent.component_means.shape == agent.component_stds.shape == (12, M, ACT_DIM)
    with torch.no_grad():
        mixture = agent.behaviour_mdn(buffer.observations)
    assert torch.equal(agent.component_means, mixture.means)
    assert torch.equal(agent.component_stds, mixture.stds)
    assert not any(p.requires_grad for p in agent.behaviour_mdn.parameters())


def test_pretrain_step_returns_the_mdn_nll_of_its_batch():
    dataset = small_dataset()
    buffer = Buffer(dataset, CPU, normalise=True)
    torch.manual_seed(0)
    agent = LOM(OBS_DIM, ACT_DIM, small_settings(), discount=DISCOUNT)
    agent.start_pretraining(buffer)
    torch.manual_seed(5)
    rows = buffer.sample_among(agent.mdn_rows, agent.settings.gmm_batch_size)
    with torch.no_grad():
        expected = agent.behaviour_mdn.nll(buffer.observations[rows], buffer.actions[rows])
    torch.manual_seed(5)
    metrics = agent.pretrain_step(buffer)
    assert metrics["mdn_nll"].item() == pytest.approx(expected.item(), abs=1e-6)


# ---- mode selection and advantage weights ------------------------------------------------------------


def test_select_mode_is_the_row_argmax_with_first_index_on_ties():
    agent, buffer = make_agent()
    table = torch.tensor([[0.1, 0.7, 0.3],
                          [2.0, -1.0, 1.0],
                          [0.0, 0.0, -1.0],   # tie between 0 and 1 -> 0
                          [-3.0, 4.0, 4.0],   # tie between 1 and 2 -> 1
                          [5.0, 5.0, 5.0]])   # three-way tie -> 0
    agent.hyper_q = FixedScores(table)
    assert agent.select_mode(buffer.observations[:5]).tolist() == [1, 0, 0, 1, 0]


def test_mode_min_weight_leaves_out_components_without_data_but_never_the_most_likely():
    agent, buffer = make_agent(mode_min_weight=0.1)
    agent.hyper_q = FixedScores(torch.tensor([[0.1, 0.7, 0.3],
                                              [0.1, 0.7, 0.3],
                                              [0.1, 0.7, 0.3],
                                              [0.1, 0.7, 0.3]]))
    weights = torch.tensor([[0.50, 0.05, 0.45],    # the best-valued component has 5 % weight: out
                            [0.50, 0.10, 0.40],    # exactly at the threshold: in
                            [0.95, 0.02, 0.03],    # only the most likely one is left
                            [0.04, 0.04, 0.92]])   # ... whichever it is
    assert agent.select_mode(buffer.observations[:4], weights).tolist() == [2, 1, 0, 2]
    agent.settings.mode_min_weight = 0.0  # the paper's rule: every component competes
    assert agent.select_mode(buffer.observations[:4], weights).tolist() == [1, 1, 1, 1]


def test_mode_min_weight_reads_the_frozen_mdn_weights():
    agent, buffer = make_agent(mode_min_weight=0.3)
    mixture = agent.behaviour_mdn(buffer.observations)
    assert torch.allclose(agent.component_weights, mixture.logits.softmax(-1))
    spread_hyper_q(agent)
    states = buffer.observations
    assert torch.equal(agent.select_mode(states), agent.select_mode(states, agent.component_weights))


def test_select_mode_uses_the_real_hyper_q_argmax():
    agent, buffer = make_agent()
    spread_hyper_q(agent)
    states = buffer.observations
    with torch.no_grad():
        scores = torch.stack([agent.hyper_q.q(torch.cat([states, F.one_hot(torch.full((12,), u), M).float()], -1))
                              .squeeze(-1) for u in range(M)], dim=1)
    expected = [int(np.argmax(row)) for row in scores.numpy()]
    assert len(set(expected)) == M  # every component wins somewhere
    assert agent.select_mode(states).tolist() == expected


ADVANTAGES = [-1.0, 0.0, 0.5, 1.0, 1.2, 3.0]


def expected_weights(exponent_scale: float, clip: float) -> list[float]:
    return [min(math.exp(exponent_scale * a), clip) for a in ADVANTAGES]


def test_advantage_weight_mse_is_exp_beta_a_clipped_at_c():
    agent, _ = make_agent(beta=2.0, C=10.0)
    weights = agent.advantage_weight(torch.tensor(ADVANTAGES, dtype=torch.float64))
    # exp(2 * 1.2) = 11.02 and exp(6) exceed C = 10; the others do not.
    assert weights.tolist() == pytest.approx(expected_weights(2.0, 10.0), rel=1e-12)
    assert weights[4].item() == 10.0 and weights[5].item() == 10.0


def test_advantage_weight_nll_is_exp_a_over_beta_clipped_at_c():
    agent, _ = make_agent(beta=0.5, C=10.0, policy_loss="nll")
    weights = agent.advantage_weight(torch.tensor(ADVANTAGES, dtype=torch.float64))
    assert weights.tolist() == pytest.approx(expected_weights(1 / 0.5, 10.0), rel=1e-12)
    assert weights[5].item() == 10.0


# ---- value loss --------------------------------------------------------------------------------------


def test_value_loss_regresses_each_critic_on_r_plus_discounted_min_target():
    agent, buffer = make_agent(smooth_noise=0.0, K=2)
    last = agent.critic_target.q.net[-1]
    with torch.no_grad():  # Qtarget_0 == 5, Qtarget_1 == 3 everywhere: the min is 3
        last.weight.zero_()
        last.bias[0].fill_(5.0)
        last.bias[1].fill_(3.0)
    rows = torch.tensor([0, 1, 2, 3, 7, 8])  # rows 2 and 7 are terminal
    rewards = buffer.rewards[rows].tolist()
    terminal = [0, 0, 1, 0, 1, 0]
    targets = [r + DISCOUNT * (1 - d) * 3.0 for r, d in zip(rewards, terminal)]
    assert targets[2] == rewards[2] and targets[4] == rewards[4]  # no bootstrap after a terminal
    with torch.no_grad():
        q = agent.critic(buffer.observations[rows], buffer.actions[rows])  # (K, B)
    expected = sum(sum((q[k, b].item() - targets[b]) ** 2 for b in range(6)) / 6 for k in range(2))
    assert agent.value_loss(buffer, rows).item() == pytest.approx(expected, rel=1e-5)


def test_value_loss_bootstraps_from_the_next_state_and_next_action():
    """With no smoothing noise the target uses Qtarget(s', a') with the dataset's own next action a'."""
    agent, buffer = make_agent(smooth_noise=0.0, K=2)
    rows = torch.tensor([0, 3, 4, 6])  # no terminals: all bootstrap
    with torch.no_grad():
        next_q = agent.critic_target(buffer.next_observations[rows], buffer.next_actions[rows]).min(dim=0).values
        target = buffer.rewards[rows] + DISCOUNT * next_q
        q = agent.critic(buffer.observations[rows], buffer.actions[rows])
    expected = ((q - target) ** 2).mean(dim=1).sum()
    assert agent.value_loss(buffer, rows).item() == pytest.approx(expected.item(), rel=1e-6)
    # Row 0's next action is row 1's action (same episode).
    assert torch.equal(buffer.next_actions[0], buffer.actions[1])


def test_value_loss_smoothing_noise_is_clipped_then_action_clipped_to_unit_box():
    agent, buffer = make_agent(smooth_noise=0.2, noise_clip=0.1, K=1)
    rows = torch.tensor([0, 1, 3, 4])
    torch.manual_seed(11)
    loss = agent.value_loss(buffer, rows)
    torch.manual_seed(11)
    noise = (0.2 * torch.randn(4, ACT_DIM)).clamp(-0.1, 0.1)
    with torch.no_grad():
        next_actions = (buffer.next_actions[rows] + noise).clamp(-1, 1)
        next_q = agent.critic_target(buffer.next_observations[rows], next_actions)[0]
        target = buffer.rewards[rows] + DISCOUNT * next_q
        expected = ((agent.critic(buffer.observations[rows], buffer.actions[rows])[0] - target) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# ---- hyper Q and policy losses -----------------------------------------------------------------------


def test_hyper_q_loss_regresses_every_component_on_q1_of_a_component_sample():
    agent, buffer = make_agent()
    rows = torch.tensor([0, 4, 9, 11])
    torch.manual_seed(21)
    loss = agent.hyper_q_loss(buffer, rows)
    torch.manual_seed(21)
    eps = torch.randn(4, M, ACT_DIM)
    states = buffer.observations[rows]
    total = 0.0
    with torch.no_grad():
        predictions = agent.hyper_q(states)
        for i, row in enumerate(rows.tolist()):
            for u in range(M):
                action = agent.component_means[row, u] + agent.component_stds[row, u] * eps[i, u]
                target = agent.critic(states[i:i + 1], action[None])[0, 0]
                total += (predictions[i, u] - target).item() ** 2
    assert loss.item() == pytest.approx(total / (4 * M), rel=1e-6)


@pytest.mark.parametrize("policy_loss, adv_baseline", [("mse", "policy"), ("mse", "mode_mean"), ("nll", "policy")])
def test_policy_loss_matches_hand_computation(policy_loss, adv_baseline):
    # A small C makes the clip matter for some rows; beta large enough that weights vary.
    agent, buffer = make_agent(ac_rand=0.0, beta=5.0, C=1.0, policy_loss=policy_loss, adv_baseline=adv_baseline)
    spread_hyper_q(agent)
    rows = torch.tensor([0, 1, 2, 5, 6, 8, 10, 11])
    torch.manual_seed(42)
    loss, metrics = agent.policy_loss(buffer, rows)

    torch.manual_seed(42)
    eps = torch.randn(len(rows), ACT_DIM)
    states = buffer.observations[rows]
    with torch.no_grad():
        if policy_loss == "mse":
            policy_actions = torch.tanh(agent.policy.net(states))
        else:
            policy_actions = torch.tanh(agent.policy.net(states)[:, :ACT_DIM])
        terms, advantages, weights, modes = [], [], [], []
        for i, row in enumerate(rows.tolist()):
            state = states[i:i + 1]
            scores = [agent.hyper_q.q(torch.cat([state[0], F.one_hot(torch.tensor(u), M).float()])).item()
                      for u in range(M)]
            u_star = max(range(M), key=lambda u: scores[u])
            modes.append(u_star)
            mean, std = agent.component_means[row, u_star], agent.component_stds[row, u_star]
            imitated = (mean + std * eps[i]).clamp(-1, 1)
            baseline = policy_actions[i] if adv_baseline == "policy" else mean
            q_imitated = agent.critic(state, imitated[None])[0, 0].item()
            q_baseline = agent.critic(state, baseline[None])[0, 0].item()
            advantage = q_imitated - q_baseline
            scale = 5.0 if policy_loss == "mse" else 1 / 5.0
            weight = min(math.exp(scale * advantage), 1.0)
            if policy_loss == "mse":
                term = weight * ((policy_actions[i] - imitated) ** 2).mean().item()
            else:
                mu, log_std = agent.policy.net(state)[0].split(ACT_DIM)
                log_prob = torch.distributions.Normal(torch.tanh(mu), log_std.clamp(-5, 2).exp()).log_prob(imitated)
                term = -weight * log_prob.sum().item()
            terms.append(term)
            advantages.append(advantage)
            weights.append(weight)
    assert len(set(modes)) > 1 and 0 < sum(w >= 1.0 for w in weights) < len(weights)  # the test is not vacuous
    assert loss.item() == pytest.approx(sum(terms) / len(terms), abs=1e-6)
    assert metrics["advantage"].item() == pytest.approx(np.mean(advantages), abs=1e-6)
    assert metrics["weight"].item() == pytest.approx(np.mean(weights), abs=1e-6)
    assert metrics["weight_clipped"].item() == pytest.approx(np.mean([w >= 1.0 for w in weights]))
    assert loss.requires_grad


def test_policy_loss_adds_ac_rand_noise_after_clipping():
    agent, buffer = make_agent(ac_rand=0.5, beta=1.0, C=100.0)
    rows = torch.tensor([1, 3])
    torch.manual_seed(8)
    loss, _ = agent.policy_loss(buffer, rows)
    torch.manual_seed(8)
    eps, extra = torch.randn(2, ACT_DIM), torch.randn(2, ACT_DIM)
    states = buffer.observations[rows]
    with torch.no_grad():
        chosen = agent.select_mode(states)
        mean = agent.component_means[rows, chosen]
        imitated = (mean + agent.component_stds[rows, chosen] * eps).clamp(-1, 1) + 0.5 * extra
        pi = agent.policy(states)
        weight = torch.exp(1.0 * (agent.critic.first(states, imitated) - agent.critic.first(states, pi))).clamp(max=100)
        expected = (weight * ((pi - imitated) ** 2).mean(-1)).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


# ---- one update step ---------------------------------------------------------------------------------


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(module: nn.Module, before: list[torch.Tensor]) -> bool:
    return any(not torch.equal(p, old) for p, old in zip(module.parameters(), before))


def test_update_trains_policy_critic_and_hyper_q_but_not_the_mdn():
    agent, buffer = make_agent()
    before = {name: snapshot(getattr(agent, name)) for name in ("policy", "critic", "hyper_q", "behaviour_mdn",
                                                                 "critic_target")}
    means_before = agent.component_means.clone()
    torch.manual_seed(0)
    metrics = agent.update(buffer, 1)
    assert changed(agent.policy, before["policy"])
    assert changed(agent.critic, before["critic"])
    assert changed(agent.hyper_q, before["hyper_q"])
    assert not changed(agent.behaviour_mdn, before["behaviour_mdn"])
    assert torch.equal(agent.component_means, means_before)
    assert not changed(agent.critic_target, before["critic_target"])  # step 1: 1 % 2 != 0
    assert set(metrics) == {"value_loss", "hyper_q_loss", "policy_loss", "advantage", "weight", "weight_clipped"}
    assert all(not v.requires_grad and v.dim() == 0 for v in metrics.values())


def test_critic_target_moves_by_polyak_only_on_steps_divisible_by_target_update_every():
    agent, buffer = make_agent(target_update_every=3, tau=0.25)
    torch.manual_seed(0)
    for step in (1, 2):
        target_before = snapshot(agent.critic_target)
        agent.update(buffer, step)
        assert not changed(agent.critic_target, target_before)
    target_before = snapshot(agent.critic_target)
    agent.update(buffer, 3)
    for new, old, online in zip(agent.critic_target.parameters(), target_before, agent.critic.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)


def test_lom_trains_on_the_toy_dataset_from_make_dataset():
    data = toy.make_dataset(32, seed=1)
    dataset = transitions_from_arrays("toy", **data, eval_env_id=envs.TOY_ENV_ID, source="test")
    agent, buffer = make_agent(dataset, num_mixtures=4)
    assert agent.component_means.shape == (32, 4, 2)
    torch.manual_seed(0)
    metrics = agent.update(buffer, 2)
    assert all(torch.isfinite(v) for v in metrics.values())
    actions = agent.act(buffer.observations)
    assert actions.shape == (32, 2) and actions.abs().max().item() <= 1.0


# ---- behaviour cloning -------------------------------------------------------------------------------


def test_bc_update_loss_is_minus_mean_log_prob_of_the_sampled_rows():
    buffer = Buffer(small_dataset(), CPU, normalise=True)
    torch.manual_seed(0)
    agent = BC(OBS_DIM, ACT_DIM, BCSettings(batch_size=6, hidden=8), discount=DISCOUNT)
    torch.manual_seed(9)
    rows = buffer.sample_indices(6)
    with torch.no_grad():
        mean, std = agent.policy(buffer.observations[rows])
        expected = -torch.distributions.Normal(mean, std).log_prob(buffer.actions[rows]).sum(-1).mean()
    before = snapshot(agent.policy)
    torch.manual_seed(9)
    metrics = agent.update(buffer, 1)
    assert metrics["policy_loss"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert changed(agent.policy, before)
    torch.testing.assert_close(agent.act(buffer.observations), agent.policy(buffer.observations)[0])
