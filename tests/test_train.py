"""End-to-end: real subprocess runs of train.py on the toy task, every output file read back."""

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHORT_RUN = ["--training_steps", "300", "--eval_every", "100", "--gmm_steps", "200", "--eval_episodes", "20",
             "--hyper_batch_size", "256"]


def train(tmp_path: Path, *flags: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env_extra or {})}
    command = [sys.executable, "train.py", "--log_path", str(tmp_path / "runs"), "--gmm_dir", str(tmp_path / "gmm"),
               *flags]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def run_dirs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    return sorted(root.iterdir()) if root.exists() else []


def read_progress(run_dir: Path) -> tuple[list[dict], list[dict]]:
    with open(run_dir / "progress.csv") as file:
        csv_rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]
    jsonl_rows = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    return csv_rows, jsonl_rows


def without_wall_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rows]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("toy")
    result = train(tmp_path, *SHORT_RUN)
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp_path, result


def test_run_writes_config_progress_and_summary(toy_run):
    tmp_path, result = toy_run
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.name.startswith("toy-multimodal_lom_seed0_")
    assert "settings from configs/lom/toy-multimodal.yaml\n" in result.stdout

    config = json.loads((run_dir / "config.json").read_text())
    toy_yaml = yaml.safe_load((REPO / "configs/lom/toy-multimodal.yaml").read_text())
    assert config["env_name"] == "toy-multimodal" and config["agent"] == "lom" and config["seed"] == 0
    assert config["training_steps"] == 300 and config["gmm_steps"] == 200  # flags beat the YAML
    assert config["num_mixtures"] == toy_yaml["num_mixtures"]  # the YAML beats the default
    assert config["hyper_batch_size"] == 256 and config["device"] == "cpu"
    assert config["config_files"] == ["configs/lom/toy-multimodal.yaml"]

    csv_rows, jsonl_rows = read_progress(run_dir)
    assert [row["step"] for row in csv_rows] == [100, 200, 300]
    for csv_row, jsonl_row in zip(without_wall_time(csv_rows), without_wall_time(jsonl_rows), strict=True):
        assert csv_row == pytest.approx(jsonl_row)
    for row in csv_rows:
        for key in ("train/value_loss", "train/hyper_q_loss", "train/policy_loss", "eval/return",
                    "eval/normalised_score"):
            assert math.isfinite(row[key])
        assert row["eval/episode_length"] == 1.0  # one-step task
        assert 0.0 <= row["eval/return"] <= 1.0

    summary = json.loads((run_dir / "summary.json").read_text())
    scores = [row["eval/normalised_score"] for row in csv_rows]
    assert summary["steps"] == 300 and summary["evaluations"] == 3
    assert summary["final_score"] == pytest.approx(scores[-1])
    assert summary["best_score"] == pytest.approx(max(scores))
    assert summary["last10pct_mean_score"] == pytest.approx(scores[-1])  # 10 % of 3 evaluations rounds up to 1
    assert summary["final_return"] == pytest.approx(csv_rows[-1]["eval/return"])
    assert summary["wall_time_s"] > 0

    pretraining = [json.loads(line) for line in (run_dir / "pretraining.jsonl").read_text().splitlines()]
    assert pretraining[-1]["step"] == summary["pretrain_steps"] == 200  # one held-out check, at the cap
    assert summary["pretrain_held_out_loss"] == pytest.approx(min(row["held_out_loss"] for row in pretraining))


def test_pretrained_mdn_is_cached_and_reused_with_identical_results(toy_run):
    tmp_path, first = toy_run
    (cached,) = (tmp_path / "gmm").glob("*.pt")
    assert cached.name.startswith("toy-multimodal_lom_seed0_")
    assert "LOM pretraining" in first.stderr

    second = train(tmp_path, *SHORT_RUN)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "loaded the pretrained behaviour model" in second.stdout
    assert "LOM pretraining" not in second.stderr

    first_dir, second_dir = run_dirs(tmp_path)
    assert without_wall_time(read_progress(second_dir)[1]) == without_wall_time(read_progress(first_dir)[1])
    first_summary, second_summary = (json.loads((d / "summary.json").read_text()) for d in (first_dir, second_dir))
    assert second_summary["pretrain_steps"] == first_summary["pretrain_steps"]  # the record comes with the cache
    assert not (second_dir / "pretraining.csv").exists()  # nothing was pretrained in the second run


def test_retrain_gmm_trains_again_and_reproduces_the_same_numbers(tmp_path, toy_run):
    cache_tmp, _ = toy_run
    (cached,) = (cache_tmp / "gmm").glob("*.pt")
    cached_at = cached.stat().st_mtime_ns
    result = train(tmp_path, *SHORT_RUN, "--retrain_gmm", "1", "--gmm_dir", str(cache_tmp / "gmm"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOM pretraining" in result.stderr and "loaded" not in result.stderr
    assert cached.stat().st_mtime_ns > cached_at  # the cache entry was replaced
    (retrained,) = run_dirs(tmp_path)
    first = run_dirs(cache_tmp)[0]
    assert without_wall_time(read_progress(retrained)[1]) == without_wall_time(read_progress(first)[1])


def test_bc_runs_on_the_same_task(tmp_path):
    result = train(tmp_path, "--agent", "bc", "--training_steps", "200", "--eval_every", "100")
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    csv_rows, _ = read_progress(run_dir)
    assert [row["step"] for row in csv_rows] == [100, 200]
    assert "train/policy_loss" in csv_rows[0] and "train/value_loss" not in csv_rows[0]


def wandb_records(run_file: Path):
    """The records of a .wandb file (LevelDB log format: 32 KiB blocks of CRC, length, type, payload)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw, position, pending, block = run_file.read_bytes(), 7, b"", 32768  # 7 bytes of file header
    while position + 7 <= len(raw):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[position : position + 7])
        payload, position = raw[position + 7 : position + 7 + length], position + 7 + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_logs_the_run(tmp_path):
    result = train(tmp_path, *SHORT_RUN, "--enable_wandb", "1", "--project", "lom-tests", "--group", "toy")
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))

    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.run_group, run.display_name) == ("lom-tests", "toy", "lom_toy-multimodal_seed0")
    history = [{item_key(i): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    csv_rows, _ = read_progress(run_dir)
    assert [row["_step"] for row in history] == [100, 200, 300]
    assert [row["eval/normalised_score"] for row in history] == pytest.approx(
        [row["eval/normalised_score"] for row in csv_rows])
    summary = json.loads((run_dir / "summary.json").read_text())
    summaries = {item_key(i): json.loads(i.value_json)
                 for r in records if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
    assert summaries["final_score"] == pytest.approx(summary["final_score"])
    assert summaries["last10pct_mean_score"] == pytest.approx(summary["last10pct_mean_score"])


def write_d4rl_file(path: Path, obs_dim: int, act_dim: int, episodes: int = 3, length: int = 40) -> None:
    """A small D4RL-format file: random transitions, the last episode cut by a timeout."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    size = episodes * length
    terminals = np.zeros(size, bool)
    timeouts = np.zeros(size, bool)
    terminals[length - 1 : size - length : length] = True
    timeouts[-1] = True
    with h5py.File(path, "w") as file:
        file["observations"] = rng.standard_normal((size, obs_dim)).astype("float32")
        file["actions"] = rng.uniform(-1, 1, (size, act_dim)).astype("float32")
        file["rewards"] = rng.standard_normal(size).astype("float32")
        file["terminals"] = terminals
        file["timeouts"] = timeouts


TINY_RUN = ["--training_steps", "20", "--eval_every", "10", "--gmm_steps", "10", "--eval_episodes", "2",
            "--hyper_batch_size", "64", "--value_batch_size", "32", "--policy_batch_size", "32",
            "--gmm_batch_size", "64"]


def test_d4rl_name_reads_d4rl_cache_applies_its_yaml_and_scores_with_d4rl_constants(tmp_path):
    d4rl_dir = tmp_path / "d4rl"
    d4rl_dir.mkdir()
    write_d4rl_file(d4rl_dir / "hopper_medium_replay-v2.hdf5", obs_dim=11, act_dim=3)
    result = train(tmp_path, "--env_name", "Hopper-Medium-Replay-v2", *TINY_RUN,
                   env_extra={"D4RL_DATASET_DIR": str(d4rl_dir)})
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    table1 = yaml.safe_load((REPO / "configs/lom/hopper-medium-replay-v2.yaml").read_text())
    assert config["dataset"] == "hopper-medium-replay-v2"
    assert {key: config[key] for key in table1} == table1
    csv_rows, _ = read_progress(run_dir)
    hopper_min, hopper_max = -20.272305, 3234.3
    for row in csv_rows:
        expected = 100 * (row["eval/return"] - hopper_min) / (hopper_max - hopper_min)
        assert row["eval/normalised_score"] == pytest.approx(expected)
        assert row["eval/episode_length"] > 1  # real Hopper-v4 episodes


def test_own_file_with_a_module_env_id_and_user_reference_scores(tmp_path):
    data = tmp_path / "mine.hdf5"
    write_d4rl_file(data, obs_dim=1, act_dim=2)
    result = train(tmp_path, "--dataset_path", str(data), "--eval_env", "envs.toy_multimodal:ToyMultimodal-v0",
                   "--ref_min_score", "0", "--ref_max_score", "2", *TINY_RUN)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.name.startswith("mine_lom_seed0_")
    csv_rows, _ = read_progress(run_dir)
    assert [row["eval/normalised_score"] for row in csv_rows] == pytest.approx(
        [50 * row["eval/return"] for row in csv_rows])


def test_a_v4_env_that_cannot_host_the_data_is_one_line_on_stderr(tmp_path):
    data = tmp_path / "mine.hdf5"
    write_d4rl_file(data, obs_dim=5, act_dim=3)  # Hopper-v4 observes 11 numbers
    result = train(tmp_path, "--dataset_path", str(data), "--eval_env", "Hopper-v4", *TINY_RUN)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the evaluation env 'Hopper-v4' has observations (11,) and actions (3,), but the dataset has (5,) "
        "and (3,); pick a matching --eval_env"]  # gymnasium's advice to move to v5 does not reach stderr
    assert run_dirs(tmp_path) == []


@pytest.mark.parametrize("flag", ["--log_path", "--gmm_dir", "--data_dir"])
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, flag):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    dataset = ["--env_name", "fetchreach-fourgoal-v0"] if flag == "--data_dir" else []  # the only one it writes to
    started = time.time()
    result = subprocess.run([sys.executable, "train.py", "--log_path", str(tmp_path / "runs"), *dataset,
                             flag, str(blocker / "inside")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and time.time() - started < 60  # no data made, no pretraining started
    assert result.stderr.strip().splitlines() == [
        f"error: {flag} {blocker / 'inside'}: {blocker} is a file, not a folder; choose another {flag}"]
    assert not (tmp_path / "runs").exists() and blocker.read_text() == "not a folder"


def test_own_file_without_env_name_gets_its_own_label_and_not_the_toy_settings(tmp_path):
    data = tmp_path / "mine.hdf5"
    write_d4rl_file(data, obs_dim=1, act_dim=2, episodes=10)
    result = train(tmp_path, "--dataset_path", str(data), "--eval_env", "envs.toy_multimodal:ToyMultimodal-v0",
                   *TINY_RUN)
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    assert run_dir.name.startswith("mine_lom_seed0_") and config["env_name"] == "mine"
    assert config["config_files"] == [] and "settings from flags and defaults only" in result.stdout
    toy_yaml = yaml.safe_load((REPO / "configs/lom/toy-multimodal.yaml").read_text())
    assert config["num_mixtures"] == 5 != toy_yaml["num_mixtures"] and config["hidden"] == 256 != toy_yaml["hidden"]


def test_a_diverging_loss_stops_the_run_naming_the_loss_and_step(tmp_path):
    result = train(tmp_path, *SHORT_RUN, "--value_lr", "1e30")  # the critics explode on the first step
    assert result.returncode == 3 and "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and " became NaN or inf at step " in last_line
    (run_dir,) = run_dirs(tmp_path)
    assert str(run_dir) in last_line
    assert not (run_dir / "summary.json").exists()  # the run did not finish
    assert not list(run_dir.glob("checkpoint_*.pt"))  # the check comes before a save: no diverged checkpoint


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path):
    import signal
    import time

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    flags = [sys.executable, "train.py", "--log_path", str(tmp_path / "runs"), "--save_gmm", "0", *SHORT_RUN,
             "--enable_wandb", "1"]
    process = subprocess.Popen(flags, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "runs").glob("*/checkpoint_000000100.pt")) and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    (run_dir,) = run_dirs(tmp_path)
    resumed_from = torch_checkpoint_step(run_dir)
    result = subprocess.run([sys.executable, "train.py", "--resume", str(run_dir)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

    first, second = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name)
    assert first.stem == second.stem  # the same wandb run id
    steps = [json.loads(item.value_json) for record in wandb_records(second)
             if record.WhichOneof("record_type") == "history" for item in record.history.item
             if item_key(item) == "_step"]
    assert steps == [step for step in (100, 200, 300) if step > resumed_from]


def torch_checkpoint_step(run_dir: Path) -> int:
    return max(int(path.stem.split("_")[1]) for path in run_dir.glob("checkpoint_*.pt"))
