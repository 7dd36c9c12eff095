"""scripts/plot_modes.py and scripts/mode_choice.py on real (tiny) four-goal FetchReach runs of BC and LOM."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TASK = "fetchreach-fourgoal-v0"
SEED = 1
STARTS = 6  # 6 x 4 goals x 50 steps = 1,200 rows: more than LOM's hyper Q batch
TINY = ["--fetch_starts", str(STARTS), "--fetch_data", "start_only", "--training_steps", "40", "--eval_every", "20",
        "--eval_episodes", "4"]
MODE_MIN_WEIGHT = 0.05  # not LOM's default (0): the plot must follow the run's own selection rule
AGENT_FLAGS = {"bc": [], "lom": ["--gmm_steps", "40", "--hyper_batch_size", "256",
                              "--mode_min_weight", str(MODE_MIN_WEIGHT)]}


def environment(data_dir: Path) -> dict:
    return {**os.environ, "LOM_DATA_DIR": str(data_dir), "TQDM_DISABLE": "1"}


def run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=environment(data_dir), capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Log folder and data folder of one finished BC run and one finished LOM run (same task and seed)."""
    root = tmp_path_factory.mktemp("modes")
    # side by side, one per core: each run is mostly start-up and evaluation, and the data cache is safe to share
    trainings = [subprocess.Popen([sys.executable, "train.py", "--env_name", TASK, "--agent", agent, "--seed",
                                   str(SEED), "--log_path", str(root / "runs"), "--gmm_dir", str(root / "gmm"), *TINY,
                                   *flags], cwd=REPO, env=environment(root / "data"), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for agent, flags in AGENT_FLAGS.items()]
    for training in trainings:
        _, stderr = training.communicate(timeout=600)
        assert training.returncode == 0, stderr[-3000:]
    return root / "runs", root / "data"


def test_figure_2_shows_the_dataset_labels_and_each_agents_action_distribution(runs, tmp_path):
    log_path, data_dir = runs
    out = tmp_path / "modes.png"
    result = run(["-m", "scripts.plot_modes", str(log_path), "--task", TASK, "--seed", str(SEED), "--out", str(out)],
                 data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    from matplotlib import image

    assert image.imread(out).shape[:2] == (360, 960)  # data, BC and LOM: 3 panels of 3.2 x 3.6 inches at 100 dpi
    picture = json.loads(out.with_suffix(".json").read_text())
    (data_file,) = data_dir.glob(f"{TASK}_data*_seed{SEED}_*.hdf5")
    with h5py.File(data_file) as file:  # the first start state's four trajectories begin 50 rows apart
        labels = file["actions"][[0, 50, 100, 150], :2]
    np.testing.assert_allclose(picture["dataset_actions"], labels, atol=1e-6)
    bc, lom = picture["panels"]
    assert (bc["agent"], lom["agent"]) == ("bc", "lom") and set(bc) == {"agent", "action"}
    # the hyper Q's argmax among the components with at least MODE_MIN_WEIGHT of the mixture
    weights, hyper_q = np.array(lom["weights"]), np.array(lom["hyper_q"])
    eligible = weights >= min(MODE_MIN_WEIGHT, weights.max())
    assert lom["selected_component"] == int(np.argmax(np.where(eligible, hyper_q, -np.inf)))
    assert len(weights) == lom["num_mixtures"] == 4 and abs(weights.sum() - 1) < 1e-5
    # LOM's samples come from the selected component: their mean is near its mean (clipped to the action box)
    selected_mean = np.clip(lom["means"][lom["selected_component"]], -1, 1)
    assert np.abs(np.mean(lom["samples"], axis=0) - selected_mean).max() < 3 * max(lom["stds"][lom["selected_component"]])
    assert all(-1 <= value <= 1 for panel in (bc, lom) for value in panel["action"])


def test_figure_4_draws_one_panel_per_lom_run(runs, tmp_path):
    log_path, data_dir = runs
    out = tmp_path / "fig4.png"
    result = run(["-m", "scripts.plot_modes", str(log_path), "--figure", "4", "--task", TASK, "--seed", str(SEED),
                  "--out", str(out)], data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    picture = json.loads(out.with_suffix(".json").read_text())
    assert [panel["agent"] for panel in picture["panels"]] == ["lom"] and "LOM, M = 4" in result.stdout


def test_plot_without_a_lom_run_says_what_to_run_first(tmp_path):
    result = run(["-m", "scripts.plot_modes", str(tmp_path)], tmp_path)
    assert result.returncode == 2 and "no finished LOM run" in result.stderr and "Traceback" not in result.stderr


def test_mode_choice_counts_the_rows_where_the_selected_component_is_empty(runs):
    log_path, data_dir = runs
    share = {}
    for below in ("0.05", "1.01"):
        result = run(["-m", "scripts.mode_choice", str(log_path), "--task", TASK, "--seeds", str(SEED), "--rows",
                      "500", "--below", below], data_dir)
        assert result.returncode == 0, result.stderr[-3000:]
        share[below] = float(result.stdout.split(" of the mixture at ")[1].split(" %")[0])
    # the run selects among components with >= MODE_MIN_WEIGHT only, so never an empty one; every weight is < 1.01
    assert share == {"0.05": 0.0, "1.01": 100.0}


def test_mode_choice_without_a_lom_run_says_what_to_run_first(tmp_path):
    result = run(["-m", "scripts.mode_choice", str(tmp_path)], tmp_path)
    assert result.returncode == 2 and "no finished LOM run" in result.stderr and "Traceback" not in result.stderr
