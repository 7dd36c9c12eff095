"""scripts/multimodal_table.py and scripts/plot_modes.py on real (tiny) four-goal FetchReach runs."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TASK = "fetchreach-fourgoal-v0"
STARTS = 6  # 6 x 4 goals x 50 steps = 1,200 rows: more than LOM's hyper Q batch
TINY = ["--fetch_starts", str(STARTS), "--training_steps", "40", "--eval_every", "20", "--eval_episodes", "4"]


def script(name: str, *args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOM_DATA_DIR": str(data_dir), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", f"scripts.{name}", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    args = ["--tasks", TASK, "--agents", "bc", "lom", "--seeds", "2", "--log_path", str(root / "runs"),
            "--agent_flags", "lom=--gmm_steps 40 --hyper_batch_size 256", "--", *TINY]
    first = script("multimodal_table", *args, data_dir=root / "data")
    assert first.returncode == 0, first.stderr[-3000:]
    again = script("multimodal_table", *args, data_dir=root / "data")
    assert again.returncode == 0, again.stderr[-3000:]
    return root, first, again


def test_table_runs_every_agent_and_seed_and_reports_their_mean_and_std(table):
    root, first, _ = table
    with open(root / "runs" / "multimodal_table.csv") as file:
        rows = list(csv.DictReader(file))
    assert sorted((row["agent"], int(row["seed"])) for row in rows) == [("bc", 0), ("bc", 1), ("lom", 0), ("lom", 1)]
    for agent in ("bc", "lom"):
        runs = [row for row in rows if row["agent"] == agent]
        for row in runs:  # each CSV row is that run's own final evaluation
            summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
            last = json.loads((Path(row["run_dir"]) / "progress.jsonl").read_text().splitlines()[-1])
            assert float(row["score"]) == summary["final_score"] and int(row["steps"]) == 40
            assert [float(row[f"goal_{g}_share"]) for g in (1, 2, 3, 4)] == [last[f"eval/goal_{g}_share"]
                                                                            for g in (1, 2, 3, 4)]
        scores = [float(row["score"]) for row in runs]
        shares = [f"{100 * statistics.mean(float(row['goal_1_share']) for row in runs):.0f}"]
        expected = f"| {TASK} | {agent} | 2 | {statistics.mean(scores):.1f} ± {statistics.stdev(scores):.1f} | {shares[0]} |"
        assert expected in first.stdout


def test_table_reuses_finished_runs_instead_of_training_again(table):
    root, first, again = table
    assert first.stdout.count("$ ") == 4 and "reusing" not in first.stdout
    assert again.stdout.count("reusing") == 4 and "$ " not in again.stdout
    assert len(list((root / "runs").iterdir())) == 4 + 1  # four run directories and the CSV
    assert first.stdout.split("| task")[1] == again.stdout.split("| task")[1]


def test_table_rejects_flags_for_an_agent_it_does_not_run(tmp_path):
    result = script("multimodal_table", "--agents", "bc", "--agent_flags", "lom=--beta 1", data_dir=tmp_path)
    assert result.returncode != 0 and "--agent_flags 'lom=--beta 1'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_table_rejects_zero_seeds(tmp_path):
    result = script("multimodal_table", "--seeds", "0", data_dir=tmp_path)
    assert result.returncode == 2 and "--seeds must be at least 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_plot_shows_the_dataset_labels_lom_components_and_each_agents_action(table, tmp_path):
    root, _, _ = table
    out = tmp_path / "modes.png"
    result = script("plot_modes", str(root / "runs"), "--task", TASK, "--seed", "1", "--out", str(out),
                    data_dir=root / "data")
    assert result.returncode == 0, result.stderr[-3000:]
    from matplotlib import image

    assert image.imread(out).shape[:2] == (720, 768)  # 6.4 x 6.0 inches at 120 dpi
    picture = json.loads(out.with_suffix(".json").read_text())
    (data_file,) = (root / "data").glob(f"{TASK}_data*_seed1_*.hdf5")
    with h5py.File(data_file) as file:  # the first start state's four trajectories begin 50 rows apart
        labels = file["actions"][[0, 50, 100, 150], :2]
    np.testing.assert_allclose(picture["dataset_actions"], labels, atol=1e-6)
    # the hyper Q's argmax among the components with at least mode_min_weight (the config's 0.05) of the mixture
    weights, hyper_q = np.array(picture["mdn_weights"]), np.array(picture["hyper_q"])
    eligible = weights >= min(0.05, weights.max())
    assert picture["selected_component"] == int(np.argmax(np.where(eligible, hyper_q, -np.inf)))
    assert len(picture["mdn_weights"]) == 4 and abs(sum(picture["mdn_weights"]) - 1) < 1e-5
    assert set(picture["agent_actions"]) == {"bc", "lom"}
    assert all(-1 <= value <= 1 for action in picture["agent_actions"].values() for value in action)


def test_plot_without_a_lom_run_says_what_to_run_first(tmp_path):
    result = script("plot_modes", str(tmp_path), data_dir=tmp_path)
    assert result.returncode == 2 and "no finished LOM run" in result.stderr and "Traceback" not in result.stderr
