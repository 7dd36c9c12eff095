"""utils/runtime.py: metric averaging on the device, device choice, seeding and the kept heap."""

import math
import platform
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.errors import UserInputError
from utils.runtime import MetricAverager, NonFiniteWatch, resolve_device, seed_everything

HAS_CUDA = torch.cuda.is_available()
REPO = Path(__file__).resolve().parent.parent
BLOCK_PAGES = 40 * 2**20 // 4096  # one 40 MiB block in 4 KiB pages: above glibc's largest heap-served block

# Makes and frees three 40 MiB tensors ten times, as training steps do with their activations, after SETUP, and
# prints the page faults of the last four times (a kept heap settles within the first four).
HEAP_PROBE = """
import contextlib, io, resource, torch
SETUP
def churn():
    blocks = [torch.ones(10 * 2**20) for _ in range(3)]
    del blocks
for _ in range(6):
    churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
TRAIN_HELP = """
import train
with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
    train.main(["--help"])
"""


def test_metric_averager_means_known_tensors():
    averager = MetricAverager()
    averager.add({"loss": torch.tensor(1.0), "weight": torch.tensor(2.0)})
    averager.add({"loss": torch.tensor(3.0), "weight": torch.tensor(6.0)})
    averager.add({"loss": torch.tensor(5.0), "weight": torch.tensor(1.0)})
    means = averager.mean()
    assert means == pytest.approx({"loss": 3.0, "weight": 3.0})
    assert all(isinstance(value, float) for value in means.values())


def test_metric_averager_starts_over_after_mean():
    averager = MetricAverager()
    averager.add({"loss": torch.tensor(10.0)})
    assert averager.mean() == {"loss": 10.0}
    assert averager.mean() == {}
    averager.add({"loss": torch.tensor(2.0)})
    averager.add({"loss": torch.tensor(4.0)})
    assert averager.mean() == {"loss": 3.0}


def test_metric_averager_does_not_alias_the_added_tensor():
    averager = MetricAverager()
    value = torch.tensor(1.0)
    averager.add({"loss": value})
    value.add_(100.0)  # an agent reusing its metric tensor in place must not change the sum
    averager.add({"loss": torch.tensor(3.0)})
    assert averager.mean() == {"loss": 2.0}


def test_metric_averager_resumes_from_a_checkpoint_of_the_earlier_format():
    # Checkpoints written by the earlier averager held {"sums": {key: tensor}, "count": n}.
    averager = MetricAverager()
    averager.load_state_dict({"sums": {"loss": torch.tensor(6.0), "weight": torch.tensor(3.0)}, "count": 3})
    averager.add({"loss": torch.tensor(2.0), "weight": torch.tensor(1.0)})
    assert averager.mean() == pytest.approx({"loss": 2.0, "weight": 1.0})
    averager.load_state_dict({"sums": {}, "count": 0})  # saved right after an evaluation
    assert averager.mean() == {}


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_resolve_device_cuda_without_gpu_raises_user_input_error():
    with pytest.raises(UserInputError, match="--device cpu"):
        resolve_device("cuda")


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_resolve_device_auto_gives_cpu_without_gpu():
    assert resolve_device("auto") == torch.device("cpu")


def test_resolve_device_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    def draws():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(123)
    first = draws()
    seed_everything(123)
    assert draws() == first
    seed_everything(124)
    assert draws() != first


def test_non_finite_watch_reports_the_first_bad_metric_and_step():
    watch = NonFiniteWatch()
    for step in (1, 2, 3):
        watch.add({"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, step)
    assert watch.first_failure() is None
    watch.add({"a": torch.tensor(1.0), "b": torch.tensor(float("nan"))}, 4)
    watch.add({"a": torch.tensor(float("inf")), "b": torch.tensor(2.0)}, 6)  # later, and b recovers
    assert watch.first_failure() == ("b", 4)


def test_non_finite_watch_is_empty_before_any_step():
    assert NonFiniteWatch().first_failure() is None


def test_metric_averager_means_each_key_over_the_steps_that_reported_it():
    # TD3+BC reports its actor loss every second step only: it is averaged over those steps.
    averager = MetricAverager()
    averager.add({"critic_loss": torch.tensor(1.0), "actor_loss": torch.tensor(10.0)})
    averager.add({"critic_loss": torch.tensor(3.0)})
    averager.add({"critic_loss": torch.tensor(5.0), "actor_loss": torch.tensor(20.0)})
    averager.add({"critic_loss": torch.tensor(7.0)})
    assert averager.mean() == {"critic_loss": 4.0, "actor_loss": 15.0}

    averager.add({"critic_loss": torch.tensor(1.0)})
    resumed = MetricAverager()
    resumed.load_state_dict(averager.state_dict())
    resumed.add({"critic_loss": torch.tensor(2.0), "actor_loss": torch.tensor(4.0)})
    assert resumed.mean() == {"critic_loss": 1.5, "actor_loss": 4.0}


def test_metric_averager_resumes_from_a_checkpoint_of_one_stacked_group():
    averager = MetricAverager()
    averager.load_state_dict({"keys": ["loss"], "total": torch.tensor([6.0]), "count": 3})
    averager.add({"loss": torch.tensor(2.0)})
    assert averager.mean() == {"loss": 2.0}


def test_non_finite_watch_follows_metrics_that_appear_on_some_steps_only():
    watch = NonFiniteWatch()
    watch.add({"critic_loss": torch.tensor(1.0)}, step=1)
    watch.add({"critic_loss": torch.tensor(1.0), "actor_loss": torch.tensor(math.inf)}, step=2)
    watch.add({"critic_loss": torch.tensor(math.nan)}, step=3)
    restored = NonFiniteWatch()
    restored.load_state_dict(watch.state_dict())
    assert watch.first_failure() == restored.first_failure() == ("actor_loss", 2)


def page_faults_of_churn(setup: str) -> int:
    result = subprocess.run([sys.executable, "-c", HEAP_PROBE.replace("SETUP", setup)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_heap_reuses_freed_blocks_without_page_faults_and_train_py_keeps_it():
    by_default = page_faults_of_churn("")
    kept = page_faults_of_churn("from utils.runtime import keep_freed_memory; assert keep_freed_memory()")
    in_train_py = page_faults_of_churn(TRAIN_HELP)
    # By default each 40 MiB block is mapped afresh and faulted in page by page: 4 x 3 blocks.
    assert by_default > 0.9 * 12 * BLOCK_PAGES
    # Kept, freed blocks are reused: not even one block's pages fault again.
    assert kept < BLOCK_PAGES / 10
    assert in_train_py < BLOCK_PAGES / 10
