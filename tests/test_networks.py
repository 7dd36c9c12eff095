"""networks/: MDN likelihood, batched ensembles, hyper Q, Polyak averaging and the policies, checked by hand."""

import math

import pytest
import torch
from torch.nn import functional as F

from benchmarks.throughput import MatrixProducts
from networks.critics import CriticEnsemble, OneHotHyperQ, StateValue, ensemble_mse, soft_update
from networks.losses import exp_clip_weight, expectile_loss, expectile_weight, td_target
from networks.mdn import LOG_STD_MAX, LOG_STD_MIN, MEAN_LIMIT, GaussianMixture, MixtureDensityNetwork
from networks.mlp import CPU_ROW_BLOCK, EnsembleLinear, EnsembleMLP, mlp
from networks.policies import DeterministicPolicy, FixedStdGaussianPolicy, GaussianPolicy, TanhGaussianPolicy


def normal_log_density(x: float, mean: float, std: float) -> float:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


# ---- the behaviour MDN -------------------------------------------------------------------------------

# Two states (B=2), two components (M=2), two action dimensions (A=2).
LOGITS = [[0.3, -0.2], [1.0, 0.0]]
MEANS = [[[0.1, -0.4], [0.5, 0.2]], [[-0.3, 0.0], [0.7, -0.6]]]
STDS = [[[0.5, 0.2], [0.3, 0.8]], [[1.0, 0.4], [0.25, 0.6]]]
ACTIONS = [[0.2, -0.1], [0.4, -0.5]]


def hand_mixture_log_prob(b: int) -> float:
    """log sum_i alpha_i prod_d N(a_d; mu_id, sigma_id), with alpha = softmax(logits), in plain math."""
    normaliser = sum(math.exp(z) for z in LOGITS[b])
    total = 0.0
    for i in range(2):
        alpha = math.exp(LOGITS[b][i]) / normaliser
        density = 1.0
        for d in range(2):
            density *= math.exp(normal_log_density(ACTIONS[b][d], MEANS[b][i][d], STDS[b][i][d]))
        total += alpha * density
    return math.log(total)


def test_gaussian_mixture_log_prob_matches_hand_computation():
    mixture = GaussianMixture(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(MEANS, dtype=torch.float64),
                              torch.tensor(STDS, dtype=torch.float64))
    log_prob = mixture.log_prob(torch.tensor(ACTIONS, dtype=torch.float64))
    assert log_prob.shape == (2,)
    for b in range(2):
        assert log_prob[b].item() == pytest.approx(hand_mixture_log_prob(b), abs=1e-12)


def test_gaussian_mixture_log_prob_is_invariant_to_a_logit_shift():
    """Mixing weights are softmax(logits): adding a constant per state changes nothing."""
    means, stds, actions = torch.tensor(MEANS), torch.tensor(STDS), torch.tensor(ACTIONS)
    base = GaussianMixture(torch.tensor(LOGITS), means, stds).log_prob(actions)
    shifted = GaussianMixture(torch.tensor(LOGITS) + torch.tensor([[5.0], [-3.0]]), means, stds).log_prob(actions)
    torch.testing.assert_close(shifted, base)


def test_sample_components_draws_mean_plus_std_times_standard_normal():
    mixture = GaussianMixture(torch.tensor(LOGITS), torch.tensor(MEANS), torch.tensor(STDS))
    torch.manual_seed(3)
    samples = mixture.sample_components()
    torch.manual_seed(3)
    noise = torch.randn(2, 2, 2)
    assert samples.shape == (2, 2, 2)
    torch.testing.assert_close(samples, torch.tensor(MEANS) + torch.tensor(STDS) * noise)


def saturated_mdn(scale: float) -> MixtureDensityNetwork:
    """An MDN whose output layer is scaled up so tanh saturates and log-stds leave [-15, 0] on both sides."""
    torch.manual_seed(0)
    mdn = MixtureDensityNetwork(obs_dim=3, act_dim=2, num_components=4, hidden=(8, 8))
    with torch.no_grad():
        mdn.body[-1].weight.mul_(scale)
        mdn.body[-1].bias.mul_(scale)
    return mdn


def test_mdn_means_and_stds_stay_within_their_limits():
    mdn = saturated_mdn(scale=1e4)
    states = 10.0 * torch.randn(64, 3)
    mixture = mdn(states)
    assert mixture.logits.shape == (64, 4)
    assert mixture.means.shape == mixture.stds.shape == (64, 4, 2)
    assert mixture.means.abs().max().item() <= MEAN_LIMIT
    # The clamps are reached on both ends (the scaled outputs are far outside them).
    assert mixture.means.max().item() == pytest.approx(MEAN_LIMIT)
    assert mixture.means.min().item() == pytest.approx(-MEAN_LIMIT)
    std_min = torch.tensor(LOG_STD_MIN).exp().item()
    std_max = torch.tensor(LOG_STD_MAX).exp().item()
    assert std_min == pytest.approx(math.exp(-15)) and std_max == 1.0
    assert mixture.stds.min().item() >= std_min and mixture.stds.max().item() <= std_max
    assert mixture.stds.min().item() == std_min and mixture.stds.max().item() == std_max


def test_mdn_outputs_are_split_from_the_body_as_documented():
    """means = tanh(first M*A outputs), stds = exp(next M*A), logits = last M, all unsaturated here."""
    torch.manual_seed(1)
    mdn = MixtureDensityNetwork(obs_dim=3, act_dim=2, num_components=4, hidden=(8, 8))
    states = torch.randn(5, 3)
    out = mdn.body(states)
    mixture = mdn(states)
    torch.testing.assert_close(mixture.means, torch.tanh(out[:, :8]).view(5, 4, 2))
    torch.testing.assert_close(mixture.stds, out[:, 8:16].clamp(-15, 0).exp().view(5, 4, 2))
    torch.testing.assert_close(mixture.logits, out[:, 16:])


def test_mdn_nll_is_minus_the_mean_log_prob_and_matches_torch_distributions():
    torch.manual_seed(2)
    mdn = MixtureDensityNetwork(obs_dim=3, act_dim=2, num_components=4, hidden=(8, 8))
    states, actions = torch.randn(16, 3), torch.rand(16, 2) * 2 - 1
    mixture = mdn(states)
    nll = mdn.nll(states, actions)
    torch.testing.assert_close(nll, -mixture.log_prob(actions).mean())
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=mixture.logits),
        torch.distributions.Independent(torch.distributions.Normal(mixture.means, mixture.stds), 1))
    torch.testing.assert_close(nll, -reference.log_prob(actions).mean())


# ---- ensembles and critics ---------------------------------------------------------------------------


def hand_ensemble_member(model: EnsembleMLP, x: torch.Tensor, k: int) -> torch.Tensor:
    """x @ W[k] + b[k], ReLU, ... with member k's weights read out of the batched layers."""
    linears = [layer for layer in model.net if isinstance(layer, EnsembleLinear)]
    for i, layer in enumerate(linears):
        x = x @ layer.weight[k] + layer.bias[k, 0]
        if i < len(linears) - 1:
            x = torch.relu(x)
    return x


def test_ensemble_mlp_members_equal_plain_computations_with_their_weights():
    torch.manual_seed(0)
    model = EnsembleMLP(ensemble_size=3, in_dim=4, hidden=(5, 6), out_dim=2)
    x = torch.randn(7, 4)
    out = model(x)
    assert out.shape == (3, 7, 2)
    for k in range(3):
        expected = hand_ensemble_member(model, x, k)
        torch.testing.assert_close(out[k], expected)
        torch.testing.assert_close(model.member(x, k), expected)
    # The members really are different networks.
    assert not torch.allclose(out[0], out[1])


def test_ensemble_mlp_takes_one_input_per_member():
    torch.manual_seed(0)
    model = EnsembleMLP(ensemble_size=3, in_dim=4, hidden=(5,), out_dim=1)
    x = torch.randn(3, 7, 4)
    out = model(x)
    for k in range(3):
        torch.testing.assert_close(out[k], hand_ensemble_member(model, x[k], k))


def test_ensemble_mlp_gives_a_large_batch_the_values_and_gradients_of_one_whole_pass():
    # More rows than a block (two whole blocks and a part): values and gradients are those of the layers applied to
    # all rows at once, up to float rounding (the products' kernels and the summing of the blocks' gradients).
    torch.manual_seed(0)
    model = EnsembleMLP(ensemble_size=2, in_dim=4, hidden=(8, 8), out_dim=1)
    x = torch.randn(2 * CPU_ROW_BLOCK + 5, 4)
    upstream = torch.randn(2, len(x), 1)
    out = model(x)
    whole = model.net(x.expand(2, *x.shape))
    torch.testing.assert_close(out, whole)
    grads = torch.autograd.grad((out * upstream).sum(), list(model.parameters()))
    whole_grads = torch.autograd.grad((whole * upstream).sum(), list(model.parameters()))
    for grad, whole_grad in zip(grads, whole_grads):
        torch.testing.assert_close(grad, whole_grad, rtol=1e-5, atol=1e-5)
    for k in range(2):
        torch.testing.assert_close(out[k], hand_ensemble_member(model, x, k))


def hidden_layer_rows(products: MatrixProducts) -> list[int]:
    """The rows of each batched product with a bias (an ensemble's hidden layer) in a recording."""
    return [args[1].shape[1] for func, args, _ in products.calls if func is torch.ops.aten.baddbmm.default]


def test_ensemble_mlp_on_a_cpu_runs_a_large_batch_in_blocks_of_rows():
    model = EnsembleMLP(ensemble_size=2, in_dim=4, hidden=(8, 8), out_dim=1)
    with MatrixProducts() as small:
        model(torch.randn(CPU_ROW_BLOCK, 4))
    with MatrixProducts() as large:
        model(torch.randn(2 * CPU_ROW_BLOCK + 5, 4))
    assert hidden_layer_rows(small) == [CPU_ROW_BLOCK] * 2  # two hidden layers, one pass
    assert hidden_layer_rows(large) == [CPU_ROW_BLOCK] * 2 + [CPU_ROW_BLOCK] * 2 + [5] * 2  # block by block


def test_ensemble_linear_with_one_output_matches_the_batched_product_and_its_gradients():
    # The one-output layer is computed as dot products; its values and gradients are those of x @ W + b.
    torch.manual_seed(0)
    layer = EnsembleLinear(ensemble_size=2, in_dim=6, out_dim=1)
    x = torch.randn(2, 5, 6, requires_grad=True)
    upstream = torch.randn(2, 5, 1)
    (layer(x) * upstream).sum().backward()
    grads = (x.grad, layer.weight.grad, layer.bias.grad)
    x_ref, weight, bias = (t.detach().clone().requires_grad_() for t in (x, layer.weight, layer.bias))
    out_ref = x_ref @ weight + bias
    (out_ref * upstream).sum().backward()
    torch.testing.assert_close(layer(x), out_ref)
    for grad, grad_ref in zip(grads, (x_ref.grad, weight.grad, bias.grad)):
        torch.testing.assert_close(grad, grad_ref)
    # Hand values of the gradients: d/dW_k = sum_b x_kb g_kb, d/db_k = sum_b g_kb.
    torch.testing.assert_close(layer.weight.grad, (x * upstream).sum(dim=1, keepdim=True).transpose(1, 2).detach())
    torch.testing.assert_close(layer.bias.grad, upstream.sum(dim=1, keepdim=True))


def test_ensemble_linear_initialises_like_nn_linear():
    torch.manual_seed(0)
    layer = EnsembleLinear(ensemble_size=4, in_dim=25, out_dim=3)
    bound = 1 / math.sqrt(25)
    assert layer.weight.shape == (4, 25, 3) and layer.bias.shape == (4, 1, 3)
    assert layer.weight.abs().max().item() <= bound and layer.bias.abs().max().item() <= bound


def test_critic_ensemble_forward_gives_k_by_batch_equal_to_hand_computation():
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=3, act_dim=2, ensemble_size=4, hidden=(8, 8))
    states, actions = torch.randn(6, 3), torch.randn(6, 2)
    q = critic(states, actions)
    assert q.shape == (4, 6)
    inputs = torch.cat([states, actions], dim=-1)
    for k in range(4):
        torch.testing.assert_close(q[k], hand_ensemble_member(critic.q, inputs, k).squeeze(-1))


def test_critic_ensemble_first_is_member_zero_for_any_leading_shape():
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=3, act_dim=2, ensemble_size=3, hidden=(8, 8))
    states, actions = torch.randn(6, 3), torch.randn(6, 2)
    torch.testing.assert_close(critic.first(states, actions), critic(states, actions)[0])
    # (B, M, .) inputs, as the hyper Q target uses them.
    states3, actions3 = torch.randn(5, 4, 3), torch.randn(5, 4, 2)
    first3 = critic.first(states3, actions3)
    assert first3.shape == (5, 4)
    flat = critic(states3.reshape(20, 3), actions3.reshape(20, 2))[0].view(5, 4)
    torch.testing.assert_close(first3, flat)


def test_one_hot_hyper_q_column_u_is_the_inner_mlp_on_state_and_one_hot_u():
    torch.manual_seed(0)
    hyper = OneHotHyperQ(obs_dim=3, num_components=4, hidden=(8, 8))
    states = torch.randn(5, 3)
    q = hyper(states)
    assert q.shape == (5, 4)
    for u in range(4):
        one_hot = F.one_hot(torch.full((5,), u), 4).float()
        torch.testing.assert_close(q[:, u], hyper.q(torch.cat([states, one_hot], dim=-1)).squeeze(-1))


def test_mlp_is_linear_relu_stack_without_output_activation():
    torch.manual_seed(0)
    net = mlp(3, (4, 5), 2)
    x = torch.randn(6, 3)
    w = [layer for layer in net if isinstance(layer, torch.nn.Linear)]
    expected = torch.relu(torch.relu(x @ w[0].weight.T + w[0].bias) @ w[1].weight.T + w[1].bias) @ w[2].weight.T + w[2].bias
    torch.testing.assert_close(net(x), expected)


# ---- Polyak averaging and the ensemble loss ------------------------------------------------------------


def test_soft_update_is_polyak_average_in_closed_form():
    torch.manual_seed(0)
    online = CriticEnsemble(3, 2, 2, (8, 8)).double()
    target = CriticEnsemble(3, 2, 2, (8, 8)).double().requires_grad_(False)
    old_target = [p.detach().clone() for p in target.parameters()]
    old_online = [p.detach().clone() for p in online.parameters()]
    tau = 0.3
    soft_update(target, online, tau)
    for new, old, src, src_old in zip(target.parameters(), old_target, online.parameters(), old_online):
        torch.testing.assert_close(new, (1 - tau) * old + tau * src, rtol=0, atol=1e-15)
        assert torch.equal(src, src_old)  # the online network is untouched


@pytest.mark.parametrize("tau, expect_online", [(0.0, False), (1.0, True)])
def test_soft_update_endpoints_keep_or_copy_exactly(tau, expect_online):
    torch.manual_seed(0)
    online, target = CriticEnsemble(3, 2, 2, (8,)), CriticEnsemble(3, 2, 2, (8,))
    old_target = [p.detach().clone() for p in target.parameters()]
    soft_update(target, online, tau)
    for new, old, src in zip(target.parameters(), old_target, online.parameters()):
        assert torch.equal(new, src if expect_online else old)


def test_ensemble_mse_is_the_sum_of_member_mses():
    predictions = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    target = torch.tensor([1.5, 0.0, 3.0])
    # member 0: (0.25 + 4 + 0) / 3 ; member 1: (2.25 + 1 + 1) / 3
    expected = (0.25 + 4.0 + 0.0) / 3 + (2.25 + 1.0 + 1.0) / 3
    assert ensemble_mse(predictions, target).item() == pytest.approx(expected, abs=1e-6)


# ---- policies ---------------------------------------------------------------------------------------


def test_gaussian_policy_log_prob_matches_torch_normal():
    torch.manual_seed(0)
    policy = GaussianPolicy(obs_dim=3, act_dim=2, hidden=(8, 8))
    states, actions = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1
    mean, std = policy(states)
    expected = torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)
    torch.testing.assert_close(policy.log_prob(states, actions), expected)
    torch.testing.assert_close(policy.act(states), mean)


def test_gaussian_policy_mean_is_tanh_and_std_is_clamped():
    torch.manual_seed(0)
    policy = GaussianPolicy(obs_dim=3, act_dim=2, hidden=(8,))
    with torch.no_grad():
        policy.net[-1].weight.mul_(1e4)
    states = 10 * torch.randn(32, 3)
    raw_mean, raw_log_std = policy.net(states).split(2, dim=-1)
    mean, std = policy(states)
    torch.testing.assert_close(mean, torch.tanh(raw_mean))
    torch.testing.assert_close(std, raw_log_std.clamp(-5.0, 2.0).exp())
    assert std.min().item() == pytest.approx(math.exp(-5.0)) and std.max().item() == pytest.approx(math.exp(2.0))


def test_deterministic_policy_is_tanh_of_its_mlp():
    torch.manual_seed(0)
    policy = DeterministicPolicy(obs_dim=3, act_dim=2, hidden=(8, 8))
    states = torch.randn(4, 3)
    torch.testing.assert_close(policy.act(states), torch.tanh(policy.net(states)))


# ---- state-independent and tanh-squashed Gaussians, the shared loss pieces -----------------------------


def test_fixed_std_gaussian_log_prob_matches_torch_normal_and_its_std_ignores_the_state():
    torch.manual_seed(0)
    policy = FixedStdGaussianPolicy(obs_dim=3, act_dim=2, hidden=(8,), squash_mean=True, log_std_range=(-5.0, 2.0))
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-0.5, 9.0]))  # the second is clamped to 2
    states, actions = torch.randn(4, 3), torch.rand(4, 2) * 2 - 1
    mean, std = policy(states)
    assert std.shape == (2,) and torch.allclose(std, torch.tensor([math.exp(-0.5), math.exp(2.0)]))
    assert mean.abs().max() < 1  # squashed
    expected = torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)
    torch.testing.assert_close(policy.log_prob(states, actions), expected)


def test_tanh_gaussian_log_prob_includes_the_tanh_jacobian():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(obs_dim=3, act_dim=2, hidden=(8,))
    states = torch.randn(5, 3)
    torch.manual_seed(1)
    actions, log_probs = policy.rsample(states, num_samples=4)
    assert actions.shape == (4, 5, 2) and log_probs.shape == (4, 5) and actions.abs().max() < 1
    mean, std = policy(states)
    squashed = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, std), [torch.distributions.TanhTransform(cache_size=1)])
    torch.manual_seed(1)
    u = mean + std * torch.randn(4, 5, 2)
    torch.testing.assert_close(actions, torch.tanh(u))
    torch.testing.assert_close(log_probs, squashed.log_prob(torch.tanh(u)).sum(-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(policy.act(states), torch.tanh(mean))


def test_expectile_loss_weights_negative_residuals_by_one_minus_tau():
    u = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    weights = [0.3, 0.3, 0.7, 0.7, 0.7]  # tau = 0.7; u = 0 counts as non-negative
    assert expectile_weight(u, 0.7).tolist() == pytest.approx(weights)
    expected = sum(w * x * x for w, x in zip(weights, u.tolist())) / 5
    assert expectile_loss(u, 0.7).item() == pytest.approx(expected)


def test_td_target_and_clipped_exponential_weight_by_hand():
    y = td_target(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([10.0, 10.0]), 0.9)
    assert y.tolist() == pytest.approx([10.0, 2.0])
    assert exp_clip_weight(torch.tensor([0.0, 1.0, 10.0]), 5.0).tolist() == pytest.approx([1.0, math.e, 5.0])


def test_state_value_maps_states_to_one_value_each():
    value = StateValue(obs_dim=3, hidden=(4,))
    assert value(torch.randn(6, 3)).shape == (6,)
