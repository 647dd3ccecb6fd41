"""What a test of code that reports to Fusion looks like with the `jlm` fixture."""

import threading

from conftest import call

STATUS = "/job-launcher/launcher/status"


def report_run(base, job_id):
    """Stands in for the code under test: a driver reporting its run."""
    call(base, "POST", STATUS, {"jobId": job_id, "state": "running",
                                "jobConfig": {"id": "nightly", "type": "aggregation"}})
    call(base, "POST", STATUS, {"jobId": job_id, "state": "finished"})


def test_waits_for_the_run_to_finish(jlm):
    driver = threading.Thread(target=report_run, args=(jlm, "hhzitrwancwv"))
    driver.start()
    # Answers the moment the run is finished, even if it does not exist yet.
    status, run = call(jlm, "GET", "/_mock/runs/hhzitrwancwv/wait?state=finished&timeout=5s")
    driver.join()
    assert status == 200
    assert run["status"]["jobConfig"]["id"] == "nightly"

    _, history = call(jlm, "GET", "/_mock/runs/hhzitrwancwv/history")
    assert [u["update"]["state"] for u in history["updates"]] == ["running", "finished"]


def test_the_journal_shows_what_was_refused(jlm):
    call(jlm, "POST", STATUS, {"jobId": "r1", "state": "finished"})
    status, error = call(jlm, "POST", STATUS, {"jobId": "r1", "state": "running"})
    assert status == 409 and error["code"] == "invalid_transition"

    _, journal = call(jlm, "GET", "/_mock/requests?status=409")
    assert [e["jobId"] for e in journal["entries"]] == ["r1"]


def test_each_test_starts_from_a_reset_mock(jlm):
    _, runs = call(jlm, "GET", "/_mock/runs")
    assert runs["total"] == 0
