"""utils/runtime.py: metric averaging on the device, device choice and seeding."""

import math
import random

import numpy as np
import pytest
import torch

from utils.errors import UserInputError
from utils.runtime import MetricAverager, NonFiniteWatch, resolve_device, seed_everything

HAS_CUDA = torch.cuda.is_available()


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
