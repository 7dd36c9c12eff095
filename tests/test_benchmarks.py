"""`python -m benchmarks.throughput` runs and reports what it measured, one JSON line per measurement."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_throughput_reports_each_measurement_with_the_preset_settings(tmp_path):
    out = tmp_path / "bench.jsonl"
    command = [sys.executable, "-m", "benchmarks.throughput", "--device", "cpu", "--preset",
               "halfcheetah-medium-replay-v2", "--agent", "lom", "--agent", "td3bc", "--steps", "3", "--warmup", "1",
               "--benchmark", "pretrain", "--benchmark", "table", "--benchmark", "update",
               "--benchmark", "lom_hyper_q", "--set", "hidden=64", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["agent"], line["benchmark"]) for line in lines] == [
        ("lom", "pretrain"), ("lom", "table"), ("lom", "update"), ("lom", "lom_hyper_q"), ("td3bc", "update")]
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines
    for line in lines:
        assert line["preset"] == "halfcheetah-medium-replay-v2" and line["device"] == "cpu"
        assert (line["obs_dim"], line["act_dim"], line["dataset_size"]) == (17, 6, 202_000)
        assert line["settings"]["hidden"] == 64  # --set reaches every agent that has the setting
    lom = lines[0]["settings"]
    assert (lom["K"], lom["num_mixtures"], lom["C"], lom["ac_rand"]) == (1, 5, 100.0, 0.4)  # the preset's
    assert (lom["value_batch_size"], lom["hyper_batch_size"], lom["gmm_batch_size"]) == (256, 1024, 512)
    for line in lines[:1] + lines[2:]:
        assert line["steps"] == 3 and line["steps_per_s"] > 0
        assert line["steps_per_s"] == 3 / line["seconds"]
        assert line["heap"] == "kept" and line["page_faults_per_step"] >= 0  # train.py's heap, by default


def test_the_system_heap_is_measured_when_asked_for_and_said_on_every_line():
    command = [sys.executable, "-m", "benchmarks.throughput", "--device", "cpu", "--preset", "hopper-medium-v2",
               "--agent", "bc", "--benchmark", "update", "--set", "hidden=64", "--steps", "2", "--warmup", "1",
               "--heap", "system"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["heap"] == "system" and line["benchmark"] == "update"


def test_a_setting_no_chosen_agent_has_is_refused_in_one_line():
    command = [sys.executable, "-m", "benchmarks.throughput", "--agent", "bc", "--set", "K=2"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--set 'K=2': expected NAME=VALUE with NAME a setting of bc" in result.stderr


def test_products_replays_the_matrix_products_of_an_update_and_counts_their_flop():
    command = [sys.executable, "-m", "benchmarks.throughput", "--device", "cpu", "--preset", "hopper-medium-v2",
               "--agent", "bc", "--benchmark", "products", "--set", "hidden=64", "--steps", "4", "--warmup", "2"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["benchmark"] == "products" and line["settings"]["batch_size"] == 256
    # BC's Gaussian policy, 11 -> 64 -> 64 -> 2 x 3 on 256 rows: a product per layer forward, one per layer for
    # the weight gradients, and one per layer but the first for the gradient of its input (the states need none).
    layers = [(11, 64), (64, 64), (64, 6)]
    forward = sum(2 * 256 * fan_in * fan_out for fan_in, fan_out in layers)
    input_gradients = sum(2 * 256 * fan_in * fan_out for fan_in, fan_out in layers[1:])
    assert line["products_per_step"] == 8
    assert round(line["gflop_per_step"] * 1e9) == 2 * forward + input_gradients
    assert (line["steps"], line["warmup"]) == (4, 2) and line["steps_per_s"] == 4 / line["seconds"]
