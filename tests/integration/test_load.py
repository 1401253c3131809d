"""Load (issue 6, SPEC §2 and §6): 1,000 concurrent connections and long-poll waiters,
a full queue answers 429/503 with Retry-After and never hangs, and /api/v1/health
answers within 50 ms while every worker runs a CPU-bound program.

CUTOR_LONG=1 raises the counts (see tests/README.md, "Long runs").
"""

import json
import selectors
import statistics
import threading
import time

import pytest

from helpers import scaled, submission
from robust_helpers import (
    LONG,
    WrappedServer,
    connect,
    http_bytes,
    parse_responses,
    raise_fd_limit,
    timed_health,
)

WAITERS = 3000 if LONG else 1000
# SPEC §6 via issue 6: health within 50 ms under load. Held exactly on a plain build; a
# sanitizer build (CUTOR_TEST_SLOWDOWN) slows the server's own code and gets the scaled
# bound (seen under ASan on 2 busy cores: median 10 ms, worst 60 ms).
HEALTH_BOUND_S = scaled(0.050)


@pytest.fixture
def robust_server(tmp_path_factory):
    started = []

    def make(extra_args=()):
        base = tmp_path_factory.mktemp("load")
        srv = WrappedServer(base / "data", base, extra_args=list(extra_args))
        srv.start()
        started.append(srv)
        return srv

    yield make
    errors = []
    for srv in started:
        try:
            srv.cleanup()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, errors


def metric(client, name):
    r = client.get("/metrics", timeout=10)
    assert r.status == 200, r
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"/metrics has no {name}")


def read_all(socks, deadline):
    """Reads every socket until it holds one complete response or the deadline."""
    sel = selectors.DefaultSelector()
    data = {s: b"" for s in socks}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    pending = set(socks)
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            data[s] += chunk
            if not chunk or parse_responses(data[s]):
                sel.unregister(s)
                pending.discard(s)
    sel.close()
    return data, pending


def test_thousand_long_poll_waiters_all_answered(robust_server):
    limit = raise_fd_limit(WAITERS * 2 + 512)
    assert limit >= WAITERS + 256, f"RLIMIT_NOFILE {limit} too low for {WAITERS} connections"
    srv = robust_server(["--workers", "2", "--max-wait-ms", "60000",
                         "--max-connections", str(WAITERS + 256)])
    c = srv.client
    # Five submissions that sleep long enough for every waiter to be parked first; the
    # check below that all WAITERS are parked makes the sleep a precondition, not a bet.
    hold_s = 15 if LONG else 8
    sids = [
        c.submit(submission({"run.sh": f"sleep {hold_s}; echo done-{i}"},
                            limits={"run": {"wall_time_ms": 60000}}))["id"]
        for i in range(5)
    ]
    socks = []
    try:
        t0 = time.monotonic()
        for i in range(WAITERS):
            s = connect(srv.port, timeout=10)
            s.sendall(http_bytes("GET", f"/api/v1/submissions/{sids[i % len(sids)]}?wait=true"))
            socks.append(s)
        opened = time.monotonic() - t0
        # All of them are really waiting in the server.
        deadline = time.monotonic() + 10
        while metric(c, "cutor_http_long_polls") < WAITERS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metric(c, "cutor_http_long_polls") >= WAITERS, "not every waiter is parked"
        # The server still answers others while 1000 connections wait.
        worst = max(timed_health(c) for _ in range(20))
        assert worst < 0.5, f"health took {worst:.3f}s with {WAITERS} waiters"
        data, pending = read_all(socks, time.monotonic() + hold_s * 3 + 60)
        assert not pending, f"{len(pending)} of {WAITERS} waiters got no answer (opened in {opened:.1f}s)"
        for i, s in enumerate(socks):
            responses = parse_responses(data[s])
            assert responses, f"waiter {i}: {data[s][:200]!r}"
            status, _, body = responses[0]
            assert status == 200, (i, status, body[:300])
            sub = json.loads(body)
            assert sub["status"] == "FINISHED", sub
            assert sub["id"] == sids[i % len(sids)]
            assert sub["run"]["stdout"] == f"done-{i % len(sids)}\n", sub["run"]
        assert metric(c, "cutor_http_long_polls") == 0
    finally:
        for s in socks:
            s.close()


def test_thousand_concurrent_submissions_connections(robust_server):
    """1000 connections open at once, each POSTing (keep-alive, no close): every one gets
    202 and every submission finishes with its own output."""
    n = 2000 if LONG else 1000
    raise_fd_limit(n * 2 + 512)
    srv = robust_server(["--workers", "4", "--max-connections", str(n + 256)])
    socks = []
    try:
        for i in range(n):
            s = connect(srv.port, timeout=10)
            socks.append(s)
        for i, s in enumerate(socks):
            body = json.dumps(submission({"run.sh": f"echo conn-{i}"})).encode()
            s.sendall(http_bytes("POST", "/api/v1/submissions", body,
                                 {"Content-Type": "application/json"}))
        data, pending = read_all(socks, time.monotonic() + 60)
        assert not pending, f"{len(pending)} POSTs unanswered"
        ids = {}
        for i, s in enumerate(socks):
            status, _, body = parse_responses(data[s])[0]
            assert status == 202, (i, status, body[:300])
            ids[json.loads(body)["id"]] = i
        assert len(ids) == n, "ids must be unique"
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + (600 if LONG else 240)
    c = srv.client
    while time.monotonic() < deadline:
        if metric(c, "cutor_queue_depth") == 0:
            break
        time.sleep(1)
    assert metric(c, "cutor_queue_depth") == 0, "the queue did not drain"
    seen = 0
    cursor = None
    while True:
        q = "?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = c.get("/api/v1/submissions" + q).json()
        for sub in page["submissions"]:
            i = ids.get(sub["id"])
            assert i is not None, sub["id"]
            assert sub["status"] == "FINISHED" and sub["result"] == "OK", sub
            assert sub["run"]["stdout"] == f"conn-{i}\n", sub["run"]
            seen += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == n


def test_full_queue_refuses_with_retry_after_and_never_hangs(robust_server):
    max_queue = 5
    srv = robust_server(["--workers", "1", "--max-queue", str(max_queue)])
    c = srv.client
    blocker = submission({"run.sh": "sleep 60"}, limits={"run": {"wall_time_ms": 120000}})
    accepted = []
    outcomes = []
    lock = threading.Lock()

    def post():
        t0 = time.monotonic()
        r = c.post("/api/v1/submissions", blocker, timeout=10)
        with lock:
            outcomes.append((r, time.monotonic() - t0))

    threads = [threading.Thread(target=post) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a POST hung on a full queue"
    assert len(outcomes) == 200
    for r, dt in outcomes:
        assert dt < 5, f"a POST took {dt:.1f}s"
        if r.status == 202:
            accepted.append(r.json()["id"])
            continue
        assert r.status in (429, 503), r
        err = r.json()["error"]
        assert err["code"] and err["message"], r
        retry = r.headers.get("retry-after")
        assert retry is not None and retry.strip().isdigit() and int(retry) >= 0, r.headers
    assert 1 <= len(accepted) <= max_queue, f"{len(accepted)} accepted with --max-queue {max_queue}"
    # Reads keep working while full.
    assert timed_health(c) < 1.0
    assert c.get(f"/api/v1/submissions/{accepted[0]}").status == 200
    # Cancelling frees the queue: a submission is accepted again.
    for sid in accepted:
        assert c.delete(f"/api/v1/submissions/{sid}").status in (200, 409)
    done = c.run(submission({"run.sh": "echo again"}))
    assert done["run"]["stdout"] == "again\n"


def test_health_within_50ms_while_every_worker_is_cpu_bound(robust_server):
    workers = 4  # more busy sandboxes than the host's 2 cores
    srv = robust_server(["--workers", str(workers)])
    c = srv.client
    spin = submission(
        {"run.sh": "while :; do :; done"},
        limits={"run": {"wall_time_ms": 30000, "cpu_time_ms": 25000}},
    )
    sids = [c.submit(spin)["id"] for _ in range(workers)]
    try:
        for sid in sids:
            c.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=30)
        time.sleep(0.5)  # let them saturate the cpus
        samples = [timed_health(c) for _ in range(60 if not LONG else 600)]
        still = [c.get_submission(sid)["status"] for sid in sids]
        assert all(s == "RUNNING" for s in still), f"workers not all busy during the sample: {still}"
        worst = max(samples)
        assert worst < HEALTH_BOUND_S, (
            f"health: max {worst * 1000:.1f} ms, median {statistics.median(samples) * 1000:.1f} ms "
            f"with {workers} cpu-bound workers"
        )
    finally:
        for sid in sids:
            c.delete(f"/api/v1/submissions/{sid}")
