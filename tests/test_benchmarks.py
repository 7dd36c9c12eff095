"""`python -m benchmarks.throughput` runs and reports what it measured, one JSON line per measurement."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_throughput_reports_each_measurement_with_the_preset_settings(tmp_path):
    out = tmp_path / "bench.jsonl"
    command = [sys.executable, "-m", "benchmarks.throughput", "--device", "cpu", "--preset",
               "halfcheetah-medium-replay-v2", "--steps", "3", "--warmup", "1", "--benchmark", "mdn_pretrain",
               "--benchmark", "mdn_table", "--benchmark", "lom_update", "--benchmark", "lom_hyper_q",
               "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["benchmark"] for line in lines] == ["mdn_pretrain", "mdn_table", "lom_update", "lom_hyper_q"]
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines
    for line in lines:
        assert line["preset"] == "halfcheetah-medium-replay-v2" and line["device"] == "cpu"
        assert (line["K"], line["M"], line["obs_dim"], line["act_dim"]) == (1, 5, 17, 6)
        assert (line["value_batch_size"], line["hyper_batch_size"], line["policy_batch_size"],
                line["gmm_batch_size"]) == (256, 1024, 256, 512)
        assert line["dataset_size"] == 202_000
    for line in lines[:1] + lines[2:]:
        assert line["steps"] == 3 and line["steps_per_s"] > 0
        assert line["steps_per_s"] == 3 / line["seconds"]
