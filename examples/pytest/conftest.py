"""Pytest fixtures that run job-launcher-mock for the tests that need it.

Copy this file next to your tests. `jlm_server` starts the binary with `--port 0`, reads
the port from the line it prints when it is ready (no sleeping, no guessing), and stops
it at the end of the session. If the mock does not start (a bad flag or variable, a
locked --data-dir), the failure quotes its stderr.

Two ways for a test to get a clean mock:
- `jlm`: the mock itself, reset before each test. Simple, but a reset wipes every
  test's runs: tests must not run in parallel against it.
- `jlm_session`: a session of its own on the shared mock, deleted after the test: the
  base URL of its own runs, journal, faults and clock. Tests may run in parallel (with
  pytest-xdist, or several pipelines) against one instance. Set $JLM_URL to share a mock
  that already runs (a staging container) instead of starting one.

The binary is found on $JLM_BIN, else on $PATH as `job-launcher-mock`.
"""

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request

import pytest


@pytest.fixture(scope="session")
def jlm_server():
    """The base URL of a job-launcher-mock: $JLM_URL's, or one started for the session."""
    shared = os.environ.get("JLM_URL")
    if shared:
        yield shared.rstrip("/")
        return
    process, url = start(find_binary())
    try:
        yield url
    finally:
        process.terminate()  # SIGTERM: it drains and exits 0
        process.wait(timeout=10)


@pytest.fixture
def jlm(jlm_server):
    """The mock's base URL, reset: no runs and an empty journal."""
    call(jlm_server, "POST", "/_mock/reset")
    return jlm_server


@pytest.fixture
def jlm_session(jlm_server, request):
    """The base URL of a session of this test's own on the shared mock, deleted after.

    Every route is there (`{base}/job-launcher/launcher/status`, `{base}/_mock/runs`...),
    on runs, journal, faults and clock no other test sees. It is named after the test, so
    the dashboard's session picker shows whose it is.
    """
    name = session_name(request.node.name)
    status, made = call(jlm_server, "POST", "/_mock/sessions", {"name": name, "ttl": "1h"})
    assert status == 201, f"cannot make a session: {status} {made}"
    try:
        yield jlm_server + "/sessions/" + made["id"]
    finally:
        call(jlm_server, "DELETE", "/_mock/sessions/" + made["id"])


def session_name(test_name):
    """A session name (the jobId rule, at most 64) from a test's name, made unique."""
    kept = "".join(c if c.isalnum() or c in "._-" else "-" for c in test_name)[:48]
    return f"{kept.strip('.') or 'test'}-{os.getpid()}-{next(_sessions_made)}"


_sessions_made = itertools.count(1)


def find_binary():
    binary = os.environ.get("JLM_BIN") or shutil.which("job-launcher-mock")
    if not binary:
        pytest.fail("set JLM_BIN to the job-launcher-mock binary, or put it on PATH")
    return binary


def start(binary, *flags):
    """Starts the mock on a free port; returns (process, base URL) once it is ready."""
    # Its logs go to a file rather than a pipe, which nobody would drain once it runs.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [binary, "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        # The one line it prints on stdout, once it is ready:
        # "job-launcher-mock listening on http://127.0.0.1:PORT"
        line = process.stdout.readline()
        if "listening on " in line:
            return process, line.split("listening on ", 1)[1].strip()
        process.kill()  # in case it is still running, having printed something else
        code = process.wait()
        stderr.seek(0)
        said = stderr.read().decode(errors="replace").strip()
        pytest.fail(f"job-launcher-mock did not start (exit {code}): {said or line!r}")


def call(base, method, path, body=None):
    """One request; returns (status, parsed JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return status, (json.loads(text) if text else None)
