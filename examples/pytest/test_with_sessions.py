"""Tests that share one mock, each in a session of its own (the `jlm_session` fixture):
they may run in parallel and never see each other's runs, journal or faults."""

import threading

from conftest import call

STATUS = "/job-launcher/launcher/status"


def test_a_session_sees_only_its_own_runs(jlm_session, jlm_server):
    call(jlm_session, "POST", STATUS, {"jobId": "r1", "state": "running"})
    _, runs = call(jlm_session, "GET", "/_mock/runs")
    assert [r["jobId"] for r in runs["runs"]] == ["r1"]
    _, root = call(jlm_server, "GET", "/_mock/runs?jobConfigId=")
    assert "r1" not in [r["jobId"] for r in root["runs"]]


def test_a_reset_in_one_session_leaves_another_alone(jlm_session, jlm_server):
    status, other = call(jlm_server, "POST", "/_mock/sessions", {"name": "bystander"})
    assert status == 201
    bystander = jlm_server + "/sessions/bystander"
    try:
        call(bystander, "POST", STATUS, {"jobId": "theirs", "state": "running"})
        call(jlm_session, "POST", STATUS, {"jobId": "mine", "state": "running"})
        call(jlm_session, "POST", "/_mock/reset")
        _, mine = call(jlm_session, "GET", "/_mock/runs")
        _, theirs = call(bystander, "GET", "/_mock/runs")
        assert mine["total"] == 0
        assert [r["jobId"] for r in theirs["runs"]] == ["theirs"]
    finally:
        call(jlm_server, "DELETE", "/_mock/sessions/bystander")


def test_a_lifecycle_verified_in_one_call(jlm_session):
    def driver():
        for state in ["starting", "running", "finished"]:
            call(jlm_session, "POST", STATUS, {"jobId": "nightly-1", "state": state})

    thread = threading.Thread(target=driver)
    thread.start()
    status, _ = call(jlm_session, "GET", "/_mock/runs/nightly-1/wait?state=finished&timeout=5s")
    thread.join()
    assert status == 200
    expected = {"runs": {"nightly-1": {"states": ["starting", "running", "finished"],
                                       "updates": 3}},
                "refused": 0, "warnings": 0}
    status, verdict = call(jlm_session, "POST", "/_mock/verify", expected)
    assert (status, verdict) == (200, {"ok": True})

    expected["runs"]["nightly-1"]["states"] = ["starting", "finished"]
    status, verdict = call(jlm_session, "POST", "/_mock/verify", expected)
    assert status == 409 and verdict["code"] == "verification_failed"
    assert verdict["violations"] == [{
        "field": "runs.nightly-1.states",
        "message": "expected starting -> finished, got starting -> running -> finished",
    }]
