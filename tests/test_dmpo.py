"""agents/dmpo.py and networks/latent.py: the Gumbel-softmax sample, the latent choice, the advantage weights, each
loss against a hand computation, and what DMPO learns on the toy task (latents that split the modes, and an
action on one mode, not between them)."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from agents.dmpo import DMPO, DMPOSettings
from datasources import load_dataset
from envs.toy_multimodal import NUM_MODES, mode_centres
from networks.latent import gumbel_noise, gumbel_softmax
from trainer.config import parse_config
from utils.buffer import Buffer
from utils.errors import UserInputError

CPU = torch.device("cpu")
K = 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_agent(buffer: Buffer, **settings) -> DMPO:
    """K = 3 latents, 8-wide networks and a 4-wide latent embedding (the released width, the toy state's one,
    can leave every latent's embedding at ReLU's zero), with target networks that differ from the online ones."""
    torch.manual_seed(0)
    agent = DMPO(buffer.obs_dim, buffer.act_dim, DMPOSettings(num_latents=K, hidden=8, latent_embedding=4,
                                                              **settings), 0.9)
    with torch.no_grad():
        for target in (agent.actor_target, agent.critic_target):
            for parameter in target.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
    return agent


def one_hot(k: int, batch: int) -> torch.Tensor:
    return F.one_hot(torch.full((batch,), k), K).float()


def min_q(critic, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return torch.minimum(*critic(states, actions))


# ---- the Gumbel-softmax sample -------------------------------------------------------------------------------


def test_gumbel_softmax_is_the_tempered_softmax_of_log_probabilities_plus_the_noise():
    probabilities = torch.tensor([[0.2, 0.5, 0.3]])
    noise = torch.tensor([[0.1, -0.3, 0.7]])
    logits = [(math.log(p) + g) / 0.67 for p, g in zip([0.2, 0.5, 0.3], [0.1, -0.3, 0.7])]
    expected = [math.exp(x) / sum(math.exp(y) for y in logits) for x in logits]
    assert gumbel_softmax(probabilities, 0.67, noise).tolist()[0] == pytest.approx(expected, rel=1e-5)
    # As the temperature falls the sample tends to the one-hot of argmax(log p + g): latent 2 here.
    assert gumbel_softmax(probabilities, 0.01, noise).tolist()[0] == pytest.approx([0, 0, 1], abs=1e-6)


def test_gumbel_noise_is_minus_log_minus_log_of_a_uniform_draw():
    torch.manual_seed(3)
    uniform = torch.rand(4, K)
    torch.manual_seed(3)
    noise = gumbel_noise(torch.Size((4, K)), CPU, torch.float32)
    assert torch.allclose(noise, -torch.log(-torch.log(uniform)), atol=1e-5)


# ---- the latent choice ------------------------------------------------------------------------------------------


def test_best_latent_is_the_argmax_over_latents_of_the_twin_critics_minimum_and_act_returns_its_action(toy_buffer):
    agent = tiny_agent(toy_buffer)
    states = toy_buffer.observations[:50]
    with torch.no_grad():
        actions = [agent.actor(states, one_hot(k, 50)) for k in range(K)]
        values = torch.stack([min_q(agent.critic, states, a) for a in actions])  # (K, B), one latent at a time
    best, best_value, best_action = agent.best_latent(states, agent.actor)
    assert torch.equal(best, values.argmax(dim=0))
    assert torch.allclose(best_value, values.max(dim=0).values, atol=1e-6)
    expected_action = torch.stack(actions)[values.argmax(dim=0), torch.arange(50)]
    assert torch.allclose(best_action, expected_action, atol=1e-6)
    assert torch.allclose(agent.act(states), expected_action, atol=1e-6)
    assert len(set(best.tolist())) > 1  # the choice differs between states: not a trivially constant latent


# ---- the advantage weights ------------------------------------------------------------------------------------


def test_normalised_weight_rescales_the_batch_to_minus_one_zero_and_divides_by_the_mean(toy_buffer):
    agent = tiny_agent(toy_buffer)
    advantage = torch.tensor([1.0, 2.0, 4.0])  # max 4, width 3
    raw = [math.exp(10 * (a - 4) / 3) for a in (1.0, 2.0, 4.0)]
    expected = [w / (sum(raw) / 3) for w in raw]
    assert agent.advantage_weight(advantage).tolist() == pytest.approx(expected, rel=1e-5)
    # The same weights for any affine rescaling of A: only the batch's ranks and spacing matter.
    assert agent.advantage_weight(100 * advantage - 7).tolist() == pytest.approx(expected, rel=1e-4)
    # Equal advantages (width 0) and scale 0 both give weight 1 everywhere.
    assert agent.advantage_weight(torch.full((4,), 2.5)).tolist() == [1.0] * 4
    assert tiny_agent(toy_buffer, scale=0.0).advantage_weight(advantage).tolist() == [1.0] * 3


def test_clipped_weight_is_exp_of_scale_times_advantage_capped_at_100(toy_buffer):
    agent = tiny_agent(toy_buffer, weight="clipped", scale=2.0)
    assert agent.advantage_weight(torch.tensor([-1.0, 0.5, 3.0])).tolist() == pytest.approx(
        [math.exp(-2.0), math.e, 100.0], rel=1e-6)


# ---- the losses -------------------------------------------------------------------------------------------------


def test_advantage_is_the_data_actions_value_minus_the_target_actors_best_latent_under_the_online_critics(toy_buffer):
    agent = tiny_agent(toy_buffer)
    states, actions = toy_buffer.observations[:40], toy_buffer.actions[:40]
    with torch.no_grad():
        best = torch.stack([min_q(agent.critic, states, agent.actor_target(states, one_hot(k, 40)))
                            for k in range(K)]).max(dim=0).values
        expected = min_q(agent.critic, states, actions) - best
    assert torch.allclose(agent.advantage(states, actions), expected, atol=1e-6)


def test_critic_target_bootstraps_the_target_critics_at_the_target_actors_best_latent(toy_buffer):
    """With no smoothing noise, y = r + gamma (1 - d) min(Q1', Q2')(s', mu'(s', z'*)), z'* chosen by the online
    critics among the target actor's latents."""
    agent = tiny_agent(toy_buffer, policy_noise=0.0)
    rows = torch.arange(30)
    next_states = toy_buffer.next_observations[rows]
    with torch.no_grad():
        candidates = [agent.actor_target(next_states, one_hot(k, 30)) for k in range(K)]
        choice = torch.stack([min_q(agent.critic, next_states, a) for a in candidates]).argmax(dim=0)
        next_actions = torch.stack(candidates)[choice, torch.arange(30)]
        expected = toy_buffer.rewards[rows] + 0.9 * (1 - toy_buffer.terminals[rows]) * min_q(
            agent.critic_target, next_states, next_actions)
        q = agent.critic(toy_buffer.observations[rows], toy_buffer.actions[rows])
    assert torch.allclose(agent.critic_target_value(toy_buffer, rows), expected, atol=1e-6)
    expected_loss = F.mse_loss(q[0], expected) + F.mse_loss(q[1], expected)
    assert agent.critic_loss(toy_buffer, rows).item() == pytest.approx(expected_loss.item(), rel=1e-5)


def test_actor_loss_is_the_weighted_squared_error_at_a_gumbel_latent_plus_beta_times_the_weighted_kl(toy_buffer):
    agent = tiny_agent(toy_buffer, kl_weight=0.7)
    rows = torch.arange(20)
    states, actions = toy_buffer.observations[rows], toy_buffer.actions[rows]
    torch.manual_seed(5)
    loss, metrics = agent.actor_loss(toy_buffer, rows)
    with torch.no_grad():
        torch.manual_seed(5)
        uniform = torch.rand(20, K)  # the Gumbel noise the loss drew
        weight = agent.advantage_weight(agent.advantage(states, actions))
        posterior = F.softmax(agent.posterior.logits(torch.cat([states, actions], dim=-1)), dim=-1)
        latents = F.softmax((posterior.log() - torch.log(-torch.log(uniform))) / 0.67, dim=-1)
        reconstruction = (weight * (agent.actor(states, latents) - actions).square().sum(-1)).mean()
        values = torch.stack([min_q(agent.critic, states, agent.actor(states, one_hot(k, 20))) for k in range(K)])
        prior = F.softmax(values.T, dim=-1)
        kl = (weight * (posterior * (posterior / prior).log()).sum(-1)).mean()
    assert metrics["reconstruction"].item() == pytest.approx(reconstruction.item(), rel=1e-4)
    assert metrics["kl"].item() == pytest.approx(kl.item(), rel=1e-4)
    assert loss.item() == pytest.approx(reconstruction.item() + 0.7 * kl.item(), rel=1e-4)
    loss.backward()  # the weights and the prior are constants: only the actor and the posterior get gradients
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is not None for p in [*agent.actor.parameters(), *agent.posterior.parameters()])


@pytest.mark.parametrize("released", [False, True])
def test_info_loss_is_cross_entropy_of_the_second_posterior_recovering_the_latent(toy_buffer, released):
    """The default draws labels from all K latents and takes the cross-entropy of the posterior's logits; the
    released form never draws latent K-1 and feeds probabilities to the cross-entropy (a second softmax)."""
    agent = tiny_agent(toy_buffer, info_reg=True, info_reg_released=released)
    states = toy_buffer.observations[:64]
    torch.manual_seed(2)
    loss = agent.info_loss(states)
    torch.manual_seed(2)
    labels = torch.randint(0, K - 1 if released else K, (64,))
    assert (labels.max().item() == K - 2) if released else (labels.max().item() == K - 1)
    with torch.no_grad():
        probabilities = agent.info_posterior(states, agent.actor(states, F.one_hot(labels, K).float()))
        chosen = probabilities[torch.arange(64), labels]
        if released:
            expected = (torch.logsumexp(probabilities, dim=-1) - chosen).mean()
        else:
            expected = -chosen.log().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_actor_posterior_and_targets_move_every_second_step_only(toy_buffer):
    agent = tiny_agent(toy_buffer, batch_size=16)
    watched = {"actor": agent.actor, "posterior": agent.posterior, "actor_target": agent.actor_target,
               "critic_target": agent.critic_target, "critic": agent.critic}
    for step, moving in [(1, {"critic"}), (2, set(watched))]:
        before = {name: [p.detach().clone() for p in net.parameters()] for name, net in watched.items()}
        metrics = agent.update(toy_buffer, step)
        moved = {name for name, net in watched.items()
                 if any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters()))}
        assert moved == moving
        assert ("actor_loss" in metrics) == (step == 2)


# ---- what it learns on the toy task ------------------------------------------------------------------------


def four_mode_data(seed: int) -> tuple[Buffer, np.ndarray, np.ndarray]:
    """2,000 rows of the four-mode toy task, each row's mode (its nearest centre) and the raw probe states."""
    data = load_dataset("toy-multimodal", toy_size=2000, seed=seed)
    modes = np.linalg.norm(data.actions[:, None] - mode_centres(data.observations[:, 0]), axis=-1).argmin(-1)
    return Buffer(data, CPU, normalise=True), modes, np.linspace(-0.9, 0.9, 7)


def distances_to_modes(actions: torch.Tensor, raw_states: np.ndarray) -> torch.Tensor:
    """(..., P, 2) actions at P probe states -> (..., P, 4) distances to the four mode centres."""
    centres = torch.tensor(mode_centres(raw_states), dtype=torch.float32)
    return (actions.unsqueeze(-2) - centres).norm(dim=-1)


def test_dmpo_latents_split_the_four_modes_and_the_q_chosen_latent_acts_on_the_rewarded_one():
    """With every weight 1 (scale 0) the objective is a discrete-latent VAE of the data: each of the four
    modes gets latents of its own, each sub-policy acts on one mode, and z* picks the rewarded mode (0).
    Two settings differ from the defaults, and docs/algorithms/dmpo.md says why: a 16-wide latent embedding
    (the released width is the state's, one unit here) and a KL weight of 0.05 (at 1 the KL costs more than
    splitting saves on this data, and the latents collapse). Over four seeds: purity 1.000, every sub-policy
    within 0.15 of a mode centre, actions within 0.03 of mode 0."""
    buffer, modes, raw_probe = four_mode_data(seed=0)
    torch.manual_seed(0)
    agent = DMPO(1, 2, DMPOSettings(hidden=64, batch_size=128, scale=0.0, kl_weight=0.05, latent_embedding=16,
                                    actor_lr=1e-3, critic_lr=1e-3), 0.99)
    for step in range(1, 1001):
        agent.update(buffer, step)
    with torch.no_grad():
        assigned = agent.posterior(buffer.observations, buffer.actions).argmax(dim=-1).numpy()
        probe = buffer.normaliser(torch.tensor(raw_probe[:, None], dtype=torch.float32))
        sub_policies = distances_to_modes(agent.actor.every_latent(probe), raw_probe)  # (K, P, 4)
        acted = distances_to_modes(agent.act(probe), raw_probe)  # (P, 4)
    majority = {k: np.bincount(modes[assigned == k], minlength=NUM_MODES).argmax() for k in set(assigned)}
    purity = np.mean([majority[k] == mode for k, mode in zip(assigned, modes)])
    assert purity > 0.95 and set(majority.values()) == set(range(NUM_MODES))
    assert sub_policies.min(dim=-1).values.max() < 0.15  # every sub-policy on some mode, at every probe state
    assert acted[:, 0].max() < 0.1  # the chosen action on the rewarded mode
    assert acted.min(dim=-1).values.max() < 0.1


def test_dmpo_with_its_defaults_acts_on_the_rewarded_mode_not_between_the_modes():
    """The released settings (scale 10, KL weight 1, embedding of the state's width): the weights leave almost
    only the rewarded mode's rows, every sub-policy imitates them, and the action is on that mode, 0.6 from
    the data's mean action. Over three seeds after 600 steps: within 0.03 of mode 0."""
    buffer, _, raw_probe = four_mode_data(seed=1)
    torch.manual_seed(1)
    agent = DMPO(1, 2, DMPOSettings(hidden=64, batch_size=128, actor_lr=1e-3, critic_lr=1e-3), 0.99)
    for step in range(1, 601):
        agent.update(buffer, step)
    probe = buffer.normaliser(torch.tensor(raw_probe[:, None], dtype=torch.float32))
    actions = agent.act(probe)
    assert distances_to_modes(actions, raw_probe)[:, 0].max() < 0.1
    assert (actions - buffer.actions.mean(dim=0)).norm(dim=-1).min() > 0.4


# ---- settings ----------------------------------------------------------------------------------------------


def test_flags_parse_with_the_released_defaults_and_bad_combinations_are_one_line_errors():
    assert DMPOSettings() == DMPOSettings(num_latents=8, latent_embedding=0, temperature=0.67, scale=10.0,
                                          weight="normalised", kl_weight=1.0, policy_noise=0.2, noise_clip=0.5,
                                          policy_freq=2, actor_lr=3e-4, critic_lr=3e-4, batch_size=256,
                                          tau=0.005, hidden=256, info_reg=False, info_lr=5e-7,
                                          info_reg_released=False)
    config = parse_config(["--agent", "dmpo", "--scale", "5", "--info_reg", "1", "--weight", "clipped"])
    assert (config.agent.scale, config.agent.info_reg, config.agent.weight) == (5.0, True, "clipped")
    assert config.run.normalise  # the released code z-scores states
    with pytest.raises(UserInputError, match="--info_reg_released") as error:
        parse_config(["--agent", "dmpo", "--info_reg_released", "1"])
    assert "\n" not in str(error.value)
    for flag, value in [("--num_latents", "0"), ("--temperature", "0"), ("--weight", "soft")]:
        with pytest.raises(UserInputError, match=flag):
            parse_config(["--agent", "dmpo", flag, value])
