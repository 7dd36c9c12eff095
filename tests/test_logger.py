"""utils/logger.py: progress files read back after metrics that appear only from some step on."""

import csv
import json

from utils.logger import RunLogger


def test_a_metric_that_appears_later_widens_the_csv_and_keeps_every_row(tmp_path):
    logger = RunLogger(tmp_path, {})
    logger.log(10, {"train/sarsa_loss": 0.5})
    logger.log(20, {"train/sarsa_loss": 0.25, "train/policy_loss": -1.5})
    logger.log(30, {"train/policy_loss": -2.0})
    logger.close()
    with (tmp_path / "progress.csv").open(newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == ["step", "wall_time_s", "train/sarsa_loss", "train/policy_loss"]
    assert [(r["step"], r["train/sarsa_loss"], r["train/policy_loss"]) for r in rows] == [
        ("10", "0.5", ""), ("20", "0.25", "-1.5"), ("30", "", "-2.0")]
    lines = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert [line.get("train/policy_loss") for line in lines] == [None, -1.5, -2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "progress.csv", "progress.jsonl"]
