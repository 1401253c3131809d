"""Nothing accepted is lost: SPEC §1 (recovery) and §6.

The server is killed with SIGKILL while one submission runs and five wait, then
started again on the same data dir; every accepted submission must end FINISHED
once, with its own output.
"""

import time

from helpers import assert_submission_shape, submission


def test_kill_9_while_running_and_queued_then_restart(make_server):
    srv = make_server(["--workers", "1"])
    client = srv.client
    running = client.submit(submission({"run.sh": "sleep 2; echo slow-done"}))["id"]
    client.poll_until(running, lambda s: s["status"] == "RUNNING", timeout=30)
    quick = {}
    for i in range(5):
        sid = client.submit(submission({"run.sh": f"echo quick-{i}; cat"}, stdin=f"in-{i}"))["id"]
        quick[sid] = f"quick-{i}\nin-{i}"
    assert client.get_submission(running)["status"] == "RUNNING"

    srv.kill9()
    srv.start(port=srv.port)  # same data dir (and port) as before
    client = srv.client

    expected = {running: "slow-done\n", **quick}
    for sid, stdout in expected.items():
        sub = client.wait_finished(sid, timeout=90)
        assert_submission_shape(sub)
        assert sub["result"] == "OK", sub
        assert sub["run"]["stdout"] == stdout, sub["run"]
        assert sub["run"]["code"] == 0, sub["run"]

    listed = client.list_all()
    ids = [s["id"] for s in listed]
    assert sorted(ids) == sorted(expected), "a submission was lost or duplicated"
    assert len(ids) == len(set(ids))
    # Still newest first after the restart.
    order = [running] + list(quick)
    assert ids == list(reversed(order)), ids


def test_finished_submissions_survive_a_graceful_restart(make_server):
    srv = make_server(["--workers", "2"])
    client = srv.client
    done = client.run(submission({"run.sh": "echo kept; exit 3"}))
    assert done["result"] == "RUNTIME_ERROR"
    assert srv.stop() is not None
    srv.start()
    again = srv.client.get_submission(done["id"])
    for key in ("id", "status", "result", "created_at", "finished_at", "run", "build"):
        assert again[key] == done[key], key


def test_sigterm_stops_the_server_promptly_when_idle(make_server):
    srv = make_server(["--workers", "2"])
    srv.client.run(submission({"run.sh": "true"}))
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5, "an idle server took long to stop on SIGTERM"


def test_accepted_during_shutdown_is_not_lost(make_server):
    srv = make_server(["--workers", "1"])
    client = srv.client
    sid = client.submit(submission({"run.sh": "sleep 1; echo survived"}))["id"]
    srv.stop()  # SIGTERM while it runs or waits
    srv.start()
    sub = srv.client.wait_finished(sid, timeout=60)
    assert sub["result"] == "OK" and sub["run"]["stdout"] == "survived\n", sub
