"""agents/lapo.py and networks/cvae.py: each loss against a hand computation, the action and reward preprocessing,
and what LAPO learns on 1-D two-mode data (actions on one mode, not between the modes)."""

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from agents.lapo import LAPO, LAPOSettings
from networks.cvae import ConditionalVAE, kl_to_standard_normal
from trainer.config import parse_config
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays
from utils.errors import UserInputError

CPU = torch.device("cpu")
GOOD, BAD = 0.8, -0.8  # the two action modes of the 1-D data
PROBE_STATES = torch.linspace(-1.5, 1.5, 11).unsqueeze(1)  # normalised states across the data's range

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_mode_buffer(size: int, good_share: float, good_reward: float = 1.0, bad_reward: float = 0.0,
                    seed: int = 0, terminals: np.ndarray | None = None) -> Buffer:
    """States uniform in [-1, 1]; action GOOD with probability good_share, else BAD (plus noise 0.05);
    reward good_reward for the GOOD mode, bad_reward for the BAD one; one-step episodes unless `terminals`."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-1.0, 1.0, (size, 1))
    good = rng.random(size) < good_share
    actions = np.where(good, GOOD, BAD)[:, None] + 0.05 * rng.standard_normal((size, 1))
    dataset = transitions_from_arrays(
        "two-mode", states, actions.clip(-1, 1), np.where(good, good_reward, bad_reward),
        np.ones(size) if terminals is None else terminals, eval_env_id="unused", source="test")
    return Buffer(dataset, CPU, normalise=True)


def chained_buffer(size: int = 40) -> Buffer:
    """Four 10-step episodes ending in terminals, so most rows bootstrap from their next state."""
    terminals = np.zeros(size)
    terminals[9::10] = 1
    return two_mode_buffer(size, good_share=0.5, good_reward=2.0, bad_reward=-1.0, terminals=terminals)


def agent_with_distinct_targets(buffer: Buffer, discount: float = 0.9, **settings) -> LAPO:
    """A LAPO agent on `buffer`'s data whose target networks differ from the online ones (as after any update)."""
    torch.manual_seed(0)
    agent = LAPO(buffer.obs_dim, buffer.act_dim, LAPOSettings(hidden=16, **settings), discount)
    agent.finish_pretraining(buffer)
    with torch.no_grad():
        for target in (agent.critic_target, agent.latent_policy_target, agent.decoder_target):
            for parameter in target.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
    return agent


def latent_by_hand(policy, states: torch.Tensor, max_latent_action: float = 2.0) -> torch.Tensor:
    return max_latent_action * torch.tanh(policy.net(states))


def decode_by_hand(decoder, states: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    return decoder.net(torch.cat([states, latents], dim=-1))


# ---- the conditional VAE ---------------------------------------------------------------------------------


def test_cvae_reconstructs_through_a_reparameterised_latent_and_its_kl_is_the_closed_form():
    torch.manual_seed(0)
    cvae = ConditionalVAE(obs_dim=3, act_dim=2, latent_dim=4, hidden=(16, 16))
    states, actions = torch.randn(8, 3), torch.rand(8, 2) * 2 - 1
    torch.manual_seed(1)
    reconstruction, mean, log_var = cvae(states, actions)

    encoded = cvae.encoder.net(torch.cat([states, actions], dim=-1))
    torch.testing.assert_close(mean, encoded[:, :4])
    torch.testing.assert_close(log_var, encoded[:, 4:])
    torch.manual_seed(1)
    latents = mean + torch.exp(log_var / 2) * torch.randn(8, 4)
    torch.testing.assert_close(reconstruction, decode_by_hand(cvae.decoder, states, latents))
    reconstruction.sum().backward()  # reparameterised: both networks get gradients
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cvae.parameters())

    expected_kl = kl_divergence(Normal(mean, torch.exp(log_var / 2)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(mean, log_var), expected_kl)
    assert kl_to_standard_normal(torch.zeros(5, 4), torch.zeros(5, 4)).abs().max() == 0  # q = prior


def test_cvae_decoder_output_is_linear_or_tanh_squashed():
    torch.manual_seed(0)
    linear = ConditionalVAE(obs_dim=2, act_dim=3, latent_dim=2, hidden=(8,), tanh_output=False)
    squashed = ConditionalVAE(obs_dim=2, act_dim=3, latent_dim=2, hidden=(8,), tanh_output=True)
    squashed.load_state_dict(linear.state_dict())
    with torch.no_grad():
        linear.decoder.net[-1].bias.fill_(5.0)
        squashed.decoder.net[-1].bias.fill_(5.0)
    states, latents = torch.randn(6, 2), torch.randn(6, 2)
    assert linear.decoder(states, latents).min() > 1.0  # no squashing: LAPO decodes normalised actions
    torch.testing.assert_close(squashed.decoder(states, latents), torch.tanh(linear.decoder(states, latents)))


# ---- preprocessing -----------------------------------------------------------------------------------------


def test_actions_are_z_scored_inside_the_agent_and_act_undoes_it_then_clips():
    buffer = two_mode_buffer(500, good_share=0.3)
    agent = LAPO(1, 1, LAPOSettings(hidden=16), 0.99)
    agent.finish_pretraining(buffer)
    raw = buffer.actions.numpy()
    torch.testing.assert_close(agent.action_mean, torch.tensor(raw.mean(0)))
    torch.testing.assert_close(agent.action_std, torch.tensor(raw.std(0) + 1e-6))  # population std, + 1e-6
    normalised = agent.normalise_actions(buffer.actions)
    assert normalised.mean().abs() < 1e-5 and (normalised.std(correction=0) - 1).abs() < 1e-4
    torch.testing.assert_close(agent.unnormalise_actions(normalised), buffer.actions)

    statistics = (agent.action_mean.clone(), agent.action_std.clone())
    agent.finish_pretraining(buffer)  # again, as after a checkpoint restore: the same statistics
    assert torch.equal(agent.action_mean, statistics[0]) and torch.equal(agent.action_std, statistics[1])

    # act: D'(s, pi(s)) (online latent policy, target decoder) back in action units, then clipped to [-1, 1].
    with torch.no_grad():
        decoded = decode_by_hand(agent.decoder_target, PROBE_STATES, latent_by_hand(agent.latent_policy, PROBE_STATES))
        expected = (decoded * statistics[1] + statistics[0]).clamp(-1, 1)
        torch.testing.assert_close(agent.act(PROBE_STATES), expected)
        agent.decoder_target.net[-1].bias.fill_(10.0)
        assert torch.equal(agent.act(PROBE_STATES), torch.ones(11, 1))

    raw_agent = LAPO(1, 1, LAPOSettings(hidden=16, normalise_actions=False), 0.99)
    raw_agent.finish_pretraining(buffer)
    assert torch.equal(raw_agent.normalise_actions(buffer.actions), buffer.actions)


def test_rewards_are_divided_by_their_maximum_and_bound_the_value_range():
    buffer = two_mode_buffer(200, good_share=0.5, good_reward=4.0, bad_reward=-2.0)
    agent = LAPO(1, 1, LAPOSettings(hidden=16), discount=0.9)
    agent.finish_pretraining(buffer)
    assert agent.reward_scale == pytest.approx(0.25)
    assert agent.v_min == pytest.approx(-0.5 / 0.1) and agent.v_max == pytest.approx(1.0 / 0.1)

    unscaled = LAPO(1, 1, LAPOSettings(hidden=16, reward_scale="none"), discount=0.9)
    unscaled.finish_pretraining(buffer)
    assert unscaled.reward_scale == 1.0
    assert unscaled.v_min == pytest.approx(-2.0 / 0.1) and unscaled.v_max == pytest.approx(4.0 / 0.1)

    negative = two_mode_buffer(200, good_share=0.5, good_reward=0.0, bad_reward=-1.0)
    with pytest.raises(UserInputError, match="--reward_scale none"):
        LAPO(1, 1, LAPOSettings(hidden=16), 0.9).check_data(negative)
    LAPO(1, 1, LAPOSettings(hidden=16, reward_scale="none"), 0.9).check_data(negative)  # fine unscaled

    with pytest.raises(UserInputError, match="--discount below 1"):
        parse_config(["--agent", "lapo", "--discount", "1"])
    assert parse_config(["--agent", "lapo", "--reward_scale", "NONE"]).agent.reward_scale == "none"


# ---- the losses by hand ----------------------------------------------------------------------------------


def test_target_values_mix_the_twin_target_critics_at_the_decoded_target_latent_action():
    """V's target: Qmix'(s, D'(s, pi'(s) + clip(0.1 N, -0.2, 0.2))); the advantage's bootstrap:
    Qmix'(s', D'(s', pi'(s'))) without noise; Qmix = w min + (1 - w) max."""
    buffer = chained_buffer()
    agent = agent_with_distinct_targets(buffer, doubleq_min=0.7, target_noise=0.3, target_noise_clip=0.4)
    states, next_states = buffer.observations[:20], buffer.next_observations[:20]
    torch.manual_seed(3)
    target_value, next_q = agent.target_policy_values(states, next_states)

    torch.manual_seed(3)
    with torch.no_grad():
        latents = latent_by_hand(agent.latent_policy_target, states)
        noise = (0.3 * torch.randn_like(latents)).clamp(-0.4, 0.4)
        assert (noise.abs() == 0.4).any()  # the clip is exercised
        q1, q2 = agent.critic_target(states, decode_by_hand(agent.decoder_target, states, latents + noise))
        n1, n2 = agent.critic_target(next_states, decode_by_hand(
            agent.decoder_target, next_states, latent_by_hand(agent.latent_policy_target, next_states)))
    torch.testing.assert_close(target_value, 0.7 * torch.minimum(q1, q2) + 0.3 * torch.maximum(q1, q2))
    torch.testing.assert_close(next_q, 0.7 * torch.minimum(n1, n2) + 0.3 * torch.maximum(n1, n2))


def test_critic_loss_is_twin_q_to_r_plus_gamma_v_next_plus_v_to_its_clipped_target():
    buffer = chained_buffer()
    agent = agent_with_distinct_targets(buffer, discount=0.9)
    agent.v_min, agent.v_max = -0.05, 0.05  # narrow, so that the clip acts on some targets
    rows = buffer.td_rows
    states, next_states = buffer.observations[rows], buffer.next_observations[rows]
    actions = agent.normalise_actions(buffer.actions[rows])
    rewards, terminals = agent.reward_scale * buffer.rewards[rows], buffer.terminals[rows]
    target_value = torch.linspace(-0.1, 0.1, len(rows))
    loss, metrics = agent.critic_loss(states, actions, rewards, terminals, next_states, target_value)

    with torch.no_grad():
        y = rewards + 0.9 * (1 - terminals) * agent.value.v(next_states).squeeze(-1)
        q1, q2 = agent.critic(states, actions)
        v = agent.value.v(states).squeeze(-1)
    q_loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    v_loss = ((v - target_value.clamp(-0.05, 0.05)) ** 2).mean()
    torch.testing.assert_close(metrics["q_loss"], q_loss)
    torch.testing.assert_close(metrics["v_loss"], v_loss)
    torch.testing.assert_close(loss, q_loss + v_loss)
    assert agent.reward_scale == pytest.approx(0.5) and terminals.sum() == 4  # rewards 2 / -1, scaled by 1/2

    loss.backward()  # one loss, one optimiser: Q and V both learn from it
    assert all(p.grad is not None for p in [*agent.critic.parameters(), *agent.value.parameters()])


def test_advantage_bootstraps_from_the_target_q_and_weights_are_the_expectile_indicator():
    buffer = chained_buffer()
    agent = agent_with_distinct_targets(buffer, discount=0.9)
    rows = buffer.td_rows
    states, rewards, terminals = buffer.observations[rows], buffer.rewards[rows], buffer.terminals[rows]
    next_q = torch.linspace(-1.0, 1.0, len(rows))
    advantage = agent.advantage(states, rewards, terminals, next_q)
    with torch.no_grad():
        expected = rewards + 0.9 * (1 - terminals) * next_q - agent.value.v(states).squeeze(-1)
    torch.testing.assert_close(advantage, expected)

    weights = agent.advantage_weight(torch.tensor([-2.0, -1e-3, 1e-3, 5.0]))
    torch.testing.assert_close(weights, torch.tensor([0.1, 0.1, 0.9, 0.9]))
    high = agent_with_distinct_targets(buffer, expectile=0.7).advantage_weight(torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(high, torch.tensor([0.3, 0.7]))


def test_cvae_loss_is_the_weighted_squared_error_plus_kl_beta_times_kl():
    buffer = chained_buffer()
    agent = agent_with_distinct_targets(buffer, kl_beta=0.5)
    states, actions = buffer.observations[:12], agent.normalise_actions(buffer.actions[:12])
    weights = torch.tensor([0.9, 0.1] * 6)
    torch.manual_seed(5)
    loss, metrics = agent.cvae_loss(states, actions, weights)

    torch.manual_seed(5)
    with torch.no_grad():
        encoded = agent.cvae.encoder.net(torch.cat([states, actions], dim=-1))
        mean, log_var = encoded[:, :2], encoded[:, 2:]  # latent_dim 0: twice the action dimension
        latents = mean + torch.exp(0.5 * log_var) * torch.randn(12, 2)
        squared_error = ((decode_by_hand(agent.cvae.decoder, states, latents) - actions) ** 2).sum(-1)
        kl = -0.5 * (1 + log_var - mean ** 2 - log_var.exp()).sum(-1)
    torch.testing.assert_close(loss, (weights * (squared_error + 0.5 * kl)).mean())
    torch.testing.assert_close(metrics["reconstruction"], squared_error.mean())
    torch.testing.assert_close(metrics["kl"], kl.mean())


def test_latent_policy_maximises_q1_through_the_frozen_target_decoder():
    buffer = chained_buffer()
    agent = agent_with_distinct_targets(buffer, max_latent_action=1.5)
    states = buffer.observations[:16]
    loss = agent.latent_policy_loss(states)
    with torch.no_grad():
        actions = decode_by_hand(agent.decoder_target, states, latent_by_hand(agent.latent_policy, states, 1.5))
        expected = -agent.critic(states, actions)[0].mean()  # Q_1 alone, not the minimum
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.latent_policy.parameters())
    assert all(p.grad is None for p in [*agent.decoder_target.parameters(), *agent.cvae.parameters()])


def test_one_update_steps_every_network_and_moves_every_target_by_tau():
    """One batch for all three losses; then each target moves toward its network (tau = 1: a copy), the
    CVAE's through its decoder only; the critic's weights get no gradient from the policy step."""
    buffer = chained_buffer()
    agent = agent_with_distinct_targets(buffer, tau=1.0, batch_size=8)
    drawn = []
    original = buffer.sample_td_indices
    buffer.sample_td_indices = lambda size: drawn.append(original(size)) or drawn[-1]
    buffer.sample_indices = None  # no second batch
    before = {name: p.clone() for name, p in agent.named_parameters()}
    metrics = agent.update(buffer, 1)
    assert len(drawn) == 1
    assert set(metrics) == {"critic_loss", "q_loss", "v_loss", "cvae_loss", "reconstruction", "kl", "advantage",
                            "advantage_positive", "policy_loss"}
    for name, parameter in agent.named_parameters():
        if not name.split(".")[0].endswith("_target"):
            assert not torch.equal(parameter, before[name]), name
    for target, online in ((agent.critic_target, agent.critic), (agent.latent_policy_target, agent.latent_policy),
                           (agent.decoder_target, agent.cvae.decoder)):
        for mine, theirs in zip(target.parameters(), online.parameters(), strict=True):
            assert torch.equal(mine, theirs)
    assert all(p.requires_grad for p in agent.critic.parameters())  # unfrozen again after the policy step


# ---- what LAPO learns --------------------------------------------------------------------------------------


def test_lapo_acts_on_the_rewarded_mode_not_between_the_modes():
    """30 % of the actions at +0.8 (reward 1), 70 % at -0.8 (reward 0), one-step episodes. A unimodal fit to
    the data sits between the modes, even with LAPO's own weights (0.9 for the rewarded actions, 0.1 for the
    others: 0.8 * (0.27 - 0.07) / 0.34 = 0.47). LAPO's CVAE keeps both modes apart in its latent space and the
    latent policy picks the rewarded one, so its actions lie on the +0.8 mode. Small networks and a faster
    CVAE learning rate, for a short run; after 600 steps the largest distance to +0.8 was 0.01 to 0.11 over
    twelve seeds (of the data and of torch together), 0.06 for this one; after 400 steps up to 0.3."""
    buffer = two_mode_buffer(2000, good_share=0.3)
    good = buffer.rewards > 0
    weighted_mean = (0.9 * buffer.actions[good].sum() + 0.1 * buffer.actions[~good].sum()) / (
        0.9 * good.sum() + 0.1 * (~good).sum())
    assert abs(weighted_mean - 0.47) < 0.05 and abs(buffer.actions.mean() + 0.32) < 0.05

    torch.manual_seed(0)
    agent = LAPO(1, 1, LAPOSettings(hidden=32, batch_size=128, vae_lr=3e-3, actor_lr=1e-3, critic_lr=1e-3), 0.99)
    agent.finish_pretraining(buffer)
    for step in range(1, 601):
        agent.update(buffer, step)
    actions = agent.act(PROBE_STATES)
    assert actions.sub(GOOD).abs().max() < 0.15
    assert actions.sub(weighted_mean).abs().min() > 0.2
