"""Locomotion datasets made locally (datagen/collection.py, scripts/collect_dataset.py): one tiny real SAC run
on HalfCheetah-v4, its files read back through the loader, resuming, and the medium-snapshot rule."""

import copy
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from datagen.collection import Collection, Settings, Snapshot, choose_medium  # noqa: E402
from datasources import load_dataset  # noqa: E402
from utils.d4rl_tasks import local_score_reference  # noqa: E402
from utils.dataset import ScoreReference  # noqa: E402
from utils.errors import UserInputError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# 1,500 steps, 700 of them with SAC updates; HalfCheetah's episodes are 1,000 steps long.
TINY = dict(env="halfcheetah", seed=3, steps=1500, learning_starts=800, snapshot_every=500, checkpoint_every=500,
            eval_episodes=1, size=1000)
FOUR_QUALITIES = ("random", "medium", "medium-replay", "full-replay")


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    collection = Collection(Settings(**TINY, out=str(data_dir / "local")))
    collection.train(progress=False)
    return data_dir, collection, collection.write_datasets()


def test_writes_the_four_sets_without_expert(collected):
    _, _, paths = collected
    assert sorted(paths) == sorted(FOUR_QUALITIES)  # a tiny run is far below --expert_threshold
    for quality, path in paths.items():
        assert path.name == f"halfcheetah-{quality}-v0.hdf5" and path.is_file()
        with h5py.File(path) as file:
            assert file.attrs["env_id"] == "HalfCheetah-v4" and file.attrs["seed"] == 3
            assert file.attrs["sac_steps"] == 1500 and file.attrs["score_source"] == "D4RL reference returns"
            assert "mean_return" in file.attrs


@pytest.mark.parametrize("quality", FOUR_QUALITIES)
def test_loader_reads_shapes_terminals_and_timeouts(collected, quality):
    data_dir, collection, _ = collected
    medium_step = choose_medium(collection.snapshots, local_score_reference("HalfCheetah-v4"))[0].step
    rows = {"medium-replay": medium_step, "full-replay": 1500}.get(quality, 1000)
    dataset = load_dataset(f"local/halfcheetah-{quality}-v0", data_dir=data_dir)
    assert (dataset.size, dataset.obs_dim, dataset.act_dim) == (rows, 17, 6)
    assert dataset.eval_env_id == "HalfCheetah-v4"
    assert dataset.score.source == "D4RL reference returns" and dataset.score.max_score == 12135.0
    assert not dataset.terminals.any()  # HalfCheetah never terminates
    assert list(np.flatnonzero(dataset.episode_ends)) == sorted({999, rows - 1} & set(range(rows)))
    with h5py.File(data_dir / "local" / f"halfcheetah-{quality}-v0.hdf5") as file:
        assert list(np.flatnonzero(file["timeouts"][()])) == ([999] if rows >= 1000 else [])
    assert np.array_equal(dataset.next_observations[:-1][~dataset.episode_ends[:-1]],
                          dataset.observations[1:][~dataset.episode_ends[:-1]])
    if rows > 1000:  # at the timeout the next observation is the true final one, not the next episode's first
        assert not np.allclose(dataset.next_observations[999], dataset.observations[1000])


def test_walker2d_falls_are_terminals_not_timeouts(tmp_path):
    # Near-random Walker2d falls within tens of steps: each fall ends an episode with a terminal, whose next
    # observation is the fallen state, not the next episode's first.
    settings = Settings(env="walker2d", seed=0, steps=400, learning_starts=300, snapshot_every=400,
                        checkpoint_every=400, eval_episodes=1, size=200, out=str(tmp_path / "local"))
    collection = Collection(settings)
    collection.train(progress=False)
    collection.write_datasets()
    dataset = load_dataset("local/walker2d-full-replay-v0", data_dir=tmp_path)
    assert (dataset.size, dataset.obs_dim, dataset.act_dim, dataset.eval_env_id) == (400, 17, 6, "Walker2d-v4")
    with h5py.File(tmp_path / "local" / "walker2d-full-replay-v0.hdf5") as file:
        assert not file["timeouts"][()].any()
    ends = np.flatnonzero(dataset.terminals)
    assert len(ends) >= 3
    height, angle = dataset.next_observations[ends, 0], dataset.next_observations[ends, 1]
    assert np.all((height < 0.8) | (height > 2.0) | (np.abs(angle) > 1.0))  # Walker2d-v4's unhealthy states
    assert not np.allclose(dataset.next_observations[ends[0]], dataset.observations[ends[0] + 1])


def test_medium_replay_is_the_start_of_full_replay(collected):
    data_dir, collection, _ = collected
    files = {q: h5py.File(data_dir / "local" / f"halfcheetah-{q}-v0.hdf5") for q in ("medium-replay", "full-replay")}
    with files["medium-replay"] as medium, files["full-replay"] as full:
        rows = len(medium["observations"])
        assert rows == medium.attrs["policy_step"] and rows < len(full["observations"])
        for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
            assert np.array_equal(medium[key][()], full[key][: rows])


def test_snapshots_saved_with_their_returns(collected):
    _, collection, _ = collected
    run_dir = collection.settings.run_dir
    assert [s.step for s in collection.snapshots] == [500, 1000, 1500]
    assert all((run_dir / "snapshots" / f"step_{step}.pt").is_file() for step in (500, 1000, 1500))
    saved = json.loads((run_dir / "snapshots" / "returns.json").read_text())
    assert saved == [{"step": s.step, "mean_return": s.mean_return} for s in collection.snapshots]


def test_expert_and_medium_expert_once_the_best_snapshot_is_good_enough(collected, tmp_path):
    _, collection, _ = collected
    good_enough = copy.copy(collection)  # the same SAC run, with a threshold every snapshot passes
    good_enough.settings = dataclasses.replace(collection.settings, expert_threshold=-1e9, out=str(tmp_path))
    paths = good_enough.write_datasets()
    assert sorted(paths) == sorted((*FOUR_QUALITIES, "expert", "medium-expert"))
    best = max(collection.snapshots, key=lambda s: s.mean_return)
    files = {q: h5py.File(paths[q]) for q in ("medium", "expert", "medium-expert")}
    with files["medium"] as medium, files["expert"] as expert, files["medium-expert"] as both:
        assert expert.attrs["policy_step"] == both.attrs["policy_step"] == best.step
        assert both.attrs["medium_policy_step"] == medium.attrs["policy_step"]
        for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
            assert len(expert[key]) == 1000
            assert np.array_equal(both[key][()], np.concatenate([medium[key][()], expert[key][()]])), key


def test_medium_is_the_snapshot_closest_to_the_target():
    score = ScoreReference(0.0, 100.0, "test")  # normalised score == return
    snapshots = [Snapshot(300, 90.0), Snapshot(100, 10.0), Snapshot(200, 40.0), Snapshot(400, 20.0)]
    assert choose_medium(snapshots, score) == (Snapshot(200, 40.0), 30.0)  # target 90 / 3; 40 is 10 away, 20 too
    assert choose_medium(snapshots, score, target=15.0) == (Snapshot(100, 10.0), 15.0)  # tie 10 / 20: earliest
    assert choose_medium(snapshots, score, target=85.0)[0] == Snapshot(300, 90.0)


def test_resumed_run_collects_the_same_rows(collected, tmp_path):
    _, straight, _ = collected
    out = str(tmp_path / "local")
    Collection(Settings(**{**TINY, "steps": 900}, out=out)).train(progress=False)  # stops mid-episode, mid-learning
    resumed = Collection(Settings(**TINY, out=out))
    assert resumed.model.num_timesteps == 900
    resumed.train(progress=False)
    for key in ("observations", "actions", "rewards", "dones", "timeouts", "next_observations"):
        assert np.array_equal(getattr(resumed.model.replay_buffer, key)[:1500],
                              getattr(straight.model.replay_buffer, key)[:1500]), key
    assert resumed.snapshots == straight.snapshots


def test_a_checkpoint_cut_short_is_never_read(collected, tmp_path):
    """Killed after a newer checkpoint's files were written but before state.json named them: the resumed
    run starts from the last whole checkpoint (step 900) and still collects the straight run's rows."""
    _, straight, _ = collected
    out = str(tmp_path / "local")
    stopped = Collection(Settings(**{**TINY, "steps": 900}, out=out))
    stopped.train(progress=False)
    shutil.copytree(straight.dir / "checkpoint_1500", stopped.dir / "checkpoint_1500")  # not yet in state.json
    resumed = Collection(Settings(**TINY, out=out))
    assert resumed.model.num_timesteps == 900
    resumed.train(progress=False)
    assert np.array_equal(resumed.model.replay_buffer.actions[:1500], straight.model.replay_buffer.actions[:1500])
    assert sorted(path.name for path in stopped.dir.glob("checkpoint_*")) == ["checkpoint_1500"]


def test_resumes_a_run_checkpointed_by_the_last_release(collected, tmp_path):
    """The last release kept the checkpoint files in the run directory and state.json named no folder."""
    _, straight, _ = collected
    out = str(tmp_path / "local")
    stopped = Collection(Settings(**{**TINY, "steps": 900}, out=out))
    stopped.train(progress=False)
    state = json.loads((stopped.dir / "state.json").read_text())
    for name in ("sac.zip", "buffer.pkl", "rng_env.pkl"):
        (stopped.dir / state["checkpoint"] / name).rename(stopped.dir / name)
    (stopped.dir / state.pop("checkpoint")).rmdir()
    (stopped.dir / "state.json").write_text(json.dumps(state))
    resumed = Collection(Settings(**TINY, out=out))
    assert resumed.model.num_timesteps == 900
    resumed.train(progress=False)
    assert np.array_equal(resumed.model.replay_buffer.actions[:1500], straight.model.replay_buffer.actions[:1500])
    assert not (stopped.dir / "sac.zip").exists()  # the new checkpoint replaced the old layout


def test_train_py_runs_on_a_local_set(collected, tmp_path):
    data_dir, _, _ = collected
    command = [sys.executable, "train.py", "--env_name", "local/halfcheetah-medium-replay-v0", "--data_dir",
               str(data_dir), "--training_steps", "20", "--eval_every", "10", "--eval_episodes", "1", "--agent", "bc",
               "--log_path", str(tmp_path / "runs")]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_missing_local_set_says_how_to_make_it(tmp_path):
    with pytest.raises(UserInputError, match="python -m scripts.collect_dataset --env walker2d"):
        load_dataset("local/walker2d-medium-v0", data_dir=tmp_path)


def test_script_says_how_to_install_sb3_when_missing(tmp_path):
    argv = ["--steps", "10", "--snapshot_every", "5", "--out", str(tmp_path)]
    code = (f"import runpy, sys; sys.modules['stable_baselines3'] = None; sys.argv[1:] = {argv!r}; "
            "runpy.run_module('scripts.collect_dataset', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "pip install stable-baselines3" in result.stderr and "Traceback" not in result.stderr
