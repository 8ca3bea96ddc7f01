"""Shared fixtures: the real ASSIST2015 data from ../shared when it is there, small simulated data always."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gainakt.data import load_dataset
from gainakt.sequences import Dataset

REPO = Path(__file__).resolve().parents[1]
ASSIST2015 = REPO.parent / "shared" / "data" / "assist2015"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With workers (pytest-xdist, `--dist loadgroup`), a slow module's tests stay together on one
    worker, in order: they share module fixtures (a sweep, a Ray) and start drivers of their own."""
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session")
def assist_dir() -> Path:
    if not (ASSIST2015 / "train_valid.csv").is_file():
        pytest.skip(f"real data not found at {ASSIST2015} (only the project's own checkout has ../shared)")
    return ASSIST2015


@pytest.fixture(scope="session")
def assist(assist_dir: Path) -> Dataset:
    return load_dataset(assist_dir)


@pytest.fixture(scope="session")
def small_synthetic() -> Dataset:
    return load_dataset("synthetic:students=300,concepts=20,seed=3")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_head():
    """One local Ray for the whole test run, of 2 CPUs like the machine: a head node in processes of
    its own (`ray.cluster_utils.Cluster`), so that this process only connects to it and a test that
    needs another cluster can disconnect without stopping it. Stopped by its handle at the end."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def shared_ray(ray_head) -> str:
    """This process connected to the session's Ray, and its address for drivers in subprocesses
    (`--address`). The CLI uses a connected Ray as it is, so an in-process sweep starts none; the
    connection stays open for the next test that asks for it."""
    return connected(ray_head)


def connected(ray_head) -> str:
    """Connect this process to `ray_head` unless it is connected; the head's address."""
    import logging

    import ray

    if not ray.is_initialized():
        ray.init(address=ray_head.address, logging_level=logging.ERROR, log_to_driver=False)
    return ray_head.address


@pytest.fixture(autouse=True)
def _no_stray_ray_connection(request):
    """A test that does not ask for the shared Ray finds this process connected to none, as a user's
    process would be: the CLI then starts a local Ray or connects to the test's own cluster."""
    if "shared_ray" not in request.fixturenames:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    yield


def moto_server(env: dict[str, str] | None = None):
    """moto's S3 server on 127.0.0.1 in its own process, stopped by its process id: yields its
    `host:port`; skips when it is not installed or does not answer."""
    import shutil
    import sys

    from local_server import local_server

    program = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if program is None:
        pytest.skip("moto's S3 server is not installed (pip install 'moto[server]', in the test extra)")
    try:
        with local_server(
            lambda port: [program, "-H", "127.0.0.1", "-p", str(port)], "/moto-api/", 30, env
        ) as port:
            yield f"127.0.0.1:{port}"
    except TimeoutError as err:
        pytest.skip(f"moto's S3 server did not start: {err}")


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint on 127.0.0.1 that takes any credentials."""
    yield from moto_server()


@pytest.fixture
def s3_server_with_auth():
    """A real S3 endpoint on 127.0.0.1 that checks credentials (moto's IAM): its first four
    requests, unchecked, make a user with full rights, its access key and a bucket. Yields the
    endpoint, the bucket and the user's (access key, secret)."""
    import boto3

    for endpoint in moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "4"}):
        url = f"http://{endpoint}"
        setup = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", "region_name": "us-east-1"}
        iam = boto3.client("iam", endpoint_url=url, **setup)
        iam.create_user(UserName="owner")
        policy = (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
        )
        iam.put_user_policy(UserName="owner", PolicyName="all", PolicyDocument=policy)
        key = iam.create_access_key(UserName="owner")["AccessKey"]
        boto3.client("s3", endpoint_url=url, **setup).create_bucket(Bucket="guarded")
        yield endpoint, "guarded", (key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture
def s3_storage(s3_server, monkeypatch, request) -> str:
    """A fresh bucket on the local S3 server, as a `--storage` URI (credentials from the environment,
    as for any S3 endpoint)."""
    import uuid

    import pyarrow.fs as pafs

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"gainakt-{uuid.uuid4().hex[:12]}"
    options = f"endpoint_override={s3_server}&scheme=http"
    fs, _ = pafs.FileSystem.from_uri(f"s3://{bucket}?{options}&allow_bucket_creation=true")
    fs.create_dir(bucket)
    return f"s3://{bucket}/studies?{options}"
