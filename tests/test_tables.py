"""scripts/tables.py on run directories with known scores written here, and on one real train.py run.

Every expected number below is worked out by hand in the comment next to it. Standard deviations are sample
standard deviations (n - 1), as the tables say.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image
from rliable import metrics

from scripts import tables

REPO = Path(__file__).resolve().parent.parent
REPS = 200
HOPPER, WALKER, REACH = "hopper-medium-replay-v2", "walker2d-medium-v2", "fetchreach-fourgoal-v0"
# dataset -> agent -> final score of seeds 0, 1, ...; each run's last10pct_mean_score is its final score - 1
FINAL_SCORES = {
    HOPPER: {"lom": [98, 100, 102, 104], "bc": [10, 20, 30, 40], "awac": [60, 70, 95]},
    WALKER: {"lom": [70, 80, 84, 86], "bc": [44, 50, 60, 66], "awac": [75, 90]},
    REACH: {"lom": [100, 90]},
    "local/hopper-medium-v0": {"bc": [12]},
}
# the last evaluation's goal shares of the two FetchReach runs
REACH_SHARES = [[1.0, 0.0, 0.0, 0.0], [0.5, 0.3, 0.2, 0.0]]


def write_run(run_dir: Path, dataset: str, agent: str, seed: int, final: float, shares=None) -> None:
    """A finished run as train.py leaves it: config.json, progress.jsonl (two evaluations), summary.json."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"dataset": dataset, "agent": agent, "seed": seed}))
    rows = [{"step": 100, "eval/normalised_score": final - 10}, {"step": 200, "eval/normalised_score": final}]
    rows[-1] |= {f"eval/goal_{goal}_share": share for goal, share in enumerate(shares or [], start=1)}
    (run_dir / "progress.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run_dir / "summary.json").write_text(json.dumps({"final_score": final, "last10pct_mean_score": final - 1,
                                                      "best_score": final, "steps": 200}))


def write_runs(root: Path) -> None:
    """LOM in the sweep script's layout, the other agents in train.py's own: both are found."""
    for dataset, agents in FINAL_SCORES.items():
        for agent, scores in agents.items():
            for seed, score in enumerate(scores):
                run_dir = (root / dataset.replace("/", "+") / f"{agent}_0123abcd" / f"seed{seed}" if agent == "lom"
                           else root / f"{dataset.replace('/', '-')}_{agent}_seed{seed}_20260101-000000")
                write_run(run_dir, dataset, agent, seed, score, REACH_SHARES[seed] if dataset == REACH else None)


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.tables", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TQDM_DISABLE": "1"})


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(root, the script's output, the real toy run's summary)."""
    root = tmp_path_factory.mktemp("tables")
    write_runs(root)
    toy_run = root / "toy-multimodal" / "bc" / "seed0"
    trained = subprocess.run([sys.executable, "train.py", "--agent", "bc", "--run_dir", str(toy_run),
                              "--training_steps", "40", "--eval_every", "20", "--eval_episodes", "4"], cwd=REPO,
                             capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"})
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = script("--root", str(root), "--reps", str(REPS))
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result.stdout, json.loads((toy_run / "summary.json").read_text())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_table1_cells_are_mean_and_sample_std_over_seeds_beside_the_paper_and_the_difference(made):
    _, stdout, _ = made
    table1 = stdout.split("## Table 1")[1].split("## Table 2")[0]
    assert "| dataset | bc | onestep | awac | cql | td3bc | lapo | dmpo | wcgan | wcvae | lom |" in table1
    # the paper's row order: walker2d-medium before hopper-medium-replay; no run and no paper number: no column
    walker_row, hopper_row = [line for line in table1.splitlines() if line.startswith(f"| {WALKER}")
                              or line.startswith(f"| {HOPPER}")]
    assert walker_row.startswith(f"| {WALKER}") and "mdn" not in table1 and "iql" not in table1
    # LOM on hopper-mr: mean 404 / 4 = 101; squared deviations 9 + 1 + 1 + 9 = 20, std sqrt(20 / 3) = 2.58;
    # paper 99.2, 101 - 99.2 = +1.8
    assert "| 101.0 ± 2.6 (n=4) · paper 99.2 · Δ +1.8 |" in hopper_row
    # LOM on walker2d-m: mean 320 / 4 = 80; 100 + 0 + 16 + 36 = 152, sqrt(152 / 3) = 7.12; 80 - 85.1 = -5.1
    assert "| 80.0 ± 7.1 (n=4) · paper 85.1 · Δ -5.1 |" in walker_row
    # AWAC on hopper-mr: mean 225 / 3 = 75; 225 + 25 + 400 = 650, sqrt(650 / 2) = 18.03; 75 - 69.8 = +5.2
    assert "| 75.0 ± 18.0 (n=3) · paper 69.8 · Δ +5.2 |" in hopper_row
    # AWAC on walker2d-m: mean 82.5; 56.25 + 56.25 = 112.5, sqrt(112.5 / 1) = 10.61; 82.5 - 83.1 = -0.6
    assert "| 82.5 ± 10.6 (n=2) · paper 83.1 · Δ -0.6 |" in walker_row
    # BC has no number in the paper's Table 1: ours only. hopper-mr: mean 25, 225 + 25 + 25 + 225 = 500,
    # sqrt(500 / 3) = 12.91
    assert hopper_row.startswith(f"| {HOPPER} | 25.0 ± 12.9 (n=4) | paper 98.5 |")
    assert "sample std" in table1


def test_the_metric_flag_reads_the_mean_of_the_last_tenth_of_evaluations(made, tmp_path, capsys):
    root, _, _ = made
    assert tables.main(["--root", str(root), "--layout", "table1", "--metric", "last10pct", "--reps", "20",
                        "--out", str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    # every last10pct_mean_score is the final score - 1: mean 100, the same spread, 100 - 99.2 = +0.8
    assert "| 100.0 ± 2.6 (n=4) · paper 99.2 · Δ +0.8 |" in stdout and "last10pct_mean_score" in stdout
    assert "## Table 2" not in stdout and "## Other" not in stdout


def test_csv_and_latex_hold_the_same_numbers(made):
    root, _, _ = made
    rows = {(row["dataset"], row["agent"]): row for row in read_csv(root / "tables" / "table1.csv")}
    lom = rows[HOPPER, "lom"]
    assert (lom["seeds"], float(lom["mean"]), float(lom["paper"])) == ("4", 101.0, 99.2)
    assert float(lom["std"]) == pytest.approx((20 / 3) ** 0.5) and float(lom["diff"]) == pytest.approx(1.8)
    assert (rows[HOPPER, "bc"]["paper"], rows[HOPPER, "bc"]["diff"]) == ("", "")
    assert [rows[HOPPER, "cql"][key] for key in ("seeds", "mean", "paper")] == ["0", "", "88.7"]  # paper only
    latex = (root / "tables" / "table1.tex").read_text()
    assert r"\toprule" in latex and r"\end{tabular}" in latex
    assert r"101.0 $\pm$ 2.6 (n=4) $\cdot$ paper 99.2 $\cdot$ $\Delta$ +1.8" in latex
    runs = read_csv(root / "tables" / "runs.csv")
    assert sorted(float(row["final_score"]) for row in runs if row["dataset"] == HOPPER and row["agent"] == "lom") \
        == [98, 100, 102, 104]


def test_table2_keeps_the_share_of_episodes_ending_at_each_goal(made):
    root, stdout, _ = made
    table2 = stdout.split("## Table 2")[1].split("## Other")[0]
    # mean 95; 25 + 25 = 50, sqrt(50 / 1) = 7.07; paper 47.2, 95 - 47.2 = +47.8
    assert "| 95.0 ± 7.1 (n=2) · paper 47.2 · Δ +47.8 |" in table2 and "| paper 14.3 |" in table2
    # goal 1: (1.0 + 0.5) / 2 = 75 %, goal 2: (0 + 0.3) / 2 = 15 %, goal 3: 10 %, goal 4: 0 %
    assert f"| {REACH} | lom | 2 | 75 | 15 | 10 | 0 |" in table2
    (row,) = [row for row in read_csv(root / "tables" / "table2.csv") if row["agent"] == "lom"]
    assert [float(row[f"goal_{goal}_share"]) for goal in (1, 2, 3, 4)] == pytest.approx([0.75, 0.15, 0.1, 0.0])
    assert r"goal 1 \%" in (root / "tables" / "table2.tex").read_text()


def test_datasets_of_neither_paper_table_get_our_numbers_only(made):
    _, stdout, toy_summary = made
    other = stdout.split("## Other datasets")[1]
    assert "| local/hopper-medium-v0 | 12.0 (n=1) |" in other  # one seed: no spread
    assert f"| toy-multimodal | {toy_summary['final_score']:.1f} (n=1) |" in other and "paper" not in other


def test_iqm_and_mean_over_tasks_match_a_hand_computation(made):
    root, stdout, _ = made
    rows = {row["agent"]: row for row in read_csv(root / "tables" / "aggregates_table1.csv")}
    # LOM's 4 x 2 scores sorted: 70 80 | 84 86 98 100 | 102 104: IQM (84 + 86 + 98 + 100) / 4 = 92;
    # mean (101 + 80) / 2 = 90.5
    assert (float(rows["lom"]["iqm"]), float(rows["lom"]["mean"])) == (92.0, 90.5)
    # BC's: 10 20 | 30 40 44 50 | 60 66: IQM 164 / 4 = 41; mean (25 + 55) / 2 = 40
    assert (float(rows["bc"]["iqm"]), float(rows["bc"]["mean"])) == (41.0, 40.0)
    # AWAC has 3 seeds on hopper-mr and 2 on walker2d-m, so its matrix holds seeds 0 and 1 of each:
    # 60 70 75 90 -> IQM (70 + 75) / 2 = 72.5, mean 295 / 4 = 73.75
    assert rows["awac"]["runs"] == "2" and (float(rows["awac"]["iqm"]), float(rows["awac"]["mean"])) == (72.5, 73.75)
    assert all(float(row["iqm_low"]) <= float(row["iqm"]) <= float(row["iqm_high"]) for row in rows.values())
    assert "| lom | 4 | 92.0 [" in stdout and f"({REPS} resamples, seed 0)" in stdout


def test_probability_of_improvement_is_one_for_scores_that_never_overlap(made):
    root, stdout, _ = made
    rows = {(row["x"], row["y"]): row for row in read_csv(root / "tables" / "improvement_table1.csv")}
    assert len(rows) == 6  # every ordered pair of three agents
    # on both tasks every LOM run scores above every BC run
    assert [float(rows["lom", "bc"][key]) for key in ("probability", "low", "high")] == [1.0, 1.0, 1.0]
    assert [float(rows["bc", "lom"][key]) for key in ("probability", "low", "high")] == [0.0, 0.0, 0.0]
    # LOM over AWAC, runs paired within each task: hopper-mr 98 100 102 104 vs 60 70: 8 of 8;
    # walker2d-m 70 80 84 86 vs 75 90: 70 > none, 80 84 86 > 75: 3 of 8; (1 + 3 / 8) / 2 = 0.6875
    assert float(rows["lom", "awac"]["probability"]) == 0.6875
    assert "| lom | bc | 1.00 [1.00, 1.00] |" in stdout and "| bc | lom | 0.00 [0.00, 0.00] |" in stdout


def test_our_probability_of_improvement_is_rliables_with_ties_and_unequal_runs():
    generator = np.random.default_rng(0)
    for runs_x, runs_y in ((3, 3), (4, 2), (1, 5)):
        scores_x, scores_y = generator.integers(0, 4, (runs_x, 3)), generator.integers(0, 4, (runs_y, 3))
        assert tables.probability_of_improvement(scores_x, scores_y) == pytest.approx(
            metrics.probability_of_improvement(scores_x, scores_y))


def test_the_bootstrap_gives_the_same_intervals_every_time():
    matrices = {"a": np.array([[1.0, 5.0], [2.0, 7.0], [4.0, 6.0]]), "b": np.array([[0.0, 3.0], [3.0, 9.0]])}
    assert tables.aggregate_rows(matrices, 50) == tables.aggregate_rows(matrices, 50)
    assert tables.improvement_rows(matrices, 50) == tables.improvement_rows(matrices, 50)


def test_every_png_opens_one_learning_curve_per_dataset(made):
    root, _, _ = made
    out = root / "tables"
    curves = sorted(path.name for path in out.glob("curve_*.png"))
    assert curves == ["curve_fetchreach-fourgoal-v0.png", f"curve_{HOPPER}.png", "curve_local_hopper-medium-v0.png",
                      "curve_toy-multimodal.png", f"curve_{WALKER}.png"]
    statistics = ["aggregates_table1.png", "improvement_table1.png", "aggregates_table2.png", "aggregates_other.png"]
    for name in curves + statistics:
        assert image.imread(out / name).ndim == 3, name
    assert not (out / "improvement_table2.png").exists()  # one agent: nothing to compare


def test_learning_curve_is_the_mean_and_std_over_seeds_at_each_step(made):
    root, _, _ = made
    runs = tables.runs_by_cell(root, "final_score")[HOPPER, "lom"]
    steps, means, stds = tables.learning_curve(runs)
    # step 100: every score - 10, so mean 91 and the final scores' spread sqrt(20 / 3)
    assert steps == [100, 200] and means == [91.0, 101.0] and stds == pytest.approx([(20 / 3) ** 0.5] * 2)


def test_a_seed_that_finished_twice_counts_once_with_a_warning(tmp_path, capsys):
    write_run(tmp_path / "first", HOPPER, "lom", 0, 50.0)
    write_run(tmp_path / "second", HOPPER, "lom", 0, 60.0)
    os.utime(tmp_path / "first" / "summary.json", (0, 0))  # the first finished long ago
    assert tables.runs_by_cell(tmp_path, "final_score")[HOPPER, "lom"] == [tables.Run(0, 60.0, tmp_path / "second")]
    assert "finished in" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "empty", "unfinished", "no table2 run", "zero reps"])
def test_bad_input_is_one_error_line_and_exit_2(case, tmp_path, capsys):
    root = tmp_path / "nowhere" if case == "missing" else tmp_path
    args = ["--root", str(root), "--reps", "0" if case == "zero reps" else "10"]
    if case == "unfinished":  # a run that never finished has no summary.json
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.json").write_text(json.dumps({"dataset": HOPPER, "agent": "lom", "seed": 0}))
    if case == "no table2 run":
        write_run(tmp_path / "run", HOPPER, "lom", 0, 50.0)
        args += ["--layout", "table2"]
    assert tables.main(args) == 2
    captured = capsys.readouterr()
    no_run = f"error: no finished run with final_score under {tmp_path} (a finished run's folder holds config.json"
    expected = {"missing": f"error: --root {root} is not a folder", "empty": no_run, "unfinished": no_run,
                "no table2 run": "error: no finished run on the datasets of Table 2: four-goal Fetch tasks under",
                "zero reps": "error: --reps must be at least 1, got 0"}[case]
    assert captured.err.startswith(expected) and captured.err.count("\n") == 1 and captured.out == ""
    assert not (tmp_path / "tables").exists()
