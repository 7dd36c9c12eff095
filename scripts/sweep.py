"""A grid of train.py runs, datasets x agents x seeds (x scenarios) with per-agent settings, run here or on SLURM.

    python -m scripts.sweep --datasets toy-multimodal --agents lom,bc --seeds 0,1 --root runs/toy --dry_run
    python -m scripts.sweep --file configs/sweeps/quick_cpu.yaml --launcher local --jobs 2
    python -m scripts.sweep --file configs/sweeps/table1.yaml --launcher slurm --partition gpu --time 600

Each run's directory is a pure function of its dataset, agent, seed and settings, and its command names it with
--run_dir, so the same sweep launched again skips the finished runs and continues the unfinished ones. The sweep
file, the directories, the launchers and pre-emption: docs/sweeps.md.
"""

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from agents import AGENTS
from datasources import is_known_name, unknown_name_message
from trainer.config import (NOT_COMPARED, RUN_NAMES, FlagParser, changed_settings, chosen_agent, parse_config,
                            read_yaml, saved_config)
from trainer.loop import StopRequests
from utils.errors import UserInputError
from utils.settings import NO_SCENARIO, SCENARIOS, WITHOUT_REWARD_SET_ACTIONS, Config, RunSettings, coerce

REPO = Path(__file__).resolve().parent.parent
SWEEP_OWNED = ("env_name", "agent", "seed", "scenario", "run_dir", "resume")  # the grid sets these for each run
LIST_KEYS = ("datasets", "agents", "seeds")  # required; `scenarios` is an optional fourth axis
SCENARIO_CHOICES = (NO_SCENARIO, *SCENARIOS)
SLURM_KEYS = ("partition", "time", "gpus", "cpus", "mem", "array_parallelism", "runs_per_job", "sbatch")
FILE_KEYS = (*LIST_KEYS, "scenarios", "set", "root", "launcher", "jobs", "max_runs", *SLURM_KEYS)
DEFAULTS = {"jobs": 1, "max_runs": 1000, "time": 1440, "gpus": 1, "array_parallelism": 256, "runs_per_job": 1}
STOPPED_BY_SIGNAL = (128 + signal.SIGTERM, 128 + signal.SIGINT)  # train.py's exit status when signalled
POLL_S = 0.2  # how often the local launcher looks for runs that ended


@dataclass(frozen=True)
class Override:
    """One `--set` (or sweep-file `set:`) entry: for one agent, or for every agent that has the setting (None)."""
    agent: str | None
    key: str
    value: object
    source: str  # where it was written, to name it in an error


@dataclass
class SlurmOptions:
    partition: str | None = None
    time: int = DEFAULTS["time"]
    gpus: int = DEFAULTS["gpus"]
    cpus: int | None = None
    mem: float | None = None
    array_parallelism: int = DEFAULTS["array_parallelism"]
    runs_per_job: int = DEFAULTS["runs_per_job"]
    sbatch: dict = field(default_factory=dict)


@dataclass
class Sweep:
    datasets: list[str]
    agents: list[str]
    seeds: list[int]
    scenarios: list[str]  # ["none"] unless the sweep splits the data (MAHALO's scenarios)
    overrides: list[Override]
    root: Path
    launcher: str | None
    jobs: int
    max_runs: int
    dry_run: bool
    slurm: SlurmOptions


@dataclass(frozen=True)
class Run:
    label: str
    directory: Path
    command: tuple[str, ...]


# ---- the sweep: flags over the sweep file -------------------------------------------------------------------


class SweepParser(FlagParser):
    """train.py's flag parser (bad flags are one-line errors, no abbreviations), pointing at this script's help."""

    def error(self, message: str):
        raise UserInputError(f"{message} (see python -m scripts.sweep --help)")


def build_parser() -> SweepParser:
    # No defaults here: a flag given overrides the sweep file, one not given leaves the file's value.
    parser = SweepParser(prog="python -m scripts.sweep", description=__doc__.splitlines()[0],
                         epilog="The sweep file's format and the run directories: docs/sweeps.md.")
    parser.add_argument("--file", help="a YAML sweep file; the flags given override it")
    parser.add_argument("--datasets", help="comma-separated dataset names")
    parser.add_argument("--agents", help=f"comma-separated agents ({', '.join(AGENTS)})")
    parser.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--scenarios", help=f"comma-separated --scenario values ({', '.join(SCENARIO_CHOICES)}), "
                        "an axis of the grid for the agents that learn from two datasets (default: none)")
    parser.add_argument("--set", action="append", metavar="[AGENT:]KEY=VALUE",
                        help="a setting for every agent that has it (a run setting: for all), or with AGENT: for "
                             "that agent only; repeatable")
    parser.add_argument("--root", help="the folder that receives the run directories")
    parser.add_argument("--launcher", choices=("local", "slurm"), help="where the runs go")
    parser.add_argument("--jobs", help=f"local: runs at a time (default {DEFAULTS['jobs']})")
    parser.add_argument("--dry_run", action="store_true", help="list the runs and their state; launch nothing")
    parser.add_argument("--max_runs", help=f"the largest grid that goes ahead (default {DEFAULTS['max_runs']})")
    slurm = parser.add_argument_group("slurm launcher")
    slurm.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    slurm.add_argument("--time", help=f"time limit of a job in minutes (default {DEFAULTS['time']})")
    slurm.add_argument("--gpus", help=f"GPUs per job (default {DEFAULTS['gpus']})")
    slurm.add_argument("--cpus", help="CPUs per job (default: the cluster's)")
    slurm.add_argument("--mem", help="memory per job in GB (default: the cluster's)")
    slurm.add_argument("--array_parallelism", help=f"jobs running at once (default {DEFAULTS['array_parallelism']})")
    slurm.add_argument("--sbatch", action="append", metavar="KEY=VALUE", help="another sbatch option; repeatable")
    slurm.add_argument("--runs_per_job", help=f"runs one after another in each job (default "
                                              f"{DEFAULTS['runs_per_job']})")
    return parser


def read_sweep(argv: list[str] | None) -> Sweep:
    """The sweep the flags and the sweep file describe, every entry checked; raises UserInputError."""
    args = build_parser().parse_args(argv)
    in_file = sweep_file(args.file) if args.file else {}
    values, sources = merged_values(vars(args), in_file, args.file)
    agents = checked_agents(values["agents"], sources["agents"])
    overrides = file_overrides(in_file.get("set"), args.file) + flag_overrides(args.set or [])
    sbatch = {**file_pairs(in_file.get("sbatch"), f"{args.file}: sbatch"), **flag_pairs(args.sbatch or [], "--sbatch")}
    return Sweep(datasets=checked_datasets(values["datasets"], sources["datasets"]), agents=agents,
                 seeds=checked_seeds(values["seeds"], sources["seeds"]),
                 scenarios=checked_scenarios(values.get("scenarios", "none"), sources.get("scenarios", "--scenarios")),
                 overrides=checked_overrides(overrides, agents), root=checked_root(values["root"], sources["root"]),
                 launcher=checked_launcher(values.get("launcher"), sources.get("launcher"), args.dry_run),
                 jobs=whole_number(values["jobs"], sources["jobs"], 1),
                 max_runs=whole_number(values["max_runs"], sources["max_runs"], 1), dry_run=args.dry_run,
                 slurm=slurm_options(values, sources, sbatch))


def merged_values(flags: dict, in_file: dict, path: str | None) -> tuple[dict, dict]:
    """The flags given over the sweep file over the defaults (`set` and `sbatch` aside, which merge by key), and
    where each value came from, to name it in an error."""
    given = {key: value for key, value in flags.items()
             if value is not None and key not in ("file", "set", "sbatch", "dry_run")}
    from_file = {key: value for key, value in in_file.items() if key not in ("set", "sbatch", *given)}
    values = {**DEFAULTS, **from_file, **given}
    sources = {key: f"--{key}" for key in values} | {key: f"{path}: {key}" for key in from_file}
    for key in (*LIST_KEYS, "root"):
        if key not in values:
            raise UserInputError(f"give --{key} (or {key}: in the sweep file)")
    return values, sources


def sweep_file(path: str) -> dict:
    if not Path(path).is_file():
        raise UserInputError(f"--file {path}: no such file")
    values = read_yaml(Path(path), path)
    unknown = [key for key in values if key not in FILE_KEYS]
    if unknown:
        raise UserInputError(f"{path}: {unknown[0]!r} is not a sweep-file key; the keys are {', '.join(FILE_KEYS)}")
    return values


def entries(value, source: str) -> list[str]:
    """A list from a flag's comma-separated text or a sweep file's YAML list, with no empty entry."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise UserInputError(f"{source}: expected a comma-separated list or a YAML list, got {value!r}")
    texts = [str(item).strip() for item in items]
    if "" in texts:
        raise UserInputError(f"{source}: an empty entry in {value!r}")
    return texts


def unique(items: list, source: str) -> list:
    """The items, each once: a repeated dataset, agent or seed would be two writers of one run directory."""
    repeated = [item for index, item in enumerate(items) if item in items[:index]]
    if repeated:
        raise UserInputError(f"{source}: {repeated[0]} is listed twice")
    return items


def checked_datasets(value, source: str) -> list[str]:
    names = unique(entries(value, source), source)
    for name in names:
        if not is_known_name(name):
            raise UserInputError(f"{source}: {unknown_name_message(name)}")
    return names


def checked_agents(value, source: str) -> list[str]:
    return unique([registered_agent(name, source) for name in entries(value, source)], source)


def registered_agent(name: str, source: str) -> str:
    try:
        return chosen_agent(name)
    except UserInputError as error:
        raise UserInputError(f"{source}: {error}") from None


def checked_seeds(value, source: str) -> list[int]:
    texts = entries(value, source)
    bad = [text for text in texts if not text.isdigit()]
    if bad:
        raise UserInputError(f"{source}: {bad[0]!r} is not a seed (a whole number, 0 or more)")
    return unique([int(text) for text in texts], source)


def checked_scenarios(value, source: str) -> list[str]:
    names = unique(entries(value, source), source)
    bad = [name for name in names if name not in SCENARIO_CHOICES]
    if bad:
        raise UserInputError(f"{source}: {bad[0]!r} is not a scenario; choose from {', '.join(SCENARIO_CHOICES)}")
    return names


def checked_root(value, source: str) -> Path:
    root = Path(str(value)).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise UserInputError(f"{source}: {root} is a file, not a folder")
    return root


def checked_launcher(value, source: str | None, dry_run: bool) -> str | None:
    if value is None and not dry_run:
        raise UserInputError("give --launcher local or --launcher slurm (or launcher: in the sweep file), or "
                             "--dry_run to list the runs")
    if value not in (None, "local", "slurm"):
        raise UserInputError(f"{source}: expected local or slurm, got {value!r}")
    return value


def whole_number(value, source: str, minimum: int) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < minimum:
        raise UserInputError(f"{source} must be a whole number of at least {minimum}, got {value!r}")
    return int(text)


def positive_number(value, source: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if isinstance(value, bool) or not number > 0:
        raise UserInputError(f"{source} must be a number greater than 0, got {value!r}")
    return number


def slurm_options(values: dict, sources: dict, sbatch: dict) -> SlurmOptions:
    """The SLURM launcher's options, checked whichever launcher runs, so that a sweep file is valid for both."""
    def number(key: str, minimum: int) -> int:
        return whole_number(values[key], sources[key], minimum)

    given = {key for key in SLURM_KEYS if values.get(key) is not None}
    return SlurmOptions(partition=str(values["partition"]) if "partition" in given else None,
                        time=number("time", 1), gpus=number("gpus", 0),
                        cpus=number("cpus", 1) if "cpus" in given else None,
                        mem=positive_number(values["mem"], sources["mem"]) if "mem" in given else None,
                        array_parallelism=number("array_parallelism", 1), runs_per_job=number("runs_per_job", 1),
                        sbatch=sbatch)


def split_pair(text: str, source: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise UserInputError(f"{source} {text}: expected KEY=VALUE")
    return name.strip(), value


def flag_pairs(texts: list[str], flag: str) -> dict:
    return dict(split_pair(text, flag) for text in texts)


def file_pairs(mapping, source: str) -> dict:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise UserInputError(f"{source}: expected a mapping of KEY: VALUE, got {mapping!r}")
    return {str(key): value for key, value in mapping.items()}


# ---- settings for each agent ---------------------------------------------------------------------------------


def flag_overrides(texts: list[str]) -> list[Override]:
    """`--set KEY=VALUE` (every agent that has KEY) and `--set AGENT:KEY=VALUE` (that agent only)."""
    overrides = []
    for text in texts:
        source = f"--set {text}"
        name, value = split_pair(text, "--set")
        agent, colon, key = name.rpartition(":")
        overrides.append(Override(registered_agent(agent, source) if colon else None, key, value, source))
    return overrides


def file_overrides(mapping, path: str | None) -> list[Override]:
    """A sweep file's `set:`: `KEY: VALUE` for every agent that has KEY, `AGENT: {KEY: VALUE}` for that agent."""
    overrides = []
    for name, value in file_pairs(mapping, f"{path}: set").items():
        if isinstance(value, dict):
            agent = registered_agent(name, f"{path}: set")
            overrides += [Override(agent, str(key), item, f"{path}: set: {name}") for key, item in value.items()]
        else:
            overrides.append(Override(None, name, value, f"{path}: set"))
    return overrides


def checked_overrides(overrides: list[Override], agents: list[str]) -> list[Override]:
    """Every key names a setting of the run or of the agent it is for; for the same agent and key, the last
    one wins (the flags come after the sweep file)."""
    for override in overrides:
        if override.key in SWEEP_OWNED:
            raise UserInputError(f"{override.source}: {override.key} is set by the sweep itself, from --datasets, "
                                 "--agents, --seeds, --scenarios and the run directory")
        if override.agent is not None and override.key not in setting_names(override.agent):
            raise UserInputError(f"{override.source}: {override.key!r} is not a setting of the run or of agent "
                                 f"{override.agent}; see python train.py --agent {override.agent} --help")
        if override.agent is None and not any(override.key in setting_names(agent) for agent in agents):
            raise UserInputError(f"{override.source}: {override.key!r} is not a setting of the run or of any agent "
                                 f"of the sweep ({', '.join(agents)}); see python train.py --agent NAME --help")
    return list({(override.agent, override.key): override for override in overrides}.values())


def setting_names(agent: str) -> set[str]:
    return RUN_NAMES | {setting.name for setting in fields(AGENTS[agent].Settings)}


def settings_for(agent: str, overrides: list[Override]) -> dict:
    """The settings this agent's runs get, typed as train.py reads them: those given for every agent that it
    has, then those given for it alone, which win."""
    chosen = {o.key: o for o in overrides if o.agent is None and o.key in setting_names(agent)}
    chosen |= {o.key: o for o in overrides if o.agent == agent}
    return {key: typed_value(agent, override) for key, override in sorted(chosen.items())}


def typed_value(agent: str, override: Override):
    """The value as the setting's type, so that `1e-4` and `0.0001`, or `true` and `1`, are the same run."""
    settings_class = RunSettings if override.key in RUN_NAMES else AGENTS[agent].Settings
    value = coerce(settings_class, {override.key: override.value}, override.source)[override.key]
    if value is None:
        raise UserInputError(f"{override.source}: {override.key} needs a value")
    return value


def flag_text(value) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


# ---- the runs --------------------------------------------------------------------------------------------------


def plan_runs(sweep: Sweep) -> list[Run]:
    """Every run of the grid, each command checked by train.py's own parser before anything is launched."""
    cells = sum(not refuses(agent, scenario) for scenario in sweep.scenarios for agent in sweep.agents)
    size = len(sweep.datasets) * cells * len(sweep.seeds)
    if size > sweep.max_runs:
        raise UserInputError(f"the sweep has {size} runs, more than --max_runs {sweep.max_runs}; give --max_runs "
                             f"{size} to go ahead")
    settings = {agent: settings_for(agent, sweep.overrides) for agent in sweep.agents}
    runs = [grid_run(sweep.root, dataset, scenario, agent, seed, settings[agent])
            for dataset in sweep.datasets for scenario in sweep.scenarios for agent in sweep.agents
            if not refuses(agent, scenario) for seed in sweep.seeds]
    for run in runs:
        try:
            check_existing_run(run, parse_config(list(run.command[2:])))
        except UserInputError as error:
            raise UserInputError(f"{run.label}: {error}") from None
    return runs


def check_existing_run(run: Run, config: Config) -> None:
    """A run already in the grid's folder for this cell must have been started with the settings the grid gives it
    now. The folder's name holds only the sweep's own settings, so a default or a configs/ file that changed since
    would otherwise pass unseen: the finished run would be skipped and its score mixed with the new runs'."""
    if not (run.directory / "config.json").exists():
        return
    started, now = changed_settings(saved_config(run.directory).to_dict(), config.to_dict())
    if started:
        raise UserInputError(f"{run.directory} holds a run started with {started}, but the sweep now gives it {now} "
                             "(a default or a configs/ file changed since it ran); move that folder away to run it "
                             "again, or give another --root")


def refuses(agent: str, scenario: str) -> bool:
    """Whether the agent cannot learn in this scenario (it reads the reward set's actions, which it removes): such
    cells of the grid are left out, and said so."""
    return scenario in WITHOUT_REWARD_SET_ACTIONS and bool(AGENTS[agent].Settings.needs_reward_set_actions)


def left_out(sweep: Sweep) -> list[str]:
    return [f"left out: {agent} in {scenario}, which removes the reward set's actions: {agent} "
            f"{AGENTS[agent].Settings.needs_reward_set_actions}"
            for scenario in sweep.scenarios for agent in sweep.agents if refuses(agent, scenario)]


def grid_run(root: Path, dataset: str, scenario: str, agent: str, seed: int, settings: dict) -> Run:
    directory = run_directory(root, dataset, scenario, agent, seed, settings)
    flags = [text for key, value in settings.items() for text in (f"--{key}", flag_text(value))]
    if scenario != NO_SCENARIO:
        flags += ["--scenario", scenario]
    data = dataset if scenario == NO_SCENARIO else f"{dataset} {scenario}"
    command = (sys.executable, "train.py", "--env_name", dataset, "--agent", agent, "--seed", str(seed),
               "--run_dir", str(directory), *flags)
    return Run(f"{data} {agent} seed {seed}", directory, command)


def run_directory(root: Path, dataset: str, scenario: str, agent: str, seed: int, settings: dict) -> Path:
    """ROOT/<dataset, / as +>[_<scenario>]/<agent>[_<hash of its settings>]/seed<S>. The settings that train.py
    lets a run change when it continues (the device) leave the name alone, so the run continues on another
    machine."""
    learned = {key: value for key, value in settings.items() if key not in NOT_COMPARED}
    name = f"{agent}_{settings_hash(learned)}" if learned else agent
    data = dataset.replace("/", "+") + ("" if scenario == NO_SCENARIO else f"_{scenario}")
    return root / data / name / f"seed{seed}"


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def run_status(run: Run) -> str:
    if (run.directory / "summary.json").exists():
        return "finished"
    return "unfinished" if (run.directory / "config.json").exists() else "new"


def print_plan(runs: list[Run]) -> None:
    states = [run_status(run) for run in runs]
    for run, state in zip(runs, states):
        print(f"{state:<10} {run.directory}  {shlex.join(run.command)}")
    print(f"{len(runs)} runs: {states.count('finished')} finished (skipped when launched), "
          f"{states.count('unfinished')} unfinished (continued), {states.count('new')} new; dry run, nothing launched")


def runs_to_launch(runs: list[Run]) -> list[Run]:
    """The runs without a summary.json; the finished ones are reported as skipped."""
    waiting = []
    for run in runs:
        if run_status(run) == "finished":
            print(f"skipped (finished): {run.directory}")
        else:
            waiting.append(run)
    return waiting


# ---- the local launcher --------------------------------------------------------------------------------------


def launch_locally(runs: list[Run], jobs: int) -> int:
    """The runs on this machine, `jobs` at a time; one line per run as it ends. A signal to the sweep starts no
    further run and goes on to the running ones, so each train.py checkpoints and exits. Exit status: 0, 1 when a
    run failed, 128 + N when signal N stopped the sweep."""
    environment = local_environment(jobs)
    waiting, running, ended, passed_on = list(runs), {}, [], False
    with StopRequests() as stop:
        stop.defer()  # the launcher, not the handler, passes a signal on, so a run starting meanwhile gets it too
        while running or (waiting and stop.received is None):
            while waiting and len(running) < jobs and stop.received is None:
                run = waiting.pop(0)
                running[start_local(run, environment)] = run
            time.sleep(POLL_S)
            if stop.received is not None and not passed_on:
                for process in running:
                    process.send_signal(stop.received)
                passed_on = True
            for process in [process for process in running if process.poll() is not None]:
                ended.append((running.pop(process), process.returncode))
                report_end(*ended[-1], f"[{len(ended)}/{len(runs)}]")
    return local_outcome(ended, len(waiting), stop.received)


def local_environment(jobs: int) -> dict:
    """Parallel runs share the cores. Left alone, each torch process starts a thread per core, and threads
    that outnumber the cores wait on each other: on a busy 2-core machine we measured steps 20 times slower."""
    environment = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in environment:
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return environment


def local_log(run: Run) -> Path:
    return run.directory.with_name(run.directory.name + ".log")


def start_local(run: Run, environment: dict) -> subprocess.Popen:
    """train.py from the repository root, its output appended to <run dir>.log. In a session of its own, so a
    Ctrl-C reaches it once, passed on by the sweep, and not a second time from the terminal."""
    log = local_log(run)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as output:
        return subprocess.Popen(run.command, cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


def report_end(run: Run, status: int, counter: str) -> None:
    if status == 0:
        print(f"{counter} done: {run.directory} (exit status 0)", flush=True)
        return
    outcome = "stopped" if status in STOPPED_BY_SIGNAL else "failed"
    print(f"{counter} {outcome}: {run.directory} (exit status {status}): {last_line(local_log(run))}", flush=True)


def last_line(log: Path) -> str:
    """The log's last line, which names the error (progress bars redraw with carriage returns)."""
    lines = [line.strip() for line in log.read_text(errors="replace").replace("\r", "\n").splitlines()]
    return next((line for line in reversed(lines) if line), "no output")


def local_outcome(ended: list[tuple[Run, int]], not_started: int, received: int | None) -> int:
    stopped = [run for run, status in ended if received is not None and status in STOPPED_BY_SIGNAL]
    failed = [(run, status) for run, status in ended if status != 0 and run not in stopped]
    if failed:
        print(f"error: {len(failed)} run(s) failed: "
              + ", ".join(f"{run.directory} (exit status {status})" for run, status in failed)
              + "; the output of each is in <run dir>.log", file=sys.stderr)
    if received is not None:
        print(f"stopped by signal {received}: {len(stopped)} run(s) stopped, {not_started} not started; launch the "
              "same sweep again to continue", file=sys.stderr)
        return 128 + received
    if failed:
        return 1
    print(f"all {len(ended)} launched run(s) finished")
    return 0


# ---- the SLURM launcher ------------------------------------------------------------------------------------------


class TrainJob:
    """One SLURM job: its train.py commands, run one after another from the repository root.

    It follows submitit's checkpointing protocol: when SLURM signals the time limit or a pre-emption, submitit
    calls `checkpoint`, which stops the running train.py with SIGTERM (train.py writes a checkpoint and exits)
    and returns the job to requeue. The requeued job runs the same commands: the finished runs say so, the
    stopped one continues from its checkpoint."""

    def __init__(self, commands: list[list[str]]):
        self.commands = [list(command) for command in commands]
        self._child = None
        self._checkpointed = False

    def __call__(self) -> dict[str, int]:
        """{run directory: train.py's exit status}; raises when a run failed, naming it."""
        self._checkpointed = False
        statuses = {}
        for command in self.commands:
            if self._checkpointed:
                break
            self._child = subprocess.Popen(command, cwd=REPO, preexec_fn=ignore_slurm_warning_signal)
            statuses[run_dir_of(command)] = status = self._child.wait()
            print(f"{run_dir_of(command)}: exit status {status}", flush=True)
            if status in STOPPED_BY_SIGNAL:
                break  # pre-empted: SLURM signalled train.py too; the job's next start continues from here
        failed = [f"{directory} (exit status {status})" for directory, status in statuses.items() if status != 0]
        if failed and not self._checkpointed:
            raise RuntimeError(f"train.py failed: {', '.join(failed)}")
        return statuses

    def checkpoint(self, *args):
        """Called by submitit on SLURM's signal: the job to requeue, once train.py has checkpointed and exited."""
        import submitit

        self._checkpointed = True
        if self._child is not None and self._child.returncode is None:
            status = stop_and_wait(self._child)
            print(f"{run_dir_of(self._child.args)}: stopped for the requeue, exit status {status}", flush=True)
        return submitit.helpers.DelayedSubmission(self)

    def __getstate__(self) -> dict:
        return {"commands": self.commands}  # a requeued job starts afresh, without the child of the last one

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["commands"])


def ignore_slurm_warning_signal() -> None:
    """Runs in the child before train.py starts. SLURM can deliver its warning signal (USR2, which submitit asks
    for) to every process of the job, and USR2 would kill train.py on the spot, losing the steps since its last
    checkpoint; TrainJob.checkpoint stops it with SIGTERM instead."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def run_dir_of(command: list[str]) -> str:
    return command[command.index("--run_dir") + 1]


def stop_and_wait(child: subprocess.Popen) -> int | None:
    """SIGTERM, then wait until train.py has written its checkpoint and exited; its exit status (negative: the
    signal that killed it). submitit calls `checkpoint` from a signal handler, which may interrupt TrainJob's own
    `wait()` while it holds Popen's lock, so this waits with WNOWAIT: without the lock, and leaving the child to
    that `wait()` to collect."""
    child.send_signal(signal.SIGTERM)
    try:
        ended = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        return child.returncode  # called from another thread, whose wait() collected it first
    return ended.si_status if ended.si_code == os.CLD_EXITED else -ended.si_status


def slurm_executor(sweep: Sweep):
    """submitit's SLURM executor with the sweep's options; its logs and job files go to ROOT/.submitit."""
    try:
        import submitit
    except ImportError:
        raise UserInputError("--launcher slurm needs submitit: pip install 'submitit>=1.5'") from None
    try:
        executor = submitit.AutoExecutor(folder=sweep.root / ".submitit", cluster="slurm")
    except RuntimeError:  # submitit looks for srun
        raise UserInputError("--launcher slurm: no SLURM on this machine (no srun); use --launcher local, or "
                             "--dry_run to list the runs") from None
    options = sweep.slurm
    # chdir: the job imports TrainJob from this repository (see submit_to_slurm).
    executor.update_parameters(name=f"sweep-{sweep.root.name}", timeout_min=options.time,
                               gpus_per_node=options.gpus or None, cpus_per_task=options.cpus, mem_gb=options.mem,
                               slurm_partition=options.partition,
                               slurm_array_parallelism=options.array_parallelism,
                               slurm_additional_parameters={"chdir": str(REPO), **options.sbatch})
    return executor


def submit_to_slurm(executor, runs: list[Run], runs_per_job: int) -> int:
    """One array of jobs, each with up to `runs_per_job` runs."""
    from submitit.core.utils import FailedSubmissionError, UncompletedJobError

    # This file runs as __main__, whose classes cloudpickle copies into each job; the same class imported by its
    # module name is pickled by reference, and the job imports it on the node.
    from scripts.sweep import TrainJob as ImportableTrainJob

    groups = [runs[start:start + runs_per_job] for start in range(0, len(runs), runs_per_job)]
    try:
        jobs = executor.submit_array([ImportableTrainJob([run.command for run in group]) for group in groups])
    except (FailedSubmissionError, UncompletedJobError) as error:
        message = str(error).strip().splitlines() or ["no message"]
        print(f"error: sbatch refused the jobs: {message[-1]}", file=sys.stderr)
        return 1
    print(f"submitted {len(runs)} run(s) as {len(jobs)} SLURM job(s) {jobs[0].job_id}"
          f"{f' to {jobs[-1].job_id}' if len(jobs) > 1 else ''}; their logs are in {executor.folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        sweep = read_sweep(argv)
        runs = plan_runs(sweep)
        executor = slurm_executor(sweep) if sweep.launcher == "slurm" and not sweep.dry_run else None
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in left_out(sweep):
        print(line)
    if sweep.dry_run:
        try:
            print_plan(runs)
        except BrokenPipeError:  # the reader stopped early (| head): no traceback, now or at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    waiting = runs_to_launch(runs)
    if not waiting:
        print(f"nothing to launch: all {len(runs)} runs are finished")
        return 0
    if executor is None:
        return launch_locally(waiting, sweep.jobs)
    return submit_to_slurm(executor, waiting, sweep.slurm.runs_per_job)


if __name__ == "__main__":
    sys.exit(main())
