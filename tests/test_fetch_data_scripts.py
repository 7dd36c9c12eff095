"""scripts/fetch_data.py (what the four-goal Fetch sets hold) and scripts/mdn_modes.py (whether the behaviour
MDN separates the four goals' modes), on small sets made here."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from networks.mdn import GaussianMixture, MixtureDensityNetwork, SPREAD_RANGE
from scripts import fetch_data, mdn_modes

REPO = Path(__file__).resolve().parent.parent
REACH = "fetchreach-fourgoal-v0"


def test_fetch_data_reports_rows_success_and_label_shares_and_writes_them(tmp_path):
    out = tmp_path / "report.json"
    assert fetch_data.main(["--tasks", REACH, "--layout", "start_only", "--starts", "2", "--data_dir",
                            str(tmp_path / "data"), "--queries", "400", "--out", str(out)]) == 0
    (report,) = json.loads(out.read_text())
    assert report["rows"] == 2 * 4 * 50 and report["expert_success_per_goal"] == [1.0] * 4
    assert report["exact_share_3_goals"] == 8 / 400  # the two start states' four rows each
    # Within a tenth of a std per dimension, the start states (the gripper at rest, two of them 5 mm apart at
    # most) are the only rows with three goals near them.
    assert 0 < report["neighbourhood_share_3_goals"] < 0.1 and report["generation_seconds"] > 0


def test_mdn_modes_trains_the_mdn_and_counts_the_states_it_separates(tmp_path):
    out = tmp_path / "modes.json"
    assert mdn_modes.main(["--fetch_data", "start_only", "--starts", "2", "--data_dir", str(tmp_path / "data"),
                           "--num_mixtures", "4", "--init", "plain,spread", "--steps", "50", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [(r["M"], r["init"]) for r in results] == [(4, "plain"), (4, "spread")]
    for result in results:
        assert result["states"] == 2  # the start-only data branches at its start states only
        assert sum(result["quadrant_counts"]) == 2
        assert result["separated_share"] == sum(result["quadrant_counts"][3:]) / 2


def test_separated_quadrants_by_hand():
    weights = torch.tensor([[0.4, 0.3, 0.25, 0.05],  # three heavy components in three quadrants
                            [0.5, 0.45, 0.05, 0.0],  # two heavy ones
                            [0.3, 0.3, 0.3, 0.1]])  # four heavy ones, all in one quadrant
    corners = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    means = torch.stack([corners, corners, corners[:1].repeat(4, 1)])
    mixture = GaussianMixture(logits=(weights + 1e-12).log(), means=means, stds=torch.ones_like(means))
    np.testing.assert_array_equal(mdn_modes.separated_quadrants(mixture).numpy(), [3, 2, 1])


def test_spread_initialisation_starts_each_component_at_its_own_action_at_every_state():
    torch.manual_seed(0)
    states = torch.randn(64, 10)
    spread = MixtureDensityNetwork(10, 4, 8, (64, 64), init="spread")(states).means  # (64, 8, 4)
    torch.manual_seed(0)
    plain = MixtureDensityNetwork(10, 4, 8, (64, 64))(states).means
    assert spread.abs().max() <= SPREAD_RANGE + 0.05
    assert spread.std(dim=0).max() < 0.05  # nearly the same at every state
    assert spread.mean(0).std(dim=0).min() > 0.2 > plain.mean(0).std(dim=0).max()  # apart, unlike plain ones


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for script, args, message in [
        ("scripts.fetch_data", ["--tasks", "fetchreach-fourgoal-v1"], "error: --tasks: unknown fetchreach-fourgoal-v1"),
        ("scripts.mdn_modes", ["--init", "wide"], "error: --init: unknown wide; choose from plain, spread"),
        ("scripts.mdn_modes", ["--num_mixtures", "4,x"], "error: --num_mixtures takes comma-separated integers"),
    ]:
        result = subprocess.run([sys.executable, "-m", script, *args, "--data_dir", str(tmp_path)], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stderr.strip().startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
