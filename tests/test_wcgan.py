"""agents/wcgan.py and networks/gan.py: the discriminator's clip, both losses of Eq. 39 against a hand computation,
acting at z = 0 with BatchNorm's running statistics, and what WCGAN learns on the toy task."""

import pytest
import torch

from agents.wcgan import WCGAN, WCGANSettings
from datasources import load_dataset
from networks.gan import Discriminator
from trainer.config import parse_config
from utils.buffer import Buffer

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_agent(buffer: Buffer, **settings) -> WCGAN:
    torch.manual_seed(0)
    return WCGAN(buffer.obs_dim, buffer.act_dim, WCGANSettings(hidden=8, value_hidden=8, noise_dim=4, **settings),
                 0.9)


def test_discriminator_is_a_probability_clipped_away_from_zero_and_one():
    discriminator = Discriminator(1, 1, 4)
    with torch.no_grad():
        discriminator.net[-1].bias.fill_(100.0)
        assert discriminator(torch.zeros(2, 1), torch.zeros(2, 1)).tolist() == pytest.approx([1 - 1e-4] * 2)
        discriminator.net[-1].bias.fill_(-100.0)
        assert discriminator(torch.zeros(2, 1), torch.zeros(2, 1)).tolist() == pytest.approx([1e-4] * 2)


def test_discriminator_loss_weights_the_data_term_and_scales_the_generated_term_by_the_mean_weight(toy_buffer):
    agent = tiny_agent(toy_buffer)
    rows = torch.arange(30)
    states, actions = toy_buffer.observations[rows], toy_buffer.actions[rows]
    torch.manual_seed(4)
    loss, metrics = agent.discriminator_loss(toy_buffer, rows)
    torch.manual_seed(4)
    with torch.no_grad():
        weight = agent.advantage_weight(agent.behaviour_advantage(toy_buffer, rows))
        fake = agent.generator(states, torch.randn(30, 4))
        d_real, d_fake = agent.discriminator(states, actions), agent.discriminator(states, fake)
        expected = -(weight * d_real.log()).mean() - weight.mean() * (1 - d_fake).log().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["weight"].item() == pytest.approx(weight.mean().item(), rel=1e-6)
    loss.backward()  # the generated actions are constants of this loss
    assert all(p.grad is None for p in agent.generator.parameters())


def test_generator_loss_is_the_mean_log_of_one_minus_d_through_a_frozen_discriminator(toy_buffer):
    agent = tiny_agent(toy_buffer)
    rows = torch.arange(30)
    states = toy_buffer.observations[rows]
    torch.manual_seed(5)
    loss = agent.generator_loss(toy_buffer, rows)
    torch.manual_seed(5)
    with torch.no_grad():
        expected = (1 - agent.discriminator(states, agent.generator(states, torch.randn(30, 4)))).log().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in agent.discriminator.parameters())
    assert all(p.grad is not None for p in agent.generator.parameters())


def test_acts_with_the_generator_at_zero_noise_in_eval_mode_and_leaves_it_training(toy_buffer):
    agent = tiny_agent(toy_buffer, batch_size=64)
    for step in range(1, 4):  # running statistics that differ from a batch's own
        agent.update(toy_buffer, step)
    states = toy_buffer.observations[:10]
    agent.generator.eval()
    with torch.no_grad():
        expected = agent.generator(states, torch.zeros(10, 4))
    agent.generator.train()
    assert torch.allclose(agent.act(states), expected, atol=1e-6)
    assert agent.generator.training
    with torch.no_grad():
        assert not torch.allclose(agent.generator(states, torch.zeros(10, 4)), expected, atol=1e-4)
    assert torch.equal(agent.act(states[:1]), agent.act(states[:1]))  # one state at a time works, deterministically


def test_wcgan_acts_on_the_rewarded_mode_of_the_toy_task(act_on_toy_probe):
    """The generator follows the weighted data, in which the rewarded mode dominates, and G(s, 0) lands on that
    mode, not between the modes. Faster learning rates for a short run; over three seeds after 1,200 steps:
    0.094-0.110 from the mode's centre (the rewarded disk's radius is 0.25)."""
    data = load_dataset("toy-multimodal", toy_size=2000, seed=2)
    toy_buffer = Buffer(data, CPU, normalise=True)
    torch.manual_seed(2)
    agent = WCGAN(1, 2, WCGANSettings(hidden=64, value_hidden=64, batch_size=256, generator_lr=1e-3,
                                      discriminator_lr=1e-3), 0.99)
    for step in range(1, 1201):
        agent.update(toy_buffer, step)
    actions, from_rewarded = act_on_toy_probe(agent, toy_buffer)
    assert from_rewarded.max() < 0.2
    assert (actions - toy_buffer.actions.mean(dim=0)).norm(dim=-1).min() > 0.4


def test_flags_parse_with_goplans_defaults():
    assert WCGANSettings() == WCGANSettings(beta=0.2, C=50.0, value_lr=1e-3, value_hidden=512, tau=0.005,
                                            value_target_every=2, batch_size=512, noise_dim=64, generator_lr=1e-4,
                                            discriminator_lr=1e-4, hidden=512)
    config = parse_config(["--agent", "wcgan", "--noise_dim", "8"])
    assert config.agent.noise_dim == 8 and config.run.normalise
