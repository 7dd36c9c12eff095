"""scripts/match_corl.py's pieces that do not need CORL's code: the weight mapping, the control's rounding, the
loss-scale alignment of Adam, and its refusal of a missing checkout."""

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from networks.mlp import EnsembleMLP, mlp
from scripts.match_corl import align_loss_scale, copy_layers, norm_ratio, round_off

REPO = Path(__file__).resolve().parent.parent


def test_each_member_of_our_ensemble_copied_into_linear_layers_computes_what_it_computes():
    torch.manual_seed(0)
    ensemble, inputs = EnsembleMLP(2, 14, (32, 32), 1), torch.randn(64, 14)
    for member in (0, 1):
        corl = mlp(14, (32, 32), 1)  # nn.Linear and nn.ReLU layers, as CORL writes its networks
        copy_layers(ensemble, member, corl)
        torch.testing.assert_close(corl(inputs), ensemble.member(inputs, member), rtol=0, atol=1e-6)
    policy, corl = mlp(11, (32, 32), 3), mlp(11, (32, 32), 3)
    copy_layers(policy, None, corl)
    assert torch.equal(corl(inputs[:, :11]), policy(inputs[:, :11]))


def test_the_control_moves_every_weight_to_the_next_float32_up_or_down():
    torch.manual_seed(0)
    network = mlp(4, (8,), 2)
    before = torch.cat([value.flatten() for value in network.state_dict().values()])
    round_off(network, torch.Generator().manual_seed(1))
    after = torch.cat([value.flatten() for value in network.state_dict().values()])
    up = after == torch.nextafter(before, torch.tensor(1e30))
    down = after == torch.nextafter(before, torch.tensor(-1e30))
    assert bool((up | down).all()) and 0 < int(up.sum()) < len(before)


def test_norm_ratio_is_the_norm_of_the_difference_over_the_norm_of_the_first():
    mine, theirs = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])], [torch.tensor([3.0, 1.0]), torch.tensor([2.0])]
    assert norm_ratio(mine, theirs) == pytest.approx((1.0 + 4.0) ** 0.5 / 5.0, rel=1e-6)


def test_adam_on_half_the_loss_with_half_its_eps_takes_the_same_steps():
    """Why CORL's IQL critic optimiser gets eps / 2: its loss is the mean of the two critics' where ours is the
    sum. Gradients near eps make the difference visible, and halving is exact in binary floating point."""
    torch.manual_seed(0)
    start, gradients = torch.randn(50), [torch.randn(50) * 1e-8 for _ in range(5)]
    ours, corls = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    ours_adam = torch.optim.Adam([ours], lr=3e-4)
    trainer = types.SimpleNamespace(q_optimizer=torch.optim.Adam([corls], lr=3e-4))
    unaligned = nn.Parameter(start.clone())
    unaligned_adam = torch.optim.Adam([unaligned], lr=3e-4)
    align_loss_scale("iql", trainer)
    for gradient in gradients:
        ours.grad, corls.grad, unaligned.grad = gradient, gradient / 2, gradient / 2
        for optimiser in (ours_adam, trainer.q_optimizer, unaligned_adam):
            optimiser.step()
    assert torch.equal(ours, corls)
    assert not torch.allclose(ours, unaligned, rtol=0, atol=1e-6)  # without the alignment, eps tells them apart


def test_a_missing_corl_checkout_is_refused_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "scripts.match_corl", "--corl_path", str(tmp_path / "none")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "no such directory" in result.stderr
