"""`python -m benchmarks.corl` refuses a --corl_path that is not a CORL checkout in one line (CORL's code itself
is never needed here)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_corl_benchmark(corl_path: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchmarks.corl", "--corl_path", str(corl_path), "--device", "cpu"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_missing_corl_directory_is_refused_in_one_line(tmp_path):
    result = run_corl_benchmark(tmp_path / "CORL")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"--corl_path {tmp_path / 'CORL'}: no such directory" in result.stderr
    assert "git clone https://github.com/tinkoff-ai/CORL" in result.stderr


def test_a_directory_without_corls_files_is_refused_in_one_line(tmp_path):
    result = run_corl_benchmark(tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no algorithms/offline/td3_bc.py there" in result.stderr


def test_the_paired_summary_is_the_ratio_of_summed_block_times_and_the_median_block_ratio():
    from benchmarks.corl import paired_summary

    # Ours takes 1, 2, 1, 4 s per 10-step block, our products alone 0.5 s each, CORL's 2, 3, 1, 8 s: block
    # ratios 2, 1.5, 1, 2.
    summary = paired_summary([1.0, 2.0, 1.0, 4.0], [0.5] * 4, [2.0, 3.0, 1.0, 8.0], block=10)
    assert summary["ours_steps_per_s"] == 40 / 8 and summary["corl_steps_per_s"] == 40 / 14
    assert summary["products_steps_per_s"] == 40 / 2 and summary["products_over_corl"] == 14 / 2
    assert summary["ours_over_corl"] == 14 / 8
    assert summary["block_ratio_median"] == 1.75  # the mean of the middle two, 1.5 and 2
    assert summary["block_ratio_quartiles"] == [1.125, 2.0]  # statistics.quantiles' exclusive method
    assert summary["seconds"] == 24.0


def test_paired_timing_runs_each_contender_in_blocks_whose_order_reverses_every_round():
    import argparse

    import torch

    from benchmarks.corl import interleave

    calls = []
    steps = [lambda i, name=name: calls.append((name, i)) for name in "abc"]
    seconds = interleave(steps, argparse.Namespace(warmup=1, steps=4, block=2), torch.device("cpu"))
    assert calls == [("a", 1), ("b", 1), ("c", 1),  # warm-up
                     ("a", 2), ("a", 3), ("b", 2), ("b", 3), ("c", 2), ("c", 3),
                     ("c", 4), ("c", 5), ("b", 4), ("b", 5), ("a", 4), ("a", 5)]
    assert [len(blocks) for blocks in seconds] == [2, 2, 2] and all(t > 0 for blocks in seconds for t in blocks)


def test_paired_timing_asks_for_at_least_two_blocks(tmp_path):
    command = [sys.executable, "-m", "benchmarks.corl", "--corl_path", str(tmp_path), "--paired", "--steps", "10",
               "--block", "10"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert "--block must be at least 1 and at most half of --steps" in result.stderr
