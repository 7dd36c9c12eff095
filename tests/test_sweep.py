"""scripts/sweep.py: a grid of real train.py runs launched here, one of them killed and the sweep launched again,
the job script and job files submitit would hand to SLURM, a job pre-empted and requeued through submitit's own
protocol, bad input, and --dry_run.

The grid is 2 datasets x 2 agents x 2 seeds of tiny runs: the toy task and a four-goal FetchReach of 2 start states
(400 rows, made in a second), the only two datasets that need no download. LOM's batches are lowered to fit 400 rows.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from submitit import LocalExecutor
from submitit.helpers import DelayedSubmission

from scripts import sweep
from scripts.sweep import TrainJob

REPO = Path(__file__).resolve().parent.parent
GRID = ["--datasets", "toy-multimodal,fetchreach-fourgoal-v0", "--agents", "lom,bc", "--seeds", "0,1"]
TINY = ["--set", "training_steps=20", "--set", "eval_every=10", "--set", "eval_episodes=2", "--set", "toy_size=600",
        "--set", "fetch_starts=2", "--set", "fetch_data=start_only", "--set", "lom:gmm_steps=10",
        "--set", "lom:gmm_batch_size=256", "--set", "lom:hyper_batch_size=256",
        # BC's runs are longer, so that the one killed after its first checkpoint is still running when killed.
        "--set", "bc:training_steps=300", "--set", "bc:eval_every=100"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # torch threads on 2 busy cores wait on each other


def launch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.sweep", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def file_times(run_dir: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in run_dir.iterdir()}


def progress_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "progress.jsonl").read_text().splitlines()]


def wait_for(folder: Path, pattern: str, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while not list(folder.glob(pattern)):
        assert time.time() < deadline, f"no {pattern} in {folder}"
        time.sleep(0.01)


def kill_after_first_checkpoint(run: sweep.Run) -> None:
    """The sweep's command for one run, started by hand and killed as a pre-empted job would be."""
    process = subprocess.Popen(run.command, cwd=REPO, env=ONE_THREAD, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for(run.directory, "checkpoint_000000100.pt")
    process.kill()
    process.wait(timeout=60)
    assert not (run.directory / "summary.json").exists()


@dataclass
class Launched:
    args: list[str]  # the grid's flags, --root included
    runs: list[sweep.Run]
    first: subprocess.CompletedProcess  # the sweep for seed 0
    second: subprocess.CompletedProcess  # the whole sweep, after a seed-1 run was killed
    seed0_times: dict[Path, dict[str, int]]  # each seed-0 run's files before the second launch
    killed: sweep.Run


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Launched:
    work = tmp_path_factory.mktemp("sweep")
    args = [*GRID, *TINY, "--set", f"data_dir={work / 'data'}", "--set", f"gmm_dir={work / 'gmm'}",
            "--root", str(work / "runs")]
    first = launch(*args, "--seeds", "0", "--launcher", "local", "--jobs", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    runs = sweep.plan_runs(sweep.read_sweep([*args, "--dry_run"]))
    seed0_times = {run.directory: file_times(run.directory) for run in runs if run.directory.name == "seed0"}
    killed = next(run for run in runs if run.label == "toy-multimodal bc seed 1")
    kill_after_first_checkpoint(killed)
    second = launch(*args, "--launcher", "local", "--jobs", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    return Launched(args, runs, first, second, seed0_times, killed)


def test_a_local_sweep_runs_every_run_of_the_grid_with_its_settings(launched):
    assert len({run.directory for run in launched.runs}) == 8
    for run in launched.runs:
        dataset, agent, _, seed = run.label.split()
        config = json.loads((run.directory / "config.json").read_text())
        assert (run.directory / "summary.json").is_file()
        assert (config["dataset"], config["agent"], config["seed"]) == (dataset, agent, int(seed))
        assert (config["eval_episodes"], config["toy_size"], config["fetch_starts"]) == (2, 600, 2)
        assert config["training_steps"] == (300 if agent == "bc" else 20)
        if agent == "lom":
            assert (config["gmm_steps"], config["gmm_batch_size"], config["hyper_batch_size"]) == (10, 256, 256)
    assert launched.first.stdout.count(" done: ") == 4 and launched.second.stdout.count(" done: ") == 4


def test_a_killed_run_is_finished_by_launching_the_sweep_again_and_finished_runs_are_skipped(launched):
    for run_dir, times in launched.seed0_times.items():
        assert f"skipped (finished): {run_dir}\n" in launched.second.stdout
        assert file_times(run_dir) == times  # not run again
    killed = launched.killed.directory
    assert f"done: {killed} (exit status 0)" in launched.second.stdout
    assert f"resuming {killed}" in killed.with_name("seed1.log").read_text()
    assert progress_steps(killed) == [100, 200, 300]  # no row repeated or missing


def test_dry_run_lists_every_run_with_its_state_directory_and_command_and_launches_nothing(launched, tmp_path,
                                                                                            capsys):
    assert sweep.main([*GRID, *TINY, "--root", str(tmp_path / "runs"), "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9 and lines[-1].startswith("8 runs: 0 finished (skipped when launched), 0 unfinished")
    for line in lines[:-1]:
        state, run_dir, command = line.split(maxsplit=2)
        assert state == "new" and Path(run_dir).is_relative_to(tmp_path / "runs")
        assert command.startswith(f"{sys.executable} train.py --env_name ") and f" --run_dir {run_dir} " in command
    assert not (tmp_path / "runs").exists()

    assert sweep.main([*launched.args, "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["finished", str(run.directory)] for run in launched.runs]


def test_a_run_started_with_other_settings_than_the_grid_gives_it_now_stops_the_sweep_before_any_launch(
        launched, tmp_path, capsys):
    """As after a changed default: the finished run's folder name is the same, but its config.json says it was
    started with another discount than the one the grid now gives it. Skipping it would put its score in tables
    beside runs made with the new settings."""
    root_flag = launched.args.index("--root")
    old_root, root = Path(launched.args[root_flag + 1]), tmp_path / "runs"
    shutil.copytree(old_root, root)
    stale = root / launched.runs[0].directory.relative_to(old_root)
    config = json.loads((stale / "config.json").read_text())
    (stale / "config.json").write_text(json.dumps(config | {"discount": 0.98}))
    before = {path: path.stat().st_mtime_ns for path in root.rglob("*")}
    args = [*launched.args[:root_flag], "--root", str(root)]

    for launcher in (["--launcher", "local"], ["--dry_run"]):
        assert sweep.main([*args, *launcher]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line == (f"error: {launched.runs[0].label}: {stale} holds a run started with --discount 0.98, but the "
                        "sweep now gives it --discount 0.99 (a default or a configs/ file changed since it ran); move "
                        "that folder away to run it again, or give another --root")
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*")} == before  # nothing launched or rewritten


def test_a_signal_to_a_local_sweep_stops_its_run_with_a_checkpoint_and_starts_no_other(tmp_path):
    root = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.sweep", "--datasets", "toy-multimodal", "--agents", "bc", "--seeds", "0,1",
         "--set", "training_steps=3000", "--set", "eval_every=100", "--set", "eval_episodes=2", "--set",
         "toy_size=600", "--root", str(root), "--launcher", "local"],
        cwd=REPO, env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(root, "toy-multimodal/*/seed0/checkpoint_*.pt")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == (f"stopped by signal {int(signal.SIGTERM)}: 1 run(s) stopped, 1 not "
                                               "started; launch the same sweep again to continue")
    (run_dir,) = root.glob("toy-multimodal/*/seed0")
    assert list(run_dir.glob("checkpoint_*.pt")) and not (run_dir / "summary.json").exists()
    assert not (run_dir.parent / "seed1").exists()


# ---- the SLURM launcher -------------------------------------------------------------------------------------


def slurm_stand_ins(bin_dir: Path, copy_of_script: Path) -> dict:
    """There is no cluster here: submitit looks for srun to know it is on one, and hands its job script to
    sbatch, which here keeps a copy of it and answers as sbatch does."""
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{copy_of_script}"\necho "Submitted batch job 4242"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_the_slurm_launcher_submits_an_array_of_checkpointable_jobs_with_the_requested_options(tmp_path):
    script = tmp_path / "job.sh"
    root = tmp_path / "runs"
    args = [*GRID, *TINY, "--root", str(root), "--launcher", "slurm", "--partition", "gpu", "--time", "90",
            "--gpus", "2", "--cpus", "6", "--mem", "24", "--array_parallelism", "2", "--runs_per_job", "3",
            "--sbatch", "account=mylab", "--sbatch", "qos=high"]
    result = launch(*args, env=slurm_stand_ins(tmp_path / "bin", script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == ("submitted 8 run(s) as 3 SLURM job(s) 4242_0 to 4242_2; their "
                                                      f"logs are in {root / '.submitit'}")
    options = {line for line in script.read_text().splitlines() if line.startswith("#SBATCH")}
    assert {"#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=6",
            "#SBATCH --mem=24GB", "#SBATCH --array=0-2%2", "#SBATCH --account=mylab", "#SBATCH --qos=high",
            f"#SBATCH --chdir={REPO}"} <= options
    assert "#SBATCH --signal=USR2@90" in options  # the warning that makes submitit call TrainJob.checkpoint

    commands = [list(run.command) for run in sweep.plan_runs(sweep.read_sweep(args))]
    jobs = [DelayedSubmission.load(root / ".submitit" / f"4242_{index}_submitted.pkl") for index in range(3)]
    assert [type(job.function) for job in jobs] == [TrainJob] * 3
    assert [job.function.commands for job in jobs] == [commands[0:3], commands[3:6], commands[6:8]]


def test_a_preempted_job_checkpoints_its_run_is_requeued_and_finishes_it(tmp_path, monkeypatch):
    """submitit's local executor speaks the same protocol as on SLURM: USR2 makes it call TrainJob.checkpoint,
    store the job it returns and run that job again."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(REPO)  # the job process imports TrainJob from its working directory, as on a cluster
    (run,) = sweep.plan_runs(sweep.read_sweep(
        ["--datasets", "toy-multimodal", "--agents", "bc", "--seeds", "0", "--set", "training_steps=300",
         "--set", "eval_every=100", "--set", "eval_episodes=2", "--set", "toy_size=600",
         "--root", str(tmp_path / "runs"), "--dry_run"]))
    executor = LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(TrainJob([run.command]))
    wait_for(run.directory, "checkpoint_000000100.pt")
    train_py = json.loads((run.directory / "lock").read_text())["pid"]
    job_process = int(Path(f"/proc/{train_py}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(train_py, signal.SIGUSR2)  # SLURM's warning can reach every process of the job: train.py ignores it
    os.kill(job_process, signal.SIGUSR2)

    assert job.result() == {str(run.directory): 0}
    output = job.stdout() + job.stderr()
    assert f"{run.directory}: stopped for the requeue, exit status {128 + signal.SIGTERM}" in output
    assert f"stopped by signal {int(signal.SIGTERM)} at step " in output and f"resuming {run.directory}" in output
    requeued = DelayedSubmission.load(job.paths.submitted_pickle)  # the job checkpoint() returned, as stored
    assert isinstance(requeued.function, TrainJob) and requeued.function.commands == [list(run.command)]
    assert progress_steps(run.directory) == [100, 200, 300]


# ---- bad input ----------------------------------------------------------------------------------------------


def test_the_scenarios_axis_gives_each_scenario_its_own_folder_and_flag(tmp_path):
    grid = sweep.read_sweep(["--datasets", "hopper-all-v2,local/hopper-all-v0", "--agents", "mahalo,atac",
                             "--seeds", "0,1", "--scenarios", "il,rl_sample", "--root", str(tmp_path), "--dry_run"])
    runs = sweep.plan_runs(grid)
    assert len(runs) == 2 * 2 * 2 * 2
    run = next(run for run in runs if run.label == "local/hopper-all-v0 il atac seed 1")
    assert run.directory == tmp_path / "local+hopper-all-v0_il" / "atac" / "seed1"
    assert run.command[-2:] == ("--scenario", "il")
    assert len({run.directory for run in runs}) == len(runs)


def test_cells_an_agent_cannot_learn_in_are_left_out_and_said_so(tmp_path, capsys):
    flags = ["--datasets", "hopper-all-v2", "--agents", "mahalo,atac,uds", "--seeds", "0", "--scenarios",
             "ilfo,rl_sample", "--root", str(tmp_path), "--dry_run"]
    assert sweep.main(flags) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["left out: atac in ilfo, which removes the reward set's actions: atac trains on them",
                         "left out: uds in ilfo, which removes the reward set's actions: uds trains on them"]
    planned = [line.split()[1] for line in lines[2:-1]]
    assert planned == [str(tmp_path / f"hopper-all-v2_{scenario}" / agent / "seed0")
                       for scenario, agent in [("ilfo", "mahalo"), ("rl_sample", "mahalo"), ("rl_sample", "atac"),
                                               ("rl_sample", "uds")]]


def bad_sweep_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("datasets: [toy-multimodal]\nagents: [lom, bc]\nseeds: [0]\nset:\n  training_steps: 20\n"
                    "  lom:\n    gmm_stepz: 10\n")
    return path


VALID = ["--datasets", "toy-multimodal", "--agents", "lom,bc", "--seeds", "0", "--launcher", "local"]
BAD_INPUT = {  # case: (flags after VALID, which they override; the start of the error line)
    "unknown agent": (["--agents", "lom,dqn"], "error: --agents: unknown agent 'dqn'; choose one of: lom, bc"),
    "unknown dataset": (["--datasets", "toy-multimodal,hopper-medum-v2"],
                        "error: --datasets: unknown dataset 'hopper-medum-v2'; did you mean hopper-medium-v2"),
    "unknown key of an agent": (["--set", "bc:gmm_steps=10"], "error: --set bc:gmm_steps=10: 'gmm_steps' is not a "
                                                              "setting of the run or of agent bc"),
    "unknown key of all": (["--set", "batchsize=64"], "error: --set batchsize=64: 'batchsize' is not a setting of the "
                                                      "run or of any agent of the sweep (lom, bc)"),
    "unknown key in a sweep file": (["--file", "{file}"], "error: {file}: set: lom: 'gmm_stepz' is not a setting of "
                                                          "the run or of agent lom"),
    "a key the grid sets": (["--set", "seed=3"], "error: --set seed=3: seed is set by the sweep itself"),
    "a value train.py refuses": (["--set", "training_steps=0"],
                                 "error: toy-multimodal lom seed 0: --training_steps must be at least 1, got 0"),
    "a value of the wrong type": (["--set", "lom:gmm_steps=ten"],
                                  "error: --set lom:gmm_steps=ten: bad value for gmm_steps: invalid literal"),
    "a seed that is no number": (["--seeds", "0,x"], "error: --seeds: 'x' is not a seed"),
    "a negative seed": (["--seeds", "-1"], "error: --seeds: '-1' is not a seed"),
    "a seed listed twice": (["--seeds", "0,1,0"], "error: --seeds: 0 is listed twice"),
    "a grid larger than --max_runs": (["--seeds", "0,1,2", "--max_runs", "5"], "error: the sweep has 6 runs, more "
                                                                               "than --max_runs 5; give --max_runs 6 "
                                                                               "to go ahead"),
    "no --root": ([], "error: give --root"),
    "an unknown scenario": (["--scenarios", "il,rl_x"], "error: --scenarios: 'rl_x' is not a scenario; choose from "
                                                        "none, il, ilfo"),
    "a scenario given by --set": (["--set", "scenario=il"], "error: --set scenario=il: scenario is set by the sweep "
                                                            "itself"),
    "a scenario for agents of one dataset": (["--scenarios", "il"], "error: toy-multimodal il lom seed 0: --scenario "
                                                                    "il makes two datasets, but --agent lom learns "
                                                                    "from one"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_nothing_is_launched_or_written(case, tmp_path, capsys):
    flags, expected = BAD_INPUT[case]
    file, root = bad_sweep_file(tmp_path), tmp_path / "runs"
    where = [] if case == "no --root" else ["--root", str(root)]
    assert sweep.main([*VALID, *[flag.format(file=file) for flag in flags], *where]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(expected.format(file=file))
    assert not root.exists()
