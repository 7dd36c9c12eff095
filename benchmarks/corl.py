"""Throughput of CORL's own TD3+BC, IQL, AWAC and CQL updates, on the synthetic data of benchmarks.throughput.

CORL (github.com/tinkoff-ai/CORL) is the single-file PyTorch reference users know, and our speed target is a
multiple of its update rate on the same machine. This times CORL's code itself, imported from a checkout
(never copied here): for each --algo it loads DIR/algorithms/offline/<file>.py, builds the networks, Adam
optimisers and trainer as that file's train() does with its TrainConfig defaults (--set NAME=VALUE changes a
field, e.g. the hopper-medium-v2 config's iql_deterministic=1 tau=0.001), fills the file's own ReplayBuffer
with the --preset data of benchmarks.throughput (states z-scored by the file's own helpers, as train() does),
and times the loop body of train() without its logging:

    batch = [b.to(device) for b in replay_buffer.sample(batch_size)]; trainer.train(batch)   # AWAC: update

--warmup untimed steps, then --steps timed ones (benchmarks.throughput.time_steps). Each algorithm is one
JSON line on stdout in the format of benchmarks.throughput ("implementation": "corl", "corl_file",
"corl_commit" when DIR is a git checkout, the file's sha256); progress goes to stderr.

CORL's files import d4rl, gym, pyrallis and wandb at the top but use them only inside train() and evaluation
(gym.Env as a type hint, pyrallis.wrap as train()'s decorator). A module that is not installed is replaced by
a stand-in that provides those names and raises if anything else is called.

    git clone https://github.com/tinkoff-ai/CORL
    python -m benchmarks.corl --corl_path CORL --device cpu --threads 2 --steps 200 --warmup 30 --algo td3bc
    python -m benchmarks.corl --corl_path CORL --algo cql --steps 50 --warmup 10

Compare with `python -m benchmarks.throughput --benchmark update --agent NAME` at the same flags, run in turn
with this one, or pass --paired: our agent (its defaults) and CORL's then run in one process in alternating
blocks of --block steps, whose order reverses each round, and the JSON line gives both rates, their ratio and
the median and quartiles of the block-by-block ratio. On a shared or virtual machine whose speed drifts between
runs, the paired ratio is the figure to trust. A third turn in each round replays our update's matrix products
alone (`benchmarks.throughput`'s `products`): `products_over_corl` is how far ours could get past CORL's
update at its arithmetic, were everything else free. CORL's code runs with the heap of --heap, like ours
(default: kept, as train.py runs), so a ratio compares the two codes and not their C library's settings.
--profile prints the top operations of CORL's step (torch's profiler, as `benchmarks.throughput --profile` does
for ours) to stderr.

    python -m benchmarks.corl --corl_path CORL --threads 2 --paired --steps 600 --warmup 30 --algo td3bc

Our comparison (2026-12-03, 2-core AMD EPYC VM) used CORL's files at commits 2b19dd1 (td3_bc.py,
iql.py), 00d356a (awac.py) and 1254f0b (cql.py).
"""

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import importlib.util
import inspect
import math
import statistics
import subprocess
import sys
import types
from functools import cache
from pathlib import Path
from typing import Callable

import torch

# Run as `python -m benchmarks.corl` from anywhere: the project's packages live in the repo root.
from benchmarks.throughput import (PRESETS, Preset, add_heap_flag, apply_heap, emit, machine_info, make_agent,
                                   print_profile, products_step, synthetic_dataset, time_range, time_steps)
from agents.base import Agent
from utils.buffer import Buffer
from utils.errors import UserInputError, exit_status
from utils.runtime import resolve_device
from utils.settings import parse_bool

FILES = {"td3bc": "td3_bc", "iql": "iql", "awac": "awac", "cql": "cql"}  # our agent name -> CORL's file
TRAINERS = {"td3bc": "TD3_BC", "iql": "ImplicitQLearning", "awac": "AdvantageWeightedActorCritic",
            "cql": "ContinuousCQL"}
IMPORTED_AT_TOP = ("d4rl", "gym", "pyrallis", "wandb", "tqdm")  # tqdm: awac.py's trange
MAX_ACTION = 1.0  # the D4RL locomotion tasks' action bound: train() reads env.action_space.high[0]


# ---- loading CORL's files --------------------------------------------------------------------------
def _unavailable(module: str) -> Callable:
    def call(*_args, **_kwargs):
        raise RuntimeError(f"{module} is a stand-in of benchmarks.corl: only the training step is timed")
    return call


def stand_in(name: str) -> types.ModuleType:
    """A module with the names CORL's files touch when imported; anything else it is asked for raises."""
    module = types.ModuleType(name, f"benchmarks.corl's stand-in for {name}, which is not installed")

    def missing(attribute: str):
        if attribute.startswith("__"):  # import machinery and inspect probe for these
            raise AttributeError(attribute)
        return _unavailable(f"{name}.{attribute}")

    module.__getattr__ = missing
    if name == "gym":
        module.Env = type("Env", (), {})  # a type: it appears in Optional[gym.Env] hints
    elif name == "pyrallis":
        module.wrap = lambda *_args, **_kwargs: (lambda function: function)
    return module


def install_stand_ins() -> list[str]:
    missing = [name for name in IMPORTED_AT_TOP if name not in sys.modules and importlib.util.find_spec(name) is None]
    for name in missing:
        sys.modules[name] = stand_in(name)
    return missing


def corl_file(corl_path: Path, algo: str) -> Path:
    if not corl_path.is_dir():
        raise UserInputError(f"--corl_path {corl_path}: no such directory; get CORL with "
                             "`git clone https://github.com/tinkoff-ai/CORL` and pass the clone's path")
    path = corl_path / "algorithms" / "offline" / f"{FILES[algo]}.py"
    if not path.is_file():
        raise UserInputError(f"--corl_path {corl_path}: no algorithms/offline/{path.name} there; "
                             "pass the root of a CORL checkout")
    return path


def load_module(path: Path, algo: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"corl_{FILES[algo]}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # an import CORL needs that is neither installed nor stood in for
        del sys.modules[spec.name]
        raise UserInputError(f"importing {path} failed: {type(error).__name__}: {error}") from None
    for name in ("TrainConfig", "ReplayBuffer", "set_seed", TRAINERS[algo]):
        if not hasattr(module, name):
            raise UserInputError(f"{path} has no {name}: not a CORL version this benchmark knows")
    return module


def git_commit(directory: Path) -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


# ---- CORL's set-up, as each file's train() does it --------------------------------------------------
def configure(module: types.ModuleType, pairs: list[str], device: torch.device, preset_name: str):
    """TrainConfig for the preset's task on `device`, with the --set fields it has (each value converted to the
    type of the field's default)."""
    defaults = module.TrainConfig()
    own = {field.name for field in dataclasses.fields(defaults)}
    changes = {"device": str(device), **{name: preset_name for name in ("env", "env_name") if name in own}}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in own:
            continue
        default = getattr(defaults, name)
        try:
            changes[name] = (parse_bool(text) if isinstance(default, bool) else
                             float(text) if default is None or isinstance(default, float) else type(default)(text))
        except (ValueError, argparse.ArgumentTypeError):
            raise UserInputError(f"--set {pair!r}: {text!r} does not fit {name} = {default!r}") from None
    return module.TrainConfig(**changes)  # not dataclasses.replace: __post_init__ would extend the name again


def check_overrides(pairs: list[str], configs: list) -> None:
    known = {field.name for config in configs for field in dataclasses.fields(config)}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in known or not text:
            raise UserInputError(f"--set {pair!r}: expected NAME=VALUE with NAME a TrainConfig field of a chosen "
                                 "algorithm")


@cache
def preset_data(preset_name: str):
    return synthetic_dataset(preset_name, PRESETS[preset_name])


def fill_buffer(module: types.ModuleType, config, preset: Preset, preset_name: str):
    """The file's ReplayBuffer with the preset's synthetic data, states z-scored as train() does."""
    data = preset_data(preset_name)
    dataset = {"observations": data.observations, "actions": data.actions, "rewards": data.rewards,
               "next_observations": data.next_observations, "terminals": data.terminals}
    if getattr(config, "normalize", True):  # AWAC's train() always normalises and has no field for it
        mean, std = module.compute_mean_std(dataset["observations"], eps=1e-3)
        for key in ("observations", "next_observations"):
            dataset[key] = module.normalize_states(dataset[key], mean, std)
    buffer = module.ReplayBuffer(preset.obs_dim, preset.act_dim, config.buffer_size, config.device)
    with contextlib.redirect_stdout(sys.stderr):  # it prints the dataset size; stdout is for JSON lines
        buffer.load_d4rl_dataset(dataset)
    return buffer


def trainer_kwargs(trainer_class: type, config, **computed) -> dict:
    """train() passes each TrainConfig field under the trainer argument's name, and the rest as computed."""
    names = inspect.signature(trainer_class).parameters
    return {**{name: getattr(config, name) for name in names if hasattr(config, name)}, **computed}


def adam(module: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(module.parameters(), lr=lr)


def build_trainer(algo: str, module: types.ModuleType, config, obs_dim: int, act_dim: int):
    """CORL's networks, optimisers and trainer, as the file's train() builds them."""
    m, c, device = module, config, config.device
    trainer_class = getattr(m, TRAINERS[algo])
    if algo == "td3bc":
        actor = m.Actor(obs_dim, act_dim, MAX_ACTION).to(device)
        critic_1, critic_2 = (m.Critic(obs_dim, act_dim).to(device) for _ in range(2))
        trainer = trainer_class(**trainer_kwargs(
            trainer_class, c, max_action=MAX_ACTION, actor=actor, actor_optimizer=adam(actor, 3e-4),
            critic_1=critic_1, critic_1_optimizer=adam(critic_1, 3e-4), critic_2=critic_2,
            critic_2_optimizer=adam(critic_2, 3e-4), policy_noise=c.policy_noise * MAX_ACTION,
            noise_clip=c.noise_clip * MAX_ACTION))
        return trainer
    if algo == "iql":
        q_network = m.TwinQ(obs_dim, act_dim).to(device)
        v_network = m.ValueFunction(obs_dim).to(device)
        policy = m.DeterministicPolicy if c.iql_deterministic else m.GaussianPolicy
        actor = policy(obs_dim, act_dim, MAX_ACTION, dropout=c.actor_dropout).to(device)
        trainer = trainer_class(**trainer_kwargs(
            trainer_class, c, max_action=MAX_ACTION, actor=actor, actor_optimizer=adam(actor, c.actor_lr),
            q_network=q_network, q_optimizer=adam(q_network, c.qf_lr), v_network=v_network,
            v_optimizer=adam(v_network, c.vf_lr), max_steps=c.max_timesteps))
        return trainer
    if algo == "awac":
        sizes = {"state_dim": obs_dim, "action_dim": act_dim, "hidden_dim": c.hidden_dim}
        actor = m.Actor(**sizes).to(device)
        critic_1, critic_2 = (m.Critic(**sizes).to(device) for _ in range(2))
        trainer = trainer_class(**trainer_kwargs(
            trainer_class, c, actor=actor, actor_optimizer=adam(actor, c.learning_rate), critic_1=critic_1,
            critic_1_optimizer=adam(critic_1, c.learning_rate), critic_2=critic_2,
            critic_2_optimizer=adam(critic_2, c.learning_rate)))
        return trainer
    # cql: train() gives the first critic the config's layer count and leaves the second at the default
    layers = (c.q_n_hidden_layers,) if hasattr(c, "q_n_hidden_layers") else ()
    critic_1 = m.FullyConnectedQFunction(obs_dim, act_dim, c.orthogonal_init, *layers).to(device)
    critic_2 = m.FullyConnectedQFunction(obs_dim, act_dim, c.orthogonal_init).to(device)
    log_std = {"log_std_multiplier": c.policy_log_std_multiplier} if hasattr(c, "policy_log_std_multiplier") else {}
    actor = m.TanhGaussianPolicy(obs_dim, act_dim, MAX_ACTION, orthogonal_init=c.orthogonal_init,
                                 **log_std).to(device)
    trainer = trainer_class(**trainer_kwargs(
        trainer_class, c, critic_1=critic_1, critic_2=critic_2,
        critic_1_optimizer=torch.optim.Adam(list(critic_1.parameters()), c.qf_lr),
        critic_2_optimizer=torch.optim.Adam(list(critic_2.parameters()), c.qf_lr), actor=actor,
        actor_optimizer=torch.optim.Adam(actor.parameters(), c.policy_lr), target_entropy=-act_dim))
    return trainer


def corl_update(algo: str, trainer) -> Callable:
    """The trainer's step on one batch (a list of tensors) -> its log dict: `update` for AWAC, else `train`."""
    return trainer.update if algo == "awac" else trainer.train


# ---- measuring --------------------------------------------------------------------------------------
def json_safe(settings: dict) -> dict:
    """CQL's clip bounds are +-inf, which JSON has no number for."""
    return {key: str(value) if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in settings.items()}


def measure(algo: str, module: types.ModuleType, config, path: Path, args: argparse.Namespace,
            device: torch.device, machine: dict) -> dict:
    preset = PRESETS[args.preset]
    print(f"# corl {algo}: {preset.size:,} synthetic {args.preset} transitions in CORL's ReplayBuffer on {device}",
          file=sys.stderr)
    buffer = fill_buffer(module, config, preset, args.preset)
    # train() seeds before building the networks; AWAC's also passes deterministic_torch (False elsewhere).
    module.set_seed(config.seed, None, deterministic_torch=getattr(config, "deterministic_torch", False))
    update = corl_update(algo, build_trainer(algo, module, config, preset.obs_dim, preset.act_dim))

    def step(_):
        update([b.to(config.device) for b in buffer.sample(config.batch_size)])

    if args.paired:
        measured = paired_summary(*interleave([*ours_update(algo, args.preset, device), step], args, device),
                                  args.block)
    else:
        measured = time_steps(step, args.steps, args.warmup, device)
    if args.profile:
        print_profile(step, device, f"CORL's {algo} update on {args.preset} ({device})")
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"benchmark": "update", "agent": algo, "implementation": "paired" if args.paired else "corl",
            "preset": args.preset, **machine,
            "dataset_size": preset.size, "obs_dim": preset.obs_dim, "act_dim": preset.act_dim,
            "settings": json_safe(dataclasses.asdict(config)),
            "corl_file": f"algorithms/offline/{path.name}", "corl_commit": git_commit(path.parent),
            "corl_file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            **measured, "steps": args.steps, "warmup": args.warmup, "date": stamp}


# ---- paired timing: ours and CORL's in alternating blocks of one process -----------------------------
def ours_update(algo: str, preset_name: str, device: torch.device) -> tuple[Callable[[int], object], ...]:
    """Our agent's update at its defaults, on the same synthetic data, set up as benchmarks.throughput does; and
    its matrix products alone (benchmarks.throughput's `products`), recorded from its first steps."""
    buffer = preset_buffer(preset_name, device)
    agent = our_agent(algo, preset_name, buffer, device, {})
    products, _gflop, _products_per_step = products_step(agent, buffer, 1)
    return (lambda i: agent.update(buffer, i)), products


def preset_buffer(preset_name: str, device: torch.device) -> Buffer:
    """The preset's synthetic data in our Buffer, states z-scored, as benchmarks.throughput trains on it."""
    return Buffer(preset_data(preset_name), device, normalise=True)


def our_agent(algo: str, preset_name: str, buffer: Buffer, device: torch.device, overrides: dict) -> Agent:
    """Our agent at its defaults and `overrides`, seeded as benchmarks.throughput seeds it, pretraining done."""
    agent = make_agent(algo, PRESETS[preset_name], overrides, buffer, device)
    agent.finish_pretraining(buffer)
    return agent


def interleave(steps: list[Callable[[int], object]], args: argparse.Namespace,
               device: torch.device) -> list[list[float]]:
    """Seconds of each --block-step block of each step function, in turns whose order reverses every round, so
    a drift of the machine's speed (this VM's rates move by 30 % between runs) falls on all alike."""
    seconds: list[list[float]] = [[] for _ in steps]
    for i in range(1, args.warmup + 1):
        for step in steps:
            step(i)
    for round_ in range(args.steps // args.block):
        for k in (range(len(steps)) if round_ % 2 == 0 else reversed(range(len(steps)))):
            seconds[k].append(time_range(steps[k], args.warmup + round_ * args.block + 1, args.block, device))
    return seconds


def paired_summary(ours_seconds: list[float], products_seconds: list[float], corl_seconds: list[float],
                   block: int) -> dict:
    """The rates of ours, of our matrix products alone and of CORL's; ours and the products over CORL, over all
    blocks; and the median and quartiles of ours over CORL block by block."""
    ratios = [corl / ours for ours, corl in zip(ours_seconds, corl_seconds)]
    quartiles = statistics.quantiles(ratios, n=4)  # needs two blocks or more: parse_args sees to it

    def rate(seconds: list[float]) -> float:
        return block * len(seconds) / sum(seconds)

    return {"ours_steps_per_s": rate(ours_seconds), "products_steps_per_s": rate(products_seconds),
            "corl_steps_per_s": rate(corl_seconds),
            "ours_over_corl": sum(corl_seconds) / sum(ours_seconds),
            "products_over_corl": sum(corl_seconds) / sum(products_seconds),
            "block_ratio_median": statistics.median(ratios),
            "block_ratio_quartiles": [quartiles[0], quartiles[2]], "block": block,
            "seconds": sum(ours_seconds) + sum(products_seconds) + sum(corl_seconds)}


# ---- command line ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corl_path", type=Path, required=True, help="root of a CORL checkout")
    parser.add_argument("--algo", action="append", choices=tuple(FILES),
                        help="CORL algorithm to time, by our agent's name (repeatable); default: all four")
    parser.add_argument("--preset", default="hopper-medium-v2", choices=tuple(PRESETS),
                        help="dataset shape, as in benchmarks.throughput")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the buffer and networks live; auto: cuda when torch sees a GPU")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per algorithm")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps before the timed ones")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads(N)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="set a TrainConfig field of every chosen algorithm that has it (repeatable)")
    parser.add_argument("--paired", action="store_true",
                        help="also time our agent (its defaults) in blocks alternating with CORL's, in this "
                             "process, and report the ratio (steps = each side's timed steps)")
    parser.add_argument("--block", type=int, default=10, help="steps per block with --paired")
    parser.add_argument("--profile", action="store_true",
                        help="print the top operations of CORL's step to stderr (torch profiler)")
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    add_heap_flag(parser)
    args = parser.parse_args(argv)
    args.algo = args.algo or list(FILES)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--steps and --threads must be at least 1, --warmup at least 0")
    if args.paired and not 1 <= args.block <= args.steps // 2:
        parser.error("--block must be at least 1 and at most half of --steps (the ratio's spread needs two blocks)")
    return args


def compare(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    paths = {algo: corl_file(args.corl_path, algo) for algo in args.algo}
    stood_in = install_stand_ins()
    modules = {algo: load_module(path, algo) for algo, path in paths.items()}
    configs = {algo: configure(modules[algo], args.overrides, device, args.preset) for algo in args.algo}
    check_overrides(args.overrides, list(configs.values()))
    if stood_in:
        print(f"# stand-ins for {', '.join(stood_in)} (not installed)", file=sys.stderr)
    machine = machine_info(device, apply_heap(args.heap))
    for algo in args.algo:
        emit(measure(algo, modules[algo], configs[algo], paths[algo], args, device, machine), args.out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return exit_status(lambda: compare(args))


if __name__ == "__main__":
    sys.exit(main())
