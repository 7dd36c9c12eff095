"""agents/mahalo_baselines.py: which rows each baseline trains ATAC on and how they are labelled (checked
against the label models' own outputs and the data), and which scenarios each refuses."""

import pytest
import torch

from agents import AGENTS
from agents.atac import Transitions
from datasources import load_dataset
from datasources.scenarios import two_datasets
from utils.buffer import Buffer
from utils.errors import UserInputError
from utils.settings import RunSettings, check_scenario

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")
BOUND = 1 - 1e-6


def scenario_buffer(scenario: str) -> Buffer:
    """Toy data assembled as the scenario does it: D_a from one toy set, D_r from another (the "expert")."""
    action_set = load_dataset("toy-multimodal", toy_size=256, seed=0)
    expert = load_dataset("toy-multimodal", toy_size=256, seed=1)
    dataset = two_datasets("toy", {"medium": action_set}, expert, scenario, reward_set_ratio=0.05, seed=0,
                           remove_terminals=False)  # toy episodes are one terminal step
    return Buffer(dataset, CPU, normalise=True)


@pytest.fixture(scope="module")
def il_buffer():
    return scenario_buffer("il")


@pytest.fixture(scope="module")
def rl_buffer():
    """rl_expert: true rewards in D_r, so r_min and r_max come from the data."""
    return scenario_buffer("rl_expert")


def agent(name: str, buffer: Buffer, **settings):
    torch.manual_seed(0)
    fields = {"hidden": 8, "batch_size": 8, **settings}
    return AGENTS[name](buffer.obs_dim, buffer.act_dim, AGENTS[name].Settings(**fields), 0.99)


def inputs(rows: Transitions) -> tuple[torch.Tensor, ...]:
    return rows.observations, rows.next_observations, rows.terminals


def test_rp_labels_the_action_set_with_the_clipped_reward_model(rl_buffer):
    rp = agent("rp", rl_buffer)
    r_min, r_max = rl_buffer.reward_range
    last = rp.reward_model.net[-1]
    with torch.no_grad():  # outputs spread over 3x the reward range around its middle: some clipped each side
        last.bias.zero_()
        raw = rp.reward_model(*inputs(Transitions.of(rl_buffer)))
        scale = 3 * (r_max - r_min) / (raw.max() - raw.min())
        last.weight.mul_(scale)
        last.bias.fill_((r_min + r_max) / 2 - scale * raw.mean())
    rows = rp.training_rows(rl_buffer)
    assert len(rows) == len(rl_buffer.td_rows)
    torch.testing.assert_close(rows.observations, rl_buffer.observations[rl_buffer.td_rows])
    torch.testing.assert_close(rows.actions, rl_buffer.actions[rl_buffer.td_rows])
    with torch.no_grad():
        raw = rp.reward_model(*inputs(rows))
    torch.testing.assert_close(rows.rewards, raw.clamp(r_min, r_max))
    assert (raw < r_min).any() and (raw > r_max).any() and ((raw > r_min) & (raw < r_max)).any()


def test_ap_labels_the_reward_set_with_the_clipped_inverse_dynamics(il_buffer):
    ap = agent("ap", il_buffer)
    with torch.no_grad():
        ap.inverse_dynamics.net[-1].bias[0] = 100.0  # tanh saturates at 1: clipped to 1 - 1e-6
    rows = ap.training_rows(il_buffer)
    reward_set = il_buffer.reward_set
    assert len(rows) == len(reward_set.td_rows)
    torch.testing.assert_close(rows.rewards, reward_set.rewards[reward_set.td_rows])  # all 1 in il
    with torch.no_grad():
        raw = ap.inverse_dynamics(*inputs(rows))
    torch.testing.assert_close(rows.actions, raw.clamp(-BOUND, BOUND))
    assert rows.actions[:, 0].max() < 1 and not torch.equal(rows.actions, reward_set.actions[reward_set.td_rows])


def test_arp_trains_on_both_labelled_sets(il_buffer):
    arp = agent("arp", il_buffer)
    rows = arp.training_rows(il_buffer)
    assert len(rows) == len(il_buffer.td_rows) + len(il_buffer.reward_set.td_rows)
    assert set(arp.label_models()) == {"reward_model", "inverse_dynamics"}


def test_the_buffer_knows_the_expert_copy_it_appends(il_buffer):
    assert il_buffer.expert_copy_size == il_buffer.reward_set.size > 0
    assert scenario_buffer("rlfo").expert_copy_size == 0


def test_uds_gives_the_action_set_r_min_without_the_expert_copy_and_uds_a_with_it(il_buffer):
    reward_set, copy = il_buffer.reward_set, il_buffer.reward_set.size
    own_rows = il_buffer.td_rows[il_buffer.td_rows < il_buffer.size - copy]
    uds = agent("uds", il_buffer).training_rows(il_buffer)
    uds_a = agent("uds_a", il_buffer).training_rows(il_buffer)
    labelled = len(reward_set.td_rows)
    assert len(uds) == len(own_rows) + labelled and len(uds_a) == len(il_buffer.td_rows) + labelled
    for rows, action_rows in ((uds, own_rows), (uds_a, il_buffer.td_rows)):
        unlabelled = len(action_rows)
        assert torch.equal(rows.rewards[:unlabelled], torch.zeros(unlabelled))  # r_min = 0 in il
        assert torch.equal(rows.observations[:unlabelled], il_buffer.observations[action_rows])
        assert torch.equal(rows.rewards[unlabelled:], reward_set.rewards[reward_set.td_rows])  # all 1
        assert torch.equal(rows.actions[unlabelled:], reward_set.actions[reward_set.td_rows])


def test_uds_r_min_is_the_lowest_reward_set_label_outside_imitation(rl_buffer):
    rows = agent("uds", rl_buffer).training_rows(rl_buffer)
    unlabelled = len(rows) - len(rl_buffer.reward_set.td_rows)
    assert torch.all(rows.rewards[:unlabelled] == rl_buffer.reward_set.rewards.min())


def test_oracle_trains_on_the_action_set_with_its_true_rewards(rl_buffer):
    oracle = agent("oracle", rl_buffer)
    rows = oracle.training_rows(rl_buffer)
    assert torch.equal(rows.rewards, rl_buffer.rewards[rl_buffer.td_rows])
    oracle.finish_pretraining(rl_buffer)
    assert oracle.value_range == pytest.approx((min(-1, 2 * rl_buffer.reward_range[0]) / 0.01,
                                                max(1, 2 * rl_buffer.reward_range[1]) / 0.01))


def test_common_atac_trains_on_the_reward_set_with_its_actions(il_buffer):
    rows = agent("atac", il_buffer).training_rows(il_buffer)
    reward_set = il_buffer.reward_set
    assert torch.equal(rows.actions, reward_set.actions[reward_set.td_rows])
    assert torch.equal(rows.rewards, reward_set.rewards[reward_set.td_rows])


def test_bco_clones_inverse_dynamics_labels_or_the_reward_sets_own_actions(il_buffer):
    reward_set = il_buffer.reward_set
    bco = agent("bco", il_buffer, label_steps=2)
    assert bco.pretrain_steps == 2
    bco.start_pretraining(il_buffer)
    bco.pretrain_step(il_buffer)
    bco.finish_pretraining(il_buffer)
    with torch.no_grad():
        expected = bco.inverse_dynamics(*inputs(Transitions.of(reward_set))).clamp(-BOUND, BOUND)
    torch.testing.assert_close(bco.training_set.actions, expected)
    plain = agent("bc_reward_set", il_buffer)
    assert plain.pretrain_steps == 0 and not plain.pretrained_modules()
    plain.finish_pretraining(il_buffer)
    assert torch.equal(plain.training_set.actions, reward_set.actions[reward_set.td_rows])
    before = [parameter.clone() for parameter in plain.policy.parameters()]
    metrics = plain.update(il_buffer, 1)
    assert set(metrics) == {"cloning_loss", "alpha_loss", "alpha", "log_pi"}
    assert any(not torch.equal(a, b) for a, b in zip(before, plain.policy.parameters()))


def test_label_pretraining_runs_before_the_behaviour_pretraining(il_buffer):
    arp = agent("arp", il_buffer, label_steps=2, behaviour_steps=2)
    policy = [parameter.clone() for parameter in arp.policy.parameters()]
    arp.start_pretraining(il_buffer)
    assert set(arp.pretrain_step(il_buffer)) == {"reward_label_loss", "action_label_loss"}
    arp.pretrain_step(il_buffer)
    assert all(torch.equal(a, b) for a, b in zip(policy, arp.policy.parameters()))
    assert "cloning_loss" in arp.pretrain_step(il_buffer)
    assert len(arp.training_set) == len(il_buffer.td_rows) + len(il_buffer.reward_set.td_rows)


@pytest.mark.parametrize("scenario", ["ilfo", "rlfo"])
def test_refusals_without_the_reward_sets_actions(scenario):
    for name, why in [("atac", "trains on them"), ("uds", "trains on them"), ("uds_a", "trains on them"),
                      ("bc_reward_set", "clones them")]:
        with pytest.raises(UserInputError, match=f"^--scenario {scenario} removes the reward set's actions, and "
                                                 f"--agent {name} {why}; use il, rl_expert or rl_sample$"):
            check_scenario(RunSettings(agent=name, scenario=scenario), AGENTS[name].Settings())
        check_scenario(RunSettings(agent=name, scenario="il"), AGENTS[name].Settings())
    for name in ("mahalo", "rp", "ap", "arp", "oracle", "bco"):
        check_scenario(RunSettings(agent=name, scenario=scenario), AGENTS[name].Settings())
