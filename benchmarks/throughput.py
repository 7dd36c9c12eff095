"""Throughput of every agent's training, and of evaluation, on synthetic data with the real D4RL sizes and
dimensions.

For each preset (a D4RL v2 dataset: its size, state and action dimensions, and the released code's per-dataset
K, M, beta, ac_rand, smooth_noise, C for LOM) this builds random data of that shape (standard-normal states,
uniform [-1, 1] actions, normal rewards, 1000-step episodes ending in timeouts), puts it in a Buffer on the
device and, for each agent (--agent, default: every registered one; LOM with the preset's settings, the others
with their defaults), measures in this order:

    pretrain       agent.pretrain_step(buffer), agents that pretrain (LOM's MDN; OneStep's first stage)
    table          agent.finish_pretraining(buffer), timed once (LOM: the frozen MDN at every dataset state)
    update         agent.update(buffer, step): one whole step of the main loop
    products       the dense matrix products of update steps (forward and backward), recorded as they run and
                   then run alone, on the same operands: the update's speed if everything else (autograd, the
                   optimisers, sampling, element-wise work, Python) took no time; with their GFLOP
    lom_value      LOM only: sample_td_indices(256) + value_loss + optimise(critic_optimiser)
    lom_hyper_q    LOM only: sample_indices(1024) + hyper_q_loss + optimise(hyper_q_optimiser)
    lom_policy     LOM only: sample_indices(256) + policy_loss + optimise(policy_optimiser)
    eval_env       once per preset, with the first agent: one evaluation as train.py runs it, --eval_episodes
                   episodes side by side

LOM's three parts add up to about its update (which also does the Polyak update every second step).
Each step measurement runs --warmup untimed steps, then --steps timed ones with time.perf_counter, and
synchronises CUDA before starting and before stopping the clock; it also counts the process's page faults in
the timed steps (memory the C library gave back to the system and maps again: see --heap). eval_env counts env
steps as the sum of the episode lengths (steps_per_s = env_steps_per_s); a sub-env whose episode has ended keeps
stepping until the last one ends, and those steps are in the time but not in the count (see vector_steps).

Every measurement is one JSON line on stdout (and appended to --out FILE); progress goes to stderr.

    python -m benchmarks.throughput --device cpu --preset hopper-medium-v2 --benchmark update --threads 2
    python -m benchmarks.throughput --device cuda --profile --out benchmarks/results.jsonl
    python -m benchmarks.throughput --preset hopper-medium-expert-v2 --agent lom --set K=2 --benchmark update

--set NAME=VALUE overrides a setting of every chosen agent that has it; each line carries the full "settings".
--heap system measures with the C library's default heap instead of the kept heap train.py runs with
(utils.runtime.keep_freed_memory); each line says which it had ("heap").
"""

import argparse
import datetime
import json
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Run as `python -m benchmarks.throughput` from anywhere: the project's packages live in the repo root.
from agents import AGENTS
from agents.base import Agent, optimise
from agents.lom import LOM, LOMSettings
from datasources import scenarios
from utils.buffer import Buffer
from utils.d4rl_tasks import D4RL_TASKS
from utils.dataset import Dataset, transitions_from_arrays
from utils.errors import UserInputError, exit_status
from utils.evaluation import Evaluator, torch_policy
from utils.runtime import keep_freed_memory, resolve_device, seed_everything
from utils.settings import parse_bool

SEED = 0
DISCOUNT = 0.99
EPISODE_LENGTH = 1000
PROFILE_STEPS = 20
PROFILE_ROWS = 15
BENCHMARKS = ("pretrain", "table", "update", "products", "lom_value", "lom_hyper_q", "lom_policy", "eval_env")
RECORDED_STEPS = 2  # update steps recorded for `products`, replayed in turn: a policy step every 2nd step included
MATRIX_PRODUCTS = (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm)


@dataclass(frozen=True)
class Preset:
    """A D4RL dataset's shape and the released code's per-dataset settings for it."""

    env: str  # key of utils.d4rl_tasks.D4RL_TASKS: the evaluation env
    obs_dim: int
    act_dim: int
    size: int
    K: int
    M: int
    beta: float
    ac_rand: float
    smooth_noise: float
    C: float


PRESETS = {
    "halfcheetah-medium-replay-v2": Preset("halfcheetah", 17, 6, 202_000, K=1, M=5, beta=5.0, ac_rand=0.4,
                                           smooth_noise=0.2, C=100.0),
    # The shape of the CORL comparison in docs/performance.md (hopper: 11-dim states, 3-dim actions, 1M rows).
    "hopper-medium-v2": Preset("hopper", 11, 3, 999_998, K=3, M=5, beta=5.0, ac_rand=0.0, smooth_noise=0.2, C=50.0),
    "hopper-medium-expert-v2": Preset("hopper", 11, 3, 1_999_906, K=6, M=2, beta=0.1, ac_rand=0.0,
                                      smooth_noise=0.0, C=50.0),
    "walker2d-full-replay-v2": Preset("walker2d", 17, 6, 1_000_000, K=1, M=10, beta=5.0, ac_rand=0.0,
                                      smooth_noise=0.2, C=50.0),
}


# ---- set-up ----------------------------------------------------------------------------------------
def synthetic_dataset(name: str, preset: Preset) -> Dataset:
    """Random transitions of the preset's shape, in 1000-step episodes that end in timeouts, with a reward set of
    1 % of them (MAHALO's rl_sample scenario) for the agents that learn from two datasets."""
    rng = np.random.default_rng(SEED)
    n = preset.size
    timeouts = np.arange(n) % EPISODE_LENGTH == EPISODE_LENGTH - 1
    task = D4RL_TASKS[preset.env]
    dataset = transitions_from_arrays(
        name,
        observations=rng.standard_normal((n, preset.obs_dim), dtype=np.float32),
        actions=2.0 * rng.random((n, preset.act_dim), dtype=np.float32) - 1.0,
        rewards=rng.standard_normal(n, dtype=np.float32),
        terminals=np.zeros(n, dtype=np.float32),
        timeouts=timeouts,
        eval_env_id=task.eval_env_id,
        eval_env_kwargs=task.eval_env_kwargs,
        score=task.score,
        source=f"synthetic {name}",
    )
    return scenarios.two_datasets(name, {name: dataset}, None, "rl_sample", reward_set_ratio=0.01, seed=SEED,
                                  remove_terminals=True)


def make_agent(name: str, preset: Preset, overrides: dict, buffer: Buffer, device: torch.device) -> Agent:
    """The agent with its default settings (LOM: the preset's), then the --set overrides that it has; its
    networks initialised from SEED, so every measurement of it starts from the same weights."""
    seed_everything(SEED)
    settings_class = AGENTS[name].Settings
    settings = settings_class()
    if settings_class is LOMSettings:
        settings = LOMSettings(num_mixtures=preset.M, K=preset.K, beta=preset.beta, C=preset.C,
                               ac_rand=preset.ac_rand, smooth_noise=preset.smooth_noise)
    own = {field.name for field in fields(settings_class)}
    settings = replace(settings, **{key: value for key, value in overrides.items() if key in own})
    return AGENTS[name](buffer.obs_dim, buffer.act_dim, settings, DISCOUNT).to(device)


def parse_overrides(pairs: list[str], agents: list[str]) -> dict:
    """NAME=VALUE strings -> settings of the chosen agents, each value converted to the type of the field's
    default (the first chosen agent that has NAME decides the type)."""
    known = {}
    for agent in reversed(agents):
        known |= {field.name: field for field in fields(AGENTS[agent].Settings)}
    overrides = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in known or not text:
            raise UserInputError(f"--set {pair!r}: expected NAME=VALUE with NAME a setting of "
                                 f"{', '.join(agents)}: one of {', '.join(sorted(known))}")
        kind, choices = type(known[name].default), known[name].metadata.get("choices")
        try:
            value = parse_bool(text) if kind is bool else kind(text)
        except (ValueError, argparse.ArgumentTypeError):
            raise UserInputError(f"--set {pair!r}: {text!r} is not a {kind.__name__}") from None
        if choices and value not in choices:
            raise UserInputError(f"--set {pair!r}: {name} is one of {', '.join(choices)}")
        overrides[name] = value
    return overrides


def machine_info(device: torch.device, heap: str) -> dict:
    """What every line reports about where it ran."""
    return {
        "device": str(device),
        "heap": heap,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "commit": git_commit(),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


# ---- timing ----------------------------------------------------------------------------------------
def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[int], object], steps: int, warmup: int, device: torch.device) -> dict:
    """`steps` calls of step(i) after `warmup` untimed ones (i counts from 1 like train.py): their rate, seconds
    and page faults a step."""
    for i in range(1, warmup + 1):
        step(i)
    faults = page_faults()
    seconds = time_range(step, warmup + 1, steps, device)
    return {"steps_per_s": steps / seconds, "steps": steps, "warmup": warmup, "seconds": seconds,
            "page_faults_per_step": (page_faults() - faults) / steps}


def page_faults() -> int:
    """The process's minor page faults so far: each is a 4 KiB page mapped afresh, zeroed by the system."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_range(step: Callable[[int], object], first: int, steps: int, device: torch.device) -> float:
    """Seconds for step(first), ..., step(first + steps - 1), the device's queue drained at both ends."""
    synchronise(device)
    start = time.perf_counter()
    for i in range(first, first + steps):
        step(i)
    synchronise(device)
    return time.perf_counter() - start


def time_once(work: Callable[[], object], device: torch.device) -> float:
    synchronise(device)
    start = time.perf_counter()
    work()
    synchronise(device)
    return time.perf_counter() - start


def print_profile(step: Callable[[int], object], device: torch.device, title: str) -> None:
    """The top ops by self time over PROFILE_STEPS steps, to stderr so stdout stays JSON lines."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for i in range(1, PROFILE_STEPS + 1):
            step(i)
        synchronise(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"# profile: {title}, {PROFILE_STEPS} steps, sorted by {sort_by}", file=sys.stderr)
    print(profiler.key_averages().table(sort_by=sort_by, row_limit=PROFILE_ROWS), file=sys.stderr)


class MatrixProducts(TorchDispatchMode):
    """While active, records every dense matrix product that runs, the backward pass's included, with its
    operands; `replay` runs them again and nothing else. Linear layers and matmul reach the dispatcher as these
    four operations."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in MATRIX_PRODUCTS:
            self.calls.append((func, args, kwargs))
        return func(*args, **kwargs)

    def flop(self) -> int:
        """2 m k n per product ((b, m, k) x (b, k, n): 2 b m k n); the bias additions are left out."""
        total = 0
        for _, args, _ in self.calls:
            left, right = [arg for arg in args if isinstance(arg, torch.Tensor)][-2:]  # after addmm's bias
            total += 2 * left.numel() * right.shape[-1]
        return total

    @torch.no_grad()  # the arithmetic alone: no graph, and no complaint about views of since-updated tensors
    def replay(self) -> None:
        for func, args, kwargs in self.calls:
            func(*args, **kwargs)


def products_step(agent: Agent, buffer: Buffer, first_step: int) -> tuple[Callable[[int], object], float, float]:
    """Records the products of update steps first_step, ..., first_step + RECORDED_STEPS - 1, one recording each;
    returns a step function that replays, for step i, the recording of the step whose index matches i modulo
    RECORDED_STEPS, and the GFLOP of an average step."""
    recordings = {}
    for i in range(first_step, first_step + RECORDED_STEPS):
        with MatrixProducts() as recordings[i % RECORDED_STEPS]:
            agent.update(buffer, i)
    gflop = sum(recording.flop() for recording in recordings.values()) / RECORDED_STEPS / 1e9
    products_per_step = sum(len(recording.calls) for recording in recordings.values()) / RECORDED_STEPS
    return (lambda i: recordings[i % RECORDED_STEPS].replay()), gflop, products_per_step


def matrix_products_alone(agent: Agent, buffer: Buffer, steps: int, warmup: int, device: torch.device) -> dict:
    step, gflop, products_per_step = products_step(agent, buffer, warmup + 1)
    timing = time_steps(step, steps, warmup, device)
    return {**timing, "products_per_step": products_per_step, "gflop_per_step": gflop,
            "gflop_per_s": gflop * timing["steps_per_s"]}


# ---- what is measured ------------------------------------------------------------------------------
def lom_parts(agent: LOM, buffer: Buffer) -> dict[str, Callable[[int], object]]:
    """Each of the three parts of LOM's main-loop step alone, as functions of the step index."""
    s = agent.settings

    def value(_):
        optimise(agent.critic_optimiser, agent.value_loss(buffer, buffer.sample_td_indices(s.value_batch_size)))

    def hyper_q(_):
        optimise(agent.hyper_q_optimiser, agent.hyper_q_loss(buffer, buffer.sample_indices(s.hyper_batch_size)))

    def policy(_):
        loss, _metrics = agent.policy_loss(buffer, buffer.sample_indices(s.policy_batch_size))
        optimise(agent.policy_optimiser, loss)

    return {"lom_value": value, "lom_hyper_q": hyper_q, "lom_policy": policy}


def evaluation_throughput(agent: Agent, buffer: Buffer, dataset: Dataset, episodes: int) -> dict:
    """One evaluation as in training; the policy is called once per vector step, which counts them."""
    evaluator = Evaluator(dataset, episodes, SEED)
    policy = torch_policy(agent.act, buffer.normaliser, buffer.device)
    vector_steps = 0

    def counted_policy(observations: np.ndarray) -> np.ndarray:
        nonlocal vector_steps
        vector_steps += 1
        return policy(observations)

    try:
        start = time.perf_counter()
        result = evaluator(counted_policy)
        seconds = time.perf_counter() - start
    finally:
        evaluator.close()
    env_steps = int(round(result["eval/episode_length"] * episodes))
    return {"steps_per_s": env_steps / seconds, "env_steps_per_s": env_steps / seconds,
            "step_unit": "env step (sum of episode lengths)", "steps": env_steps, "warmup": 0,
            "seconds": seconds, "episodes": episodes, "vector_steps": vector_steps,
            "mean_episode_length": result["eval/episode_length"]}


def run_preset(name: str, args: argparse.Namespace, device: torch.device, machine: dict) -> Iterator[dict]:
    """Yields one record per measurement of one preset, agent by agent."""
    preset = PRESETS[name]
    print(f"# {name}: building {preset.size:,} synthetic transitions on {device}", file=sys.stderr)
    dataset = synthetic_dataset(name, preset)
    buffer = Buffer(dataset, device, normalise=True)
    for position, agent_name in enumerate(args.agent):
        agent = make_agent(agent_name, preset, args.overrides, buffer, device)
        yield from measure_agent(agent_name, agent, preset, name, buffer, args, device, machine)
        if position == 0 and "eval_env" in args.benchmark:
            yield record_of("eval_env", agent_name, agent, preset, name, machine,
                            evaluation_throughput(agent, buffer, dataset, args.eval_episodes))


def record_of(benchmark: str, agent_name: str, agent: Agent, preset: Preset, preset_name: str, machine: dict,
              measured: dict) -> dict:
    """One JSON line: what was measured, on what, where and when."""
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"benchmark": benchmark, "agent": agent_name, "preset": preset_name, **machine,
            "dataset_size": preset.size, "obs_dim": preset.obs_dim, "act_dim": preset.act_dim,
            "settings": asdict(agent.settings), **measured, "date": stamp}


def measure_agent(agent_name: str, agent: Agent, preset: Preset, preset_name: str, buffer: Buffer,
                  args: argparse.Namespace, device: torch.device, machine: dict) -> Iterator[dict]:
    def step_record(benchmark: str, step: Callable[[int], object]) -> dict:
        return record_of(benchmark, agent_name, agent, preset, preset_name, machine,
                         time_steps(step, args.steps, args.warmup, device))

    print(f"# {preset_name}: {agent_name}", file=sys.stderr)
    # Pretraining happens only before finish_pretraining freezes its result.
    if "pretrain" in args.benchmark and agent.pretrain_steps > 0:
        agent.start_pretraining(buffer)
        yield step_record("pretrain", lambda _: agent.pretrain_step(buffer))
    seconds = time_once(lambda: agent.finish_pretraining(buffer), device)
    if "table" in args.benchmark and agent.pretrain_steps > 0:
        yield record_of("table", agent_name, agent, preset, preset_name, machine,
                        {"seconds": seconds, "steps_per_s": None, "steps": 1, "warmup": 0, "rows": buffer.size})
    if "update" in args.benchmark:
        yield step_record("update", lambda i: agent.update(buffer, i))
        if args.profile:
            print_profile(lambda i: agent.update(buffer, i), device, f"{agent_name} update on {preset_name} ({device})")
    if "products" in args.benchmark:
        yield record_of("products", agent_name, agent, preset, preset_name, machine,
                        matrix_products_alone(agent, buffer, args.steps, args.warmup, device))
    if isinstance(agent, LOM):
        for benchmark, step in lom_parts(agent, buffer).items():
            if benchmark in args.benchmark:
                yield step_record(benchmark, step)


# ---- command line ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", choices=tuple(PRESETS),
                        help="dataset to mimic (repeatable); default: all of them")
    parser.add_argument("--agent", action="append", choices=tuple(AGENTS),
                        help="agent to measure (repeatable); default: every registered one")
    parser.add_argument("--benchmark", action="append", choices=BENCHMARKS,
                        help="measurement to run (repeatable); default: all")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the data and networks live; auto: cuda when torch sees a GPU")
    parser.add_argument("--steps", type=int, default=500, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps before each measurement")
    parser.add_argument("--eval_episodes", type=int, default=10, help="episodes side by side in eval_env")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a setting of every chosen agent that has it (repeatable), e.g. K=2")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N); default: torch's")
    parser.add_argument("--profile", action="store_true",
                        help=f"after each update measurement, profile {PROFILE_STEPS} steps; top {PROFILE_ROWS} ops "
                             "to stderr")
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    add_heap_flag(parser)
    args = parser.parse_args(argv)
    args.preset = args.preset or list(PRESETS)
    args.benchmark = args.benchmark or list(BENCHMARKS)
    args.agent = args.agent or list(AGENTS)
    for flag in ("steps", "eval_episodes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if args.warmup < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--warmup must be at least 0 and --threads at least 1")
    return args


def add_heap_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heap", default="kept", choices=("kept", "system"),
                        help="kept: freed memory stays in the process for reuse, as in train.py (glibc only; "
                             "elsewhere it is the system's); system: the C library's default")


def apply_heap(choice: str) -> str:
    """The heap the measurements run with, by --heap: "kept" where keep_freed_memory applies, else "system"."""
    return "kept" if choice == "kept" and keep_freed_memory() else "system"


def emit(line: dict, out: Path | None) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        with out.open("a") as file:
            file.write(text + "\n")


def measure(args: argparse.Namespace) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.overrides = parse_overrides(args.overrides, args.agent)
    machine = machine_info(device, apply_heap(args.heap))
    for name in args.preset:
        for line in run_preset(name, args, device, machine):
            emit(line, args.out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return exit_status(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
