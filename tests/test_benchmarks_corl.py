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
