"""The request path (issue 12): the open-connection cap, long-polls that notice their
client leaving, and the retention sweep, each through the real binary over loopback."""

import json
import subprocess

import pytest

from helpers import (
    Response,
    Server,
    assert_error_shape,
    free_loopback_port,
    require_binary,
    scaled,
    submission,
    wait_until,
)
from robust_helpers import connect, http_bytes, parse_responses, read_until_closed

MAX_CONNECTIONS = 4


@pytest.fixture
def capped_server(tmp_path):
    srv = Server(
        tmp_path / "data",
        tmp_path,
        extra_args=["--workers", "1", "--max-connections", str(MAX_CONNECTIONS)],
    )
    srv.start()
    yield srv
    srv.cleanup()


def health_over(sock):
    """Sends GET /api/v1/health on `sock`; answers the first response parsed."""
    sock.sendall(http_bytes("GET", "/api/v1/health", headers={"Connection": "close"}))
    data, _ = read_until_closed(sock, scaled(10.0))
    responses = parse_responses(data)
    assert responses, f"no HTTP response, got {data[:300]!r}"
    return responses[0]


def test_info_shows_the_connection_cap(capped_server):
    assert capped_server.client.info()["max_connections"] == MAX_CONNECTIONS


def test_a_connection_over_the_cap_gets_503_with_retry_after_then_others_are_served(
    capped_server,
):
    port = capped_server.port
    idle = [connect(port) for _ in range(MAX_CONNECTIONS)]
    try:
        # Accepted in order: the kernel queues connections first come, first served.
        over = connect(port)
        try:
            status, headers, body = health_over(over)
        finally:
            over.close()
        assert status == 503, body
        assert headers.get("retry-after") == "1", headers
        assert headers.get("connection", "").lower() == "close", headers
        assert_error_shape(
            Response(status, list(headers.items()), body), 503, code="too_many_connections"
        )

        # The idle ones were served all along: one of them still gets its answer.
        served_idle = idle.pop()
        status, _, body = health_over(served_idle)
        served_idle.close()
        assert status == 200, body
        idle.pop().close()

        def served():
            s = connect(port)
            try:
                return health_over(s)[0] == 200
            finally:
                s.close()

        wait_until(served, scaled(10.0), what="a new connection served after others closed")
    finally:
        for s in idle:
            s.close()


def metric(client, name):
    r = client.get("/metrics", timeout=10)
    assert r.status == 200, r
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"/metrics has no {name}")


@pytest.fixture
def waiting_server(tmp_path):
    # The long-poll bound is far above the test's deadlines: only a noticed departure can
    # bring the gauge back to 0 in time.
    srv = Server(tmp_path / "data", tmp_path, extra_args=["--workers", "1", "--max-wait-ms", "600000"])
    srv.start()
    yield srv
    srv.cleanup()


def test_long_polls_are_dropped_as_soon_as_their_clients_leave(waiting_server):
    c = waiting_server.client
    slow = submission({"run.sh": "sleep 120"}, limits={"run": {"wall_time_ms": 150000}})
    held = c.submit(slow)["id"]
    get_waiters, post_waiters = 20, 3
    socks = []
    try:
        for _ in range(get_waiters):
            s = connect(waiting_server.port)
            s.sendall(http_bytes("GET", f"/api/v1/submissions/{held}?wait=true"))
            socks.append(s)
        # POST ?wait=true: queued behind the held one (one worker), parked until it runs.
        body = json.dumps(slow).encode()
        for _ in range(post_waiters):
            s = connect(waiting_server.port)
            s.sendall(post_json("/api/v1/submissions?wait=true", body))
            socks.append(s)
        total = get_waiters + post_waiters
        wait_until(lambda: metric(c, "cutor_http_long_polls") == total, scaled(20.0),
                   what=f"{total} long-polls parked")
        for s in socks:
            s.close()
        socks = []
        wait_until(lambda: metric(c, "cutor_http_long_polls") == 0, scaled(5.0),
                   what="the long-poll gauge back to 0 after the clients left")
        # The submissions the departed POSTs stored are still there (leaving does not cancel).
        stored = c.list_all()
        assert len(stored) == 1 + post_waiters, stored
        # And a long-poll whose client stays is still answered.
        r = c.delete(f"/api/v1/submissions/{held}")
        assert r.status == 200, r
        assert c.get_submission(held + "?wait=true")["status"] == "FINISHED"
    finally:
        for s in socks:
            s.close()
        for sub in c.list_all():
            if sub["status"] != "FINISHED":
                c.delete(f"/api/v1/submissions/{sub['id']}")


def post_json(path, body):
    return http_bytes("POST", path, body, {"Content-Type": "application/json"})


def test_info_shows_no_retention_by_default(capped_server):
    assert capped_server.client.info()["retention_seconds"] is None


@pytest.fixture
def retaining_server(tmp_path):
    srv = Server(tmp_path / "data", tmp_path, extra_args=["--workers", "2", "--retention", "2s"])
    srv.start()
    yield srv
    srv.cleanup()


def test_retention_deletes_old_finished_submissions_and_keeps_unfinished(retaining_server):
    c = retaining_server.client
    assert c.info()["retention_seconds"] == 2
    slow = submission({"run.sh": "sleep 120"}, limits={"run": {"wall_time_ms": 150000}})
    running = c.submit(slow)["id"]  # worker 1
    ran = c.run(submission({"run.sh": "echo kept-for-2s"}))  # worker 2
    assert ran["status"] == "FINISHED" and ran["result"] == "OK", ran
    running_too = c.submit(slow)["id"]  # worker 2
    queued = c.submit(slow)["id"]  # no worker left: stays QUEUED
    cancelled = c.submit(slow)["id"]
    r = c.delete(f"/api/v1/submissions/{cancelled}")  # FINISHED (CANCELLED) at once
    assert r.status == 200, r
    try:
        def gone(sid):
            return c.get(f"/api/v1/submissions/{sid}").status == 404

        wait_until(lambda: gone(ran["id"]) and gone(cancelled), scaled(20.0),
                   what="the finished submissions swept after 2 s")
        # Each was created before the last finish the sweep deleted, so it was older than
        # the cutoff too: only being unfinished kept it.
        for sid in (running, running_too, queued):
            sub = c.get_submission(sid)
            assert sub["status"] != "FINISHED", sub
        assert c.get_submission(queued)["status"] == "QUEUED"
        assert {s["id"] for s in c.list_all()} == {running, running_too, queued}
    finally:
        for sid in (running, running_too, queued):
            c.delete(f"/api/v1/submissions/{sid}")


@pytest.mark.parametrize("value", ["7", "0s", "-1d", "1.5h", "7x", "d", "12 h", "99999999999d"])
def test_bad_retention_is_refused_at_startup(tmp_path, value):
    proc = subprocess.run(
        [require_binary(), "serve", "--listen", f"127.0.0.1:{free_loopback_port()}",
         "--data", str(tmp_path / "data"), "--retention", value],
        capture_output=True, text=True, timeout=scaled(30.0),
    )
    assert proc.returncode != 0, proc
    out = proc.stdout + proc.stderr
    assert "--retention" in out and "duration" in out, out
    assert not (tmp_path / "data").exists(), "a refused start created the data directory"
