"""job-launcher-mock's image from a pytest test, with Testcontainers for Python.

Copy this file next to your tests (`pip install testcontainers pytest`). The fixture starts
the image with its port published on a free host port, waits for the line the mock prints
on stdout once it is ready (no sleeping, no guessing), and removes the container and its
/data volume at the end, even when a test fails.

The image is $JLM_IMAGE, else `job-launcher-mock:latest` (`docker build -t
job-launcher-mock .`). Where Testcontainers' reaper (Ryuk) cannot be pulled, run with
TESTCONTAINERS_RYUK_DISABLED=true: the fixture cleans up by itself. .ci/container runs this
file against the image it has just built.
"""

import json
import os
import pathlib
import urllib.error
import urllib.request

import docker
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

IMAGE = os.environ.get("JLM_IMAGE", "job-launcher-mock:latest")
SEED = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/seed-status-update.json"


@pytest.fixture(scope="module")
def jlm():
    """The base URL of a fresh job-launcher-mock container."""
    container = (
        DockerContainer(IMAGE)
        .with_exposed_ports(8083)
        # "job-launcher-mock listening on http://0.0.0.0:8083", printed once it is ready.
        .waiting_for(LogMessageWaitStrategy("job-launcher-mock listening on").with_startup_timeout(60))
    )
    with container:  # on exit: removed, with its anonymous /data volume (Ryuk or not)
        host, port = container.get_container_host_ip(), container.get_exposed_port(8083)
        yield f"http://{host}:{port}"
        container_id = container.get_container_id()
    # The cleanup happened: the container is gone.
    with pytest.raises(docker.errors.NotFound):
        docker.from_env().containers.get(container_id)


def call(base, method, path, body=None):
    """One request; returns (status, parsed JSON body)."""
    request = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health(jlm):
    assert call(jlm, "GET", "/actuator/health") == (200, {"status": "UP"})


def test_fusions_example_update_is_stored_as_posted(jlm):
    status, answer = call(jlm, "POST", "/job-launcher/launcher/status", SEED.read_bytes())
    assert status == 200, answer
    assert answer["jobId"] == "hhzitrwancwv"

    status, runs = call(jlm, "GET", "/job-launcher/launcher/status")
    assert status == 200
    assert [run for run in runs if run["jobId"] == "hhzitrwancwv"] == [json.loads(SEED.read_bytes())]
