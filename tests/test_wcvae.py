"""agents/wcvae.py and agents/behaviour_value.py: the behaviour value's TD loss, the advantage and its weight, the
weighted ELBO of Eq. 40 against a hand computation, acting at z = 0, and what WCVAE learns on the toy task."""

import math

import numpy as np
import pytest
import torch

from agents.wcvae import WCVAE, WCVAESettings
from datasources import load_dataset
from trainer.config import parse_config
from utils.buffer import Buffer
from utils.dataset import transitions_from_arrays

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_agent(buffer: Buffer, **settings) -> WCVAE:
    """8-wide networks, with a target V that differs from the online one."""
    torch.manual_seed(0)
    agent = WCVAE(buffer.obs_dim, buffer.act_dim, WCVAESettings(hidden=8, value_hidden=8, **settings), 0.9)
    with torch.no_grad():
        for parameter in agent.value_target.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return agent


@pytest.fixture(scope="module")
def chained() -> Buffer:
    """Four 10-step episodes ending in terminals: most rows bootstrap from their next state."""
    rng = np.random.default_rng(0)
    terminals = np.zeros(40)
    terminals[9::10] = 1
    dataset = transitions_from_arrays("chained", rng.uniform(-1, 1, (40, 1)), rng.uniform(-1, 1, (40, 2)),
                                      rng.standard_normal(40), terminals, eval_env_id="unused", source="test")
    return Buffer(dataset, CPU, normalise=True)


def test_value_loss_regresses_v_on_r_plus_gamma_v_target_of_the_next_state(chained):
    agent = tiny_agent(chained)
    rows = torch.arange(40)
    assert chained.terminals[rows].sum() == 4
    with torch.no_grad():
        target = chained.rewards[rows] + 0.9 * (1 - chained.terminals[rows]) * agent.value_target(
            chained.next_observations[rows])
        expected = (agent.value(chained.observations[rows]) - target).square().mean()
    assert agent.value_loss(chained, rows).item() == pytest.approx(expected.item(), rel=1e-6)


def test_advantage_is_the_one_step_td_error_of_the_online_value(chained):
    agent = tiny_agent(chained)
    rows = torch.arange(40)
    with torch.no_grad():
        expected = (chained.rewards[rows] + 0.9 * (1 - chained.terminals[rows]) * agent.value(
            chained.next_observations[rows]) - agent.value(chained.observations[rows]))
    assert torch.allclose(agent.behaviour_advantage(chained, rows), expected, atol=1e-6)


def test_weight_is_exp_of_advantage_over_beta_clipped_at_c(toy_buffer):
    agent = tiny_agent(toy_buffer, beta=0.5, C=10.0)
    weights = agent.advantage_weight(torch.tensor([-1.0, 0.0, 0.5, 2.0]))
    assert weights.tolist() == pytest.approx([math.exp(-2.0), 1.0, math.e, 10.0], rel=1e-6)


def test_cvae_loss_is_the_weighted_squared_error_plus_kl_of_eq_40(toy_buffer):
    agent = tiny_agent(toy_buffer, kl_weight=0.7)
    rows = torch.arange(40)
    states, actions = toy_buffer.observations[rows], toy_buffer.actions[rows]
    torch.manual_seed(3)
    loss, metrics = agent.cvae_loss(toy_buffer, rows)
    torch.manual_seed(3)
    with torch.no_grad():
        weight = agent.advantage_weight(agent.behaviour_advantage(toy_buffer, rows))
        mean, log_var = agent.cvae.encoder(states, actions)
        latents = mean + torch.exp(0.5 * log_var) * torch.randn(40, agent.cvae.latent_dim)
        decoded = torch.tanh(agent.cvae.decoder.net(torch.cat([states, latents], dim=-1)))
        squared_error = (decoded - actions).square().sum(-1)
        kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(-1)
        expected = (weight * (squared_error + 0.7 * kl)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["weight"].item() == pytest.approx(weight.mean().item(), rel=1e-6)
    assert agent.cvae.latent_dim == 2 * toy_buffer.act_dim  # the default: twice the action dimension


def test_acts_with_the_decoder_at_the_prior_mode(toy_buffer):
    agent = tiny_agent(toy_buffer)
    states = toy_buffer.observations[:10]
    with torch.no_grad():
        expected = torch.tanh(agent.cvae.decoder.net(torch.cat([states, torch.zeros(10, 4)], dim=-1)))
    assert torch.allclose(agent.act(states), expected, atol=1e-6)
    assert agent.act(states).abs().max() <= 1.0


def test_the_value_target_moves_every_second_step_and_the_cvae_every_step(toy_buffer):
    agent = tiny_agent(toy_buffer, batch_size=32)
    for step, target_moves in [(1, False), (2, True)]:
        target_before = [p.clone() for p in agent.value_target.parameters()]
        cvae_before = [p.clone() for p in agent.cvae.parameters()]
        agent.update(toy_buffer, step)
        assert any(not torch.equal(a, b) for a, b in zip(cvae_before, agent.cvae.parameters()))
        moved = any(not torch.equal(a, b) for a, b in zip(target_before, agent.value_target.parameters()))
        assert moved == target_moves


def test_wcvae_acts_inside_the_rewarded_mode_of_the_toy_task(act_on_toy_probe):
    """The weights favour the rewarded mode's rows (about 22 against 2 for the half-paying mode and 0.15 for
    the others), and the decoder's action at z = 0 lands in the rewarded disk (radius 0.25), not at the data's
    mean action near the origin. Over three seeds after 500 steps: 0.116-0.125 from the mode's centre, pulled a
    little toward the half-paying mode, whose rows keep a weight."""
    data = load_dataset("toy-multimodal", toy_size=2000, seed=1)
    toy_buffer = Buffer(data, CPU, normalise=True)
    torch.manual_seed(1)
    agent = WCVAE(1, 2, WCVAESettings(hidden=64, value_hidden=64, batch_size=256), 0.99)
    for step in range(1, 501):
        agent.update(toy_buffer, step)
    actions, from_rewarded = act_on_toy_probe(agent, toy_buffer)
    assert from_rewarded.max() < 0.2
    assert (actions - toy_buffer.actions.mean(dim=0)).norm(dim=-1).min() > 0.4


def test_flags_parse_with_the_chosen_defaults():
    assert WCVAESettings() == WCVAESettings(beta=0.2, C=50.0, kl_weight=1.0, latent_dim=0, vae_lr=1e-3,
                                            value_lr=1e-3, batch_size=512, tau=0.005, value_target_every=2,
                                            hidden=256, value_hidden=512)
    config = parse_config(["--agent", "wcvae", "--beta", "1", "--C", "20"])
    assert (config.agent.beta, config.agent.C) == (1.0, 20.0)
    assert config.run.normalise
