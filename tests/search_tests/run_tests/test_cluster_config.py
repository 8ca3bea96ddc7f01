"""examples/cluster/: the Ray cluster-launcher config passes Ray's own validation (offline), and the
sweep commands the examples run are commands this CLI accepts."""

from __future__ import annotations

import copy
import shlex

import jsonschema
import pytest
import yaml
from conftest import REPO
from ray.autoscaler._private.util import prepare_config, validate_config

from search.cli import build_parser
from search.spec import load_spec

EXAMPLES = REPO / "examples" / "cluster"


def _launcher() -> dict:
    return yaml.safe_load((EXAMPLES / "gpu-cluster.yaml").read_text())


def test_the_launcher_config_passes_rays_validation_with_gpu_workers_and_a_cpu_head():
    config = prepare_config(_launcher())  # Ray's defaults for the provider merged in, as `ray up` does
    validate_config(config)  # Ray's JSON schema and its cross-field checks
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["GPU"] == 0
    assert all(
        t["resources"].get("GPU", 0) >= 1 for name, t in types.items() if name != config["head_node_type"]
    )


def test_the_validation_refuses_a_broken_config():
    broken = copy.deepcopy(_launcher())
    broken["max_worker"] = 4  # a misspelt key
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(broken))


def _sweep_commands() -> list[str]:
    """The `gainakt-search` command lines the launcher's comments and the RayJob's entrypoint give."""
    launcher = (EXAMPLES / "gpu-cluster.yaml").read_text()
    lines = [line.split("#", 1)[1].strip() for line in launcher.splitlines() if "gainakt-search run" in line]
    job = yaml.safe_load((EXAMPLES / "rayjob.yaml").read_text())
    return [*lines, job["spec"]["entrypoint"]]


@pytest.mark.parametrize("command", _sweep_commands())
def test_the_examples_sweep_commands_parse_and_their_spec_loads(command):
    words = shlex.split(command)
    assert words[0] == "gainakt-search"
    args = build_parser().parse_args(words[1:])
    assert args.handler.__name__ == "_run" and args.address == "auto" and args.storage.startswith("s3://")
    spec = load_spec(REPO / args.spec)
    assert spec.gpus > 0  # the cluster's sweep asks for GPUs
