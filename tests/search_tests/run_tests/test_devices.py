"""Where a sweep trial trains: its `device` setting against the GPUs Ray assigned it."""

from __future__ import annotations

import pytest

from gainakt.errors import ConfigError
from search.run.trainable import trial_device


def test_cpu_is_kept_even_when_ray_assigned_a_gpu():
    assert trial_device("cpu", ["0"], cuda_available=False, node="n1") == "cpu"
    assert trial_device("cpu", ["0"], cuda_available=True, node="n1") == "cpu"


def test_auto_trains_on_the_assigned_gpu_and_on_the_cpu_without_one():
    assert trial_device("auto", ["1"], cuda_available=True, node="n1") == "cuda"
    assert trial_device("auto", [], cuda_available=True, node="n1") == "cpu"
    assert trial_device("auto", [], cuda_available=False, node="n1") == "cpu"


def test_a_gpu_on_a_node_without_cuda_fails_naming_the_node_and_the_way_out():
    with pytest.raises(ConfigError) as caught:
        trial_device("auto", ["0"], cuda_available=False, node="abc123 (host-7)")
    message = str(caught.value)
    assert "\n" not in message and "abc123 (host-7)" in message and "GPU 0" in message
    assert 'device = "cpu"' in message


def test_cuda_without_an_assigned_gpu_fails():
    with pytest.raises(ConfigError, match="ask for --gpus"):
        trial_device("cuda", [], cuda_available=True, node="n1")
