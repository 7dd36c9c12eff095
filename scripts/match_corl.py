"""Runs our TD3+BC, IQL and AWAC updates beside CORL's own code from the same weights, on the same batches and the
same random draws, and reports how far apart their losses and weights end up.

CORL's files are imported from a checkout as `benchmarks.corl` does (never copied here), and built with their
TrainConfig defaults; our agents run at theirs, except IQL, which runs at CORL's choices where the authors' differ
(`update_order=corl`, and `reward_scale=none` since CORL's default leaves rewards raw). CORL's IQL averages its two
critics' losses where ours sums them (as the authors' code does); Adam takes the same steps for a loss of any
scale but for its eps, so CORL's critic optimiser gets eps / 2 here, and its logged loss is doubled. Before step 1,
every network of ours (targets included) is copied into CORL's: a member of our two-critic ensemble into each of
CORL's critics, our policy MLP into its actor. Each step then seeds torch, runs our update (which draws its batch
rows first), seeds again, draws the same rows, and gives CORL's update those rows of our buffer, so both sides
draw the same target and policy noise after them.

The two codes order their float32 operations differently (one batched product for both critics against one each,
a fused Adam against a loop), so their weights part by rounding at first, and training amplifies any difference
over the steps. To tell that from a difference in what they compute, a control runs our agent beside itself with
one rounding added to every weight after every step (each weight moved to the next float32 up or down at
random): a gap no wider than the control's is rounding; a real difference shows as a gap far above it from the
step it first acts.

One JSON line per algorithm on stdout with, at steps 1, 10, 100, 1000, ... and the last, the relative difference
of each loss on that step and the largest relative weight difference over the networks (the norm of the
difference over the norm of the weights, per network), for CORL's code and for the control.

    python -m scripts.match_corl --corl_path CORL --steps 1000
"""

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

# Run as `python -m scripts.match_corl` from the repository root.
from benchmarks.corl import (build_trainer, configure, corl_file, corl_update, install_stand_ins, load_module,
                             our_agent, preset_buffer)
from benchmarks.throughput import PRESETS, parse_overrides
from networks.mlp import EnsembleLinear, EnsembleMLP
from utils.buffer import Buffer
from utils.errors import exit_status

PRESET = "hopper-medium-v2"
CONTROL_SEED = 1
ALGOS = ("td3bc", "iql", "awac")
OUR_SETTINGS = {"iql": {"update_order": "corl", "reward_scale": "none"}}  # CORL's choices, where ours differ
# our metric -> (CORL's, the factor that turns CORL's value into ours), for the losses both log
LOSSES = {"td3bc": {"critic_loss": ("critic_loss", 1.0), "actor_loss": ("actor_loss", 1.0)},
          "iql": {"value_loss": ("value_loss", 1.0), "q_loss": ("q_loss", 2.0),  # CORL: the mean over the critics
                  "actor_loss": ("actor_loss", 1.0)},
          "awac": {"value_loss": ("critic_loss", 1.0), "policy_loss": ("actor_loss", 1.0)}}


def network_pairs(algo: str, agent, trainer) -> dict[str, tuple[nn.Module, int | None, nn.Module]]:
    """name -> (our MLP, ensemble member or None, CORL's nn.Sequential) for every network both sides keep."""
    if algo == "td3bc":
        return {"actor": (agent.actor.net, None, trainer.actor.net),
                "actor_target": (agent.actor_target.net, None, trainer.actor_target.net),
                "critic_1": (agent.critic.q, 0, trainer.critic_1.net),
                "critic_2": (agent.critic.q, 1, trainer.critic_2.net),
                "critic_1_target": (agent.critic_target.q, 0, trainer.critic_1_target.net),
                "critic_2_target": (agent.critic_target.q, 1, trainer.critic_2_target.net)}
    if algo == "iql":
        return {"actor": (agent.actor.net, None, trainer.actor.net.net),
                "value": (agent.value.v, None, trainer.vf.v.net),
                "critic_1": (agent.critic.q, 0, trainer.qf.q1.net),
                "critic_2": (agent.critic.q, 1, trainer.qf.q2.net),
                "critic_1_target": (agent.critic_target.q, 0, trainer.q_target.q1.net),
                "critic_2_target": (agent.critic_target.q, 1, trainer.q_target.q2.net)}
    return {"actor": (agent.policy.net, None, trainer._actor._mlp),
            "critic_1": (agent.critic.q, 0, trainer._critic_1._mlp),
            "critic_2": (agent.critic.q, 1, trainer._critic_2._mlp),
            "critic_1_target": (agent.critic_target.q, 0, trainer._target_critic_1._mlp),
            "critic_2_target": (agent.critic_target.q, 1, trainer._target_critic_2._mlp)}


def log_stds(algo: str, agent, trainer) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(ours, CORL's) state-independent log-std of the policy, for the policies that have one."""
    if algo == "iql":
        return agent.actor.log_std, trainer.actor.log_std
    if algo == "awac":
        return agent.policy.log_std, trainer._actor._log_std
    return None


def layer_weights(ours: nn.Module, member: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Our MLP's (weight, bias) per layer in nn.Linear's layout: (out, in) and (out,)."""
    if isinstance(ours, EnsembleMLP):
        return [(layer.weight[member].T, layer.bias[member, 0]) for layer in ours.net
                if isinstance(layer, EnsembleLinear)]
    return [(layer.weight, layer.bias) for layer in ours if isinstance(layer, nn.Linear)]


def corl_linears(corl: nn.Sequential) -> list[nn.Linear]:
    return [layer for layer in corl if isinstance(layer, nn.Linear)]


@torch.no_grad()
def copy_layers(ours: nn.Module, member: int | None, corl: nn.Sequential) -> None:
    """Our MLP (or one member of our ensemble) into CORL's linear layers, layer by layer."""
    for (weight, bias), linear in zip(layer_weights(ours, member), corl_linears(corl), strict=True):
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)


@torch.no_grad()
def copy_ours_into_corl(algo: str, agent, trainer) -> None:
    for ours, member, corl in network_pairs(algo, agent, trainer).values():
        copy_layers(ours, member, corl)
    if (pair := log_stds(algo, agent, trainer)) is not None:
        pair[1].copy_(pair[0])


def norm_ratio(mine: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    """|mine - theirs| / |mine|, the norms over all the tensors together."""
    difference = sum((a - b).square().sum() for a, b in zip(mine, theirs, strict=True))
    return math.sqrt(difference / sum(a.square().sum() for a in mine))


@torch.no_grad()
def weight_differences(algo: str, agent, trainer) -> dict[str, float]:
    """Per network: the norm of ours - CORL's over the norm of ours, over its weights and biases."""
    differences = {}
    for name, (ours, member, corl) in network_pairs(algo, agent, trainer).items():
        mine = [tensor for pair in layer_weights(ours, member) for tensor in pair]
        theirs = [tensor for linear in corl_linears(corl) for tensor in (linear.weight, linear.bias)]
        differences[name] = norm_ratio(mine, theirs)
    if (pair := log_stds(algo, agent, trainer)) is not None:
        differences["log_std"] = norm_ratio([pair[0]], [pair[1]])
    return differences


def align_loss_scale(algo: str, trainer) -> None:
    """Adam on L / 2 with eps / 2 steps exactly as Adam on L with eps: CORL's IQL critic loss is half of ours."""
    if algo == "iql":
        for group in trainer.q_optimizer.param_groups:
            group["eps"] /= 2


def corl_batch(buffer: Buffer, rows: torch.Tensor) -> list[torch.Tensor]:
    """CORL's batch layout: states, actions, rewards (B, 1), next states, dones (B, 1)."""
    return [buffer.observations[rows], buffer.actions[rows], buffer.rewards[rows, None],
            buffer.next_observations[rows], buffer.terminals[rows, None]]


@torch.no_grad()
def round_off(agent, generator: torch.Generator) -> None:
    """Each weight moved to the next representable number up or down (one rounding), the way drawn from
    `generator`."""
    for tensor in agent.state_dict().values():
        if tensor.is_floating_point():
            up = torch.randint(0, 2, tensor.shape, generator=generator, dtype=torch.bool)
            tensor.copy_(torch.nextafter(tensor, torch.where(up, math.inf, -math.inf).to(tensor)))


@torch.no_grad()
def control_difference(agent, control) -> float:
    """The largest norm ratio (weight_differences) over the agent's networks."""
    return max(norm_ratio(list(mine.state_dict().values()), list(theirs.state_dict().values()))
               for mine, theirs in zip(agent.children(), control.children(), strict=True))


def relative(mine: float, theirs: float) -> float:
    return abs(mine - theirs) / max(abs(mine), 1e-30)


def match(algo: str, corl_path: Path, steps: int, overrides: dict) -> dict:
    device = torch.device("cpu")
    module = load_module(corl_file(corl_path, algo), algo)
    config = configure(module, [], device, PRESET)
    preset = PRESETS[PRESET]
    buffer = preset_buffer(PRESET, device)
    settings = {**OUR_SETTINGS.get(algo, {}), **overrides}
    agent, control = (our_agent(algo, PRESET, buffer, device, settings) for _ in range(2))
    generator = torch.Generator().manual_seed(CONTROL_SEED)
    trainer = build_trainer(algo, module, config, preset.obs_dim, preset.act_dim)
    copy_ours_into_corl(algo, agent, trainer)
    align_loss_scale(algo, trainer)
    update = corl_update(algo, trainer)
    sample, drawn = buffer.sample_td_indices, []

    def sample_and_record(batch_size: int) -> torch.Tensor:
        drawn.append(sample(batch_size))
        return drawn[-1]

    buffer.sample_td_indices = sample_and_record
    report = []
    for step in range(1, steps + 1):
        torch.manual_seed(step)
        ours = agent.update(buffer, step)
        torch.manual_seed(step)
        rows = sample(agent.settings.batch_size)  # the same draw again, for CORL's batch
        assert torch.equal(rows, drawn[-1]), "our update drew its batch rows after another random draw"
        theirs = update(corl_batch(buffer, rows))
        torch.manual_seed(step)
        controls = control.update(buffer, step)
        round_off(control, generator)
        if step == steps or math.log10(step).is_integer():
            report.append({
                "step": step,
                "corl_loss": {name: relative(ours[name].item(), factor * theirs[corl_name])
                              for name, (corl_name, factor) in LOSSES[algo].items() if name in ours},
                "control_loss": {name: relative(ours[name].item(), controls[name].item())
                                 for name in LOSSES[algo] if name in ours},
                "corl_weights": max(weight_differences(algo, agent, trainer).values()),
                "control_weights": control_difference(agent, control)})
    return {"algo": algo, "preset": PRESET, "steps": steps, "our_settings": asdict(agent.settings),
            "relative_differences": report,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def run(args: argparse.Namespace) -> None:
    algos = args.algo or list(ALGOS)
    overrides = parse_overrides(args.overrides, algos)
    install_stand_ins()
    for algo in algos:
        print(json.dumps(match(algo, args.corl_path, args.steps, overrides)), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corl_path", type=Path, required=True, help="root of a CORL checkout")
    parser.add_argument("--algo", action="append", choices=ALGOS, help="algorithm (repeatable); default: all three")
    parser.add_argument("--steps", type=int, default=1000, help="update steps on both sides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="change a setting of ours (repeatable; each agent that has it), to see how a real "
                             "difference shows, e.g. alpha=2.4")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return exit_status(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
