#!/usr/bin/env python3
"""The HTTP side of .ci/container's checks, against a container's published port.

Standard library only (it runs on the host's python3, before any venv exists). Each
subcommand prints one short line saying what it saw, and exits 0 only if that is what the
check wants:

  seed BASE FILE          POST FILE (Fusion's example update) to the status route, then
                          read Fusion's list back: the run's status must equal FILE
  seed-present BASE FILE  only the read-back (after a restart)
  post-many BASE N PREFIX POST N distinct updates (jobIds PREFIX-001...), each answered 200
  check-many BASE N PREFIX  every one of those N runs is listed, with the status posted
  code BASE PATH [TOKEN]  GET PATH (with `Authorization: Bearer TOKEN`); prints the code
  health BASE             GET /actuator/health must answer 200 {"status":"UP"}
"""

import json
import sys
import urllib.error
import urllib.request

STATUS_ROUTE = "/job-launcher/launcher/status"
TIMEOUT = 10


def request(base, path, body=None, token=None):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def listed(base):
    code, body = request(base, STATUS_ROUTE)
    if code != 200:
        raise SystemExit(f"GET {STATUS_ROUTE} answered {code}: {body[:200]!r}")
    return {status.get("jobId"): status for status in json.loads(body)}


def update(prefix, i):
    return {
        "jobId": f"{prefix}-{i:03d}",
        "state": "running",
        "hostname": f"driver-{prefix}-{i:03d}",
        "jobConfig": {"id": f"{prefix}-config", "type": "custom_python_job"},
    }


def seed_present(base, path):
    with open(path, "rb") as f:
        expected = json.load(f)
    got = listed(base).get(expected["jobId"])
    if got != expected:
        raise SystemExit(f"run {expected['jobId']} reads back as {json.dumps(got)[:300]}")
    print(f"run {expected['jobId']} reads back equal to {path}")


def main(argv):
    cmd, base = argv[1], argv[2].rstrip("/")
    if cmd == "seed":
        with open(argv[3], "rb") as f:
            code, body = request(base, STATUS_ROUTE, body=f.read())
        if code != 200:
            raise SystemExit(f"POST {STATUS_ROUTE} answered {code}: {body[:300]!r}")
        seed_present(base, argv[3])
    elif cmd == "seed-present":
        seed_present(base, argv[3])
    elif cmd == "post-many":
        count, prefix = int(argv[3]), argv[4]
        for i in range(1, count + 1):
            code, body = request(base, STATUS_ROUTE, body=update(prefix, i))
            if code != 200:
                raise SystemExit(f"update {i} of {count} answered {code}: {body[:300]!r}")
        print(f"{count} distinct updates, each answered 200")
    elif cmd == "check-many":
        count, prefix = int(argv[3]), argv[4]
        runs = listed(base)
        missing = [i for i in range(1, count + 1) if runs.get(f"{prefix}-{i:03d}") != update(prefix, i)]
        if missing:
            raise SystemExit(f"{len(missing)} of {count} missing or changed, e.g. {prefix}-{missing[0]:03d}")
        print(f"all {count} acknowledged updates are there")
    elif cmd == "code":
        code, _ = request(base, argv[3], token=argv[4] if len(argv) > 4 else None)
        print(code)
    elif cmd == "health":
        code, body = request(base, "/actuator/health")
        if code != 200 or json.loads(body) != {"status": "UP"}:
            raise SystemExit(f"/actuator/health answered {code}: {body[:200]!r}")
        print('/actuator/health: 200 {"status":"UP"}')
    else:
        raise SystemExit(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (OSError, ValueError) as err:
        raise SystemExit(f"{type(err).__name__}: {err}") from None
