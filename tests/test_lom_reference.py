"""The fast LOM step (batched ensembles, precomputed MDN table) against a plain reading of the method as the
authors' released code computes it (docs/algorithms/lom.md).

The reference below uses K separate critics, calls the MDN on every batch, reads Q_phi(s, u) one component
at a time (building one-hot inputs by hand for that form) and loops where the method says "for every
component". Same batch, same random draws (same seed, same order, same shapes): the losses and every
gradient must agree to float tolerance. The two places where we differ from the released code on purpose
are checked here too: the imitated action's log-std clamp, and the state scaler (`scaler_noise`).
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import numpy as np

import envs  # noqa: F401
from agents.lom import LOM, LOMSettings
from networks.mdn import LOG_STD_MAX, LOG_STD_MIN
from utils.buffer import STD_FLOOR, Buffer
from utils.dataset import transitions_from_arrays

OBS, ACT, M, K = 3, 2, 3, 2
SETTINGS = dict(num_mixtures=M, K=K, hidden=16, mdn_hidden=16, beta=2.0, C=3.0, ac_rand=0.1, smooth_noise=0.2)


def small_buffer() -> Buffer:
    generator = torch.Generator().manual_seed(0)
    size = 64
    terminals = torch.zeros(size)
    terminals[::16] = 1.0
    dataset = transitions_from_arrays(
        "reference", torch.randn(size, OBS, generator=generator).numpy(),
        (2 * torch.rand(size, ACT, generator=generator) - 1).numpy(),
        torch.randn(size, generator=generator).numpy(), terminals.numpy(),
        eval_env_id="ToyMultimodal-v0", source="test")
    return Buffer(dataset, torch.device("cpu"), normalise=True)


def trained_agent(buffer: Buffer, **overrides) -> LOM:
    torch.manual_seed(1)
    agent = LOM(OBS, ACT, LOMSettings(**{**SETTINGS, **overrides}), discount=0.99)
    agent.start_pretraining(buffer)
    for _ in range(5):
        agent.pretrain_step(buffer)
    agent.finish_pretraining(buffer)
    for step in range(1, 4):  # move every network away from its initialisation
        agent.update(buffer, step)
    return agent


def separate_critics(ensemble) -> list[nn.Sequential]:
    """A CriticEnsemble's K members as ordinary networks with copied weights."""
    critics = []
    for k in range(K):
        layers = list(ensemble.q.net)
        plain = nn.Sequential(*[nn.Linear(l.weight.shape[1], l.weight.shape[2]) if hasattr(l, "weight") else nn.ReLU()
                                for l in layers])
        with torch.no_grad():
            for source, target in zip(layers, plain):
                if hasattr(source, "weight"):
                    target.weight.copy_(source.weight[k].T)
                    target.bias.copy_(source.bias[k, 0])
        critics.append(plain)
    return critics


def reference_value_loss(agent, buffer, rows, critics, target_critics):
    s, a, r, d = buffer.observations[rows], buffer.actions[rows], buffer.rewards[rows], buffer.terminals[rows]
    s2, a2 = buffer.next_observations[rows], buffer.next_actions[rows]
    noise = (agent.settings.smooth_noise * torch.randn(a2.shape)).clamp(-0.5, 0.5)
    a2 = (a2 + noise).clamp(-1, 1)
    with torch.no_grad():
        next_q = torch.stack([q(torch.cat([s2, a2], 1)).squeeze(1) for q in target_critics]).min(0).values
        y = r + 0.99 * (1 - d) * next_q
    return sum(F.mse_loss(q(torch.cat([s, a], 1)).squeeze(1), y) for q in critics)


def hyper_q_value(agent, states, u):
    """Q_phi(s, u) read plainly from either form of the network."""
    if agent.settings.hyper_q == "onehot":
        one_hot = F.one_hot(torch.full((len(states),), u), M).float()
        return agent.hyper_q.q(torch.cat([states, one_hot], 1)).squeeze(1)
    return agent.hyper_q.q(states)[:, u]


def reference_hyper_q_loss(agent, buffer, rows, first_critic):
    s = buffer.observations[rows]
    mixture = agent.behaviour_mdn(s)  # the frozen MDN, called directly
    samples = mixture.means + mixture.stds * torch.randn(mixture.means.shape)
    losses = []
    for u in range(M):
        prediction = hyper_q_value(agent, s, u)
        with torch.no_grad():
            target = first_critic(torch.cat([s, samples[:, u]], 1)).squeeze(1)
        losses.append(((prediction - target) ** 2).mean())
    return sum(losses) / M


def raw_log_stds(agent, states):
    """The MDN's log-std outputs before the [-15, 0] clamp: (B, M, A)."""
    out = agent.behaviour_mdn.body(states)
    return out[:, M * ACT: 2 * M * ACT].view(-1, M, ACT)


def reference_policy_loss(agent, buffer, rows, first_critic, clamp_log_std=True):
    """With clamp_log_std=False, a^ is drawn as the released code's mode-action sampling draws it: with the
    raw log-std (its MDN training and hyper-Q sampling clamp it, this step does not)."""
    settings = agent.settings
    s = buffer.observations[rows]
    mixture = agent.behaviour_mdn(s)
    with torch.no_grad():
        log_stds = raw_log_stds(agent, s)
        stds = (log_stds.clamp(LOG_STD_MIN, LOG_STD_MAX) if clamp_log_std else log_stds).exp()
        scores = torch.stack([hyper_q_value(agent, s, u) for u in range(M)], 1)
        u_star = scores.argmax(1)
        mean = torch.stack([mixture.means[i, u_star[i]] for i in range(len(rows))])
        std = torch.stack([stds[i, u_star[i]] for i in range(len(rows))])
        a_hat = (mean + std * torch.randn(mean.shape)).clamp(-1, 1) + settings.ac_rand * torch.randn(mean.shape)
    pi = agent.policy(s)
    with torch.no_grad():
        advantage = first_critic(torch.cat([s, a_hat], 1)).squeeze(1) - first_critic(torch.cat([s, pi], 1)).squeeze(1)
        weight = torch.clamp(torch.exp(settings.beta * advantage), 0, settings.C)
    return (weight * ((pi - a_hat) ** 2).mean(1)).mean()


def gradients(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


def test_value_loss_and_gradients_match_the_plain_implementation():
    buffer = small_buffer()
    agent = trained_agent(buffer)
    critics, targets = separate_critics(agent.critic), separate_critics(agent.critic_target)
    rows = buffer.sample_td_indices(32)

    torch.manual_seed(7)
    fast = agent.value_loss(buffer, rows)
    agent.critic.zero_grad()
    fast.backward()
    torch.manual_seed(7)
    plain = reference_value_loss(agent, buffer, rows, critics, targets)
    plain.backward()

    torch.testing.assert_close(fast, plain)
    for layer_index, layer in enumerate(agent.critic.q.net):
        if hasattr(layer, "weight"):
            torch.testing.assert_close(layer.weight.grad, torch.stack([c[layer_index].weight.grad.T for c in critics]))
            torch.testing.assert_close(layer.bias.grad[:, 0], torch.stack([c[layer_index].bias.grad for c in critics]))


def assert_same_loss_and_gradients(module: nn.Module, fast_loss, plain_loss, seed: int) -> None:
    """Both losses from the same random draws; their values and their gradients for `module` agree."""
    torch.manual_seed(seed)
    fast = fast_loss()
    module.zero_grad()
    fast.backward()
    fast_gradients = gradients(module)
    module.zero_grad()
    torch.manual_seed(seed)
    plain = plain_loss()
    plain.backward()
    torch.testing.assert_close(fast, plain)
    for fast_gradient, plain_gradient in zip(fast_gradients, gradients(module), strict=True):
        torch.testing.assert_close(fast_gradient, plain_gradient)


PARTS = {  # the part of the step: (its network, the fast loss, the plain loss)
    "hyper_q": (lambda agent: agent.hyper_q, lambda agent, buffer, rows: agent.hyper_q_loss(buffer, rows),
                reference_hyper_q_loss),
    "policy": (lambda agent: agent.policy, lambda agent, buffer, rows: agent.policy_loss(buffer, rows)[0],
               reference_policy_loss),
}


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("form", ["multihead", "onehot"])
def test_hyper_q_and_policy_losses_and_gradients_match_the_plain_implementation(part, form):
    network, fast_loss, plain_loss = PARTS[part]
    buffer = small_buffer()
    agent = trained_agent(buffer, hyper_q=form)
    first_critic = separate_critics(agent.critic)[0]
    rows = buffer.sample_indices(32)
    assert_same_loss_and_gradients(network(agent), lambda: fast_loss(agent, buffer, rows),
                                   lambda: plain_loss(agent, buffer, rows, first_critic), seed=8)


# ---- where we differ from the released code on purpose ---------------------------------------------------


def test_imitated_action_matches_the_released_code_while_the_raw_log_std_lies_within_the_clamp():
    buffer = small_buffer()
    agent = trained_agent(buffer)
    with torch.no_grad():  # every raw log-std to at most -0.5, inside [-15, 0]
        agent.behaviour_mdn.body[-1].bias[M * ACT: 2 * M * ACT] -= 0.5 + raw_log_stds(agent, buffer.observations).max()
    agent.finish_pretraining(buffer)
    rows = buffer.sample_indices(32)
    raw = raw_log_stds(agent, buffer.observations[rows])
    assert (raw > LOG_STD_MIN).all() and (raw < LOG_STD_MAX).all()
    first_critic = separate_critics(agent.critic)[0]
    assert_same_loss_and_gradients(agent.policy, lambda: agent.policy_loss(buffer, rows)[0],
                                   lambda: reference_policy_loss(agent, buffer, rows, first_critic,
                                                                 clamp_log_std=False), seed=8)


def test_imitated_action_is_drawn_with_the_clamped_log_std_where_the_released_code_uses_the_raw_one():
    buffer = small_buffer()
    agent = trained_agent(buffer)
    with torch.no_grad():  # push every raw log-std to +2: the clamp makes it 0 (std 1), the raw one gives std e^2
        agent.behaviour_mdn.body[-1].bias[M * ACT: 2 * M * ACT] += 2.0 - raw_log_stds(agent, buffer.observations).min()
    agent.finish_pretraining(buffer)
    rows = buffer.sample_indices(32)
    assert (raw_log_stds(agent, buffer.observations[rows]) > LOG_STD_MAX).all()
    assert torch.equal(agent.components_at(rows).stds, torch.ones(32, M, ACT))
    first_critic = separate_critics(agent.critic)[0]
    assert_same_loss_and_gradients(agent.policy, lambda: agent.policy_loss(buffer, rows)[0],
                                   lambda: reference_policy_loss(agent, buffer, rows, first_critic), seed=8)
    torch.manual_seed(8)
    ours = agent.policy_loss(buffer, rows)[0]
    torch.manual_seed(8)
    released = reference_policy_loss(agent, buffer, rows, first_critic, clamp_log_std=False)
    assert not torch.allclose(ours, released, rtol=0.05)


FEATURE_STDS = np.array([1.0, 0.1, 0.03, 0.01])  # two features the two scalers treat alike, two they do not


def low_variance_buffer(**scaler) -> tuple[np.ndarray, Buffer]:
    rows = 20_000
    rng = np.random.default_rng(0)
    observations = (rng.standard_normal((rows, len(FEATURE_STDS))) * FEATURE_STDS + [0.5, -1.0, 2.0, 0.0])
    dataset = transitions_from_arrays(
        "scaler", observations, rng.uniform(-1, 1, (rows, ACT)), np.zeros(rows), np.ones(rows),
        eval_env_id="ToyMultimodal-v0", source="test")
    return dataset.observations.astype(np.float64), Buffer(dataset, torch.device("cpu"), normalise=True, **scaler)


def test_default_scaler_is_the_data_mean_and_std_plus_a_floor():
    states, buffer = low_variance_buffer()
    np.testing.assert_allclose(buffer.normaliser.mean.numpy(), states.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buffer.normaliser.std.numpy(), states.std(0) + STD_FLOOR, rtol=1e-5)


def test_scaler_noise_fits_the_scaler_as_the_released_code_does_on_noisy_states():
    states, buffer = low_variance_buffer(scaler_noise=0.05, seed=3)
    noisy = states + 0.05 * np.random.default_rng(3).standard_normal(states.shape)  # the released code's fit data
    mean, std = noisy.mean(0), noisy.std(0)  # a standard scaler: population std, no floor
    np.testing.assert_allclose(buffer.normaliser.mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buffer.normaliser.std.numpy(), std, rtol=1e-5)
    np.testing.assert_allclose(buffer.observations.numpy(), (states - mean) / std, rtol=1e-4, atol=1e-4)


def test_the_two_scalers_differ_by_sqrt_std2_plus_noise2_over_std_plus_floor():
    _, ours = low_variance_buffer()
    _, released = low_variance_buffer(scaler_noise=0.05, seed=3)
    ratio = (released.normaliser.std / ours.normaliser.std).numpy()
    expected = np.sqrt(FEATURE_STDS**2 + 0.05**2) / (FEATURE_STDS + STD_FLOOR)  # 1.00, 1.11, 1.88, 4.6
    np.testing.assert_allclose(ratio, expected, rtol=0.02)
    assert ratio[0] < 1.01 and ratio[1] > 1.1 and ratio[2] > 1.8
