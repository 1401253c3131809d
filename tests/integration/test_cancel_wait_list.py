"""Cancelling, long-polling, listing and the queue bound: SPEC §2 and §3.

Most tests here use a one-worker server so that a sleeping submission holds the only
worker and the next one is reliably QUEUED behind it.
"""

import random
import re
import subprocess
import time

import pytest

from helpers import (
    STAGES,
    assert_error_shape,
    assert_idle_stage,
    assert_submission_shape,
    cutor_bin,
    processes_with_marker,
    random_uuid,
    require_binary,
    submission,
    wait_until,
)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    from helpers import Server

    base = tmp_path_factory.mktemp("one-worker")
    srv = Server(base / "data", base, extra_args=["--workers", "1"])
    srv.start()
    yield srv
    srv.cleanup()


def sleeper_marker():
    # `sleep 30.NNNNNN` sleeps ~30 s and names itself uniquely in the host's /proc.
    return f"30.{random.randrange(10**5, 10**6)}"


def occupy_worker(client, marker=None):
    """Submits a 30 s sleeper and returns (id, marker) once it is RUNNING."""
    marker = marker or sleeper_marker()
    sid = client.submit(
        submission({"run.sh": f"echo started; exec sleep {marker}"},
                   limits={"run": {"wall_time_ms": 60000}})
    )["id"]
    client.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=30)
    return sid, marker


def cancel(client, sid):
    r = client.delete(f"/api/v1/submissions/{sid}")
    assert r.status in (200, 409), r
    return r


# --- cancel -----------------------------------------------------------------------------


def test_cancel_a_queued_submission_it_never_runs(one_worker):
    client = one_worker.client
    sleeper, _ = occupy_worker(client)
    try:
        queued = client.submit(submission({"run.sh": "echo ran; echo ran > /tmp/x"}))
        assert queued["status"] == "QUEUED"
        qid = queued["id"]
        sub = client.get_submission(qid)
        assert sub["status"] == "QUEUED", sub
        assert_submission_shape(sub)
        for st in STAGES:  # nothing has started: every stage PENDING with zeros
            assert_idle_stage(sub[st], "PENDING", st)

        r = client.delete(f"/api/v1/submissions/{qid}")
        assert r.status == 200, r
        after = r.json()
        assert after["id"] == qid
        assert after["status"] == "FINISHED" and after["result"] == "CANCELLED", after
        assert_submission_shape(after)
    finally:
        assert cancel(client, sleeper).status == 200

    # The worker is free now; once a later submission has run, the cancelled one
    # was passed over for good.
    later = client.run(submission({"run.sh": "echo later"}))
    assert later["result"] == "OK" and later["run"]["stdout"] == "later\n", later
    sub = client.get_submission(qid)
    assert sub["status"] == "FINISHED" and sub["result"] == "CANCELLED", sub
    for st in STAGES:
        assert sub[st]["status"] in ("PENDING", "SKIPPED"), (st, sub[st])
        assert_idle_stage(sub[st], sub[st]["status"], st)


def test_cancel_a_running_submission_kills_it_promptly(one_worker):
    client = one_worker.client
    sid, marker = occupy_worker(client)
    wait_until(
        lambda: processes_with_marker(f"sleep {marker}"),
        timeout=10,
        what="the sleeper to be visible in the host's /proc",
    )
    t0 = time.monotonic()
    r = client.delete(f"/api/v1/submissions/{sid}")
    elapsed = time.monotonic() - t0
    assert r.status == 200, r
    body = r.json()
    assert body["status"] == "FINISHED" and body["result"] == "CANCELLED", body
    assert elapsed < 5, f"cancel took {elapsed:.1f}s"
    wait_until(
        lambda: not processes_with_marker(f"sleep {marker}"),
        timeout=5,
        what="the cancelled submission's process to be gone",
    )
    sub = client.get_submission(sid)
    assert sub["result"] == "CANCELLED", sub
    assert sub["run"]["status"] != "OK", sub["run"]
    # The worker is usable again.
    t0 = time.monotonic()
    nxt = client.run(submission({"run.sh": "echo next"}), timeout=20)
    assert nxt["result"] == "OK", nxt
    assert time.monotonic() - t0 < 20


def test_cancel_finished_is_409_and_changes_nothing(one_worker):
    client = one_worker.client
    sub = client.run(submission({"run.sh": "echo done"}))
    assert sub["result"] == "OK", sub
    r = client.delete(f"/api/v1/submissions/{sub['id']}")
    assert_error_shape(r, 409)
    again = client.get_submission(sub["id"])
    assert again["result"] == "OK" and again["run"]["stdout"] == "done\n", again


def test_cancel_twice_is_409(one_worker):
    client = one_worker.client
    sid, _ = occupy_worker(client)
    assert client.delete(f"/api/v1/submissions/{sid}").status == 200
    assert_error_shape(client.delete(f"/api/v1/submissions/{sid}"), 409)


def test_unknown_ids_are_404(one_worker):
    client = one_worker.client
    unknown = random_uuid()
    assert_error_shape(client.delete(f"/api/v1/submissions/{unknown}"), 404)
    assert_error_shape(client.get(f"/api/v1/submissions/{unknown}"), 404)
    assert_error_shape(client.get(f"/api/v1/submissions/{unknown}?wait=true"), 404)


def test_health_and_reads_answer_while_the_worker_is_busy(one_worker):
    client = one_worker.client
    sid, _ = occupy_worker(client)
    try:
        for path in ("/api/v1/health", "/api/v1/info", f"/api/v1/submissions/{sid}", "/metrics"):
            t0 = time.monotonic()
            r = client.get(path, timeout=5)
            assert r.status == 200, (path, r)
            assert time.monotonic() - t0 < 2, path
    finally:
        cancel(client, sid)


# --- wait ------------------------------------------------------------------------------


def test_post_wait_true_answers_200_with_the_finished_submission(one_worker):
    client = one_worker.client
    r = client.post(
        "/api/v1/submissions?wait=true",
        submission({"run.sh": "sleep 0.3; cat"}, stdin="waited"),
        timeout=client.wait_timeout(),
    )
    assert r.status == 200, r
    sub = r.json()
    assert_submission_shape(sub)
    assert sub["status"] == "FINISHED" and sub["result"] == "OK", sub
    assert sub["run"]["stdout"] == "waited", sub["run"]


def test_get_wait_true_returns_once_finished(one_worker):
    client = one_worker.client
    sid = client.submit(submission({"run.sh": "sleep 1.5; echo slow"}))["id"]
    t0 = time.monotonic()
    r = client.get(f"/api/v1/submissions/{sid}?wait=true", timeout=client.wait_timeout())
    elapsed = time.monotonic() - t0
    assert r.status == 200, r
    sub = r.json()
    if client.info()["max_wait_ms"] >= 5000:
        assert sub["status"] == "FINISHED", sub
        assert sub["run"]["stdout"] == "slow\n", sub
        assert elapsed >= 1.0, "wait=true answered before the run could have ended"
    else:
        client.wait_finished(sid)


def max_wait_flag():
    """The `serve` flag that sets the long-poll bound, if the binary has one."""
    require_binary()
    out = subprocess.run(
        [cutor_bin(), "serve", "--help"], capture_output=True, text=True, timeout=20
    )
    m = re.search(r"(--max-wait[\w-]*)", out.stdout + out.stderr)
    return m.group(1) if m else None


def test_wait_is_bounded_by_max_wait_ms(make_server):
    flag = max_wait_flag()
    if flag:
        srv = make_server(["--workers", "1", flag, "1000"])
    else:
        srv = make_server(["--workers", "1"])
    client = srv.client
    max_wait_ms = client.info()["max_wait_ms"]
    if flag:
        assert max_wait_ms == 1000, f"{flag} 1000 gave max_wait_ms {max_wait_ms}"
    if max_wait_ms > 20000:
        # No way to make the bound small: only check that wait returns once finished.
        sid = client.submit(submission({"run.sh": "sleep 1; echo ok"}))["id"]
        r = client.get(f"/api/v1/submissions/{sid}?wait=true", timeout=client.wait_timeout())
        assert r.status == 200 and r.json()["status"] == "FINISHED", r
        return

    bound = max_wait_ms / 1000.0
    run_s = bound + 5
    body = submission(
        {"run.sh": f"sleep {run_s}"}, limits={"run": {"wall_time_ms": int(run_s * 1000) + 5000}}
    )
    t0 = time.monotonic()
    r = client.post("/api/v1/submissions?wait=true", body, timeout=bound + 15)
    elapsed = time.monotonic() - t0
    assert r.status == 202, r
    state = r.json()
    assert state["status"] != "FINISHED", state
    assert bound * 0.8 <= elapsed < bound + 3, f"POST wait answered after {elapsed:.2f}s"
    sid = state["id"]

    t0 = time.monotonic()
    r = client.get(f"/api/v1/submissions/{sid}?wait=true", timeout=bound + 15)
    elapsed = time.monotonic() - t0
    assert r.status == 200, r
    assert r.json()["status"] != "FINISHED", r
    assert bound * 0.8 <= elapsed < bound + 3, f"GET wait answered after {elapsed:.2f}s"
    assert client.delete(f"/api/v1/submissions/{sid}").status == 200


# --- list -------------------------------------------------------------------------------


def list_page(client, query):
    r = client.get("/api/v1/submissions" + (f"?{query}" if query else ""))
    assert r.status == 200, r
    body = r.json()
    assert set(body) >= {"submissions", "next_cursor"}, body
    assert body["next_cursor"] is None or isinstance(body["next_cursor"], str), body
    for item in body["submissions"]:
        assert_submission_shape(item)
    return body


def test_list_pages_newest_first_with_status_filter(make_server):
    client = make_server(["--workers", "2"]).client
    ids = [client.submit(submission({"run.sh": f"echo {i}"}))["id"] for i in range(7)]
    for sid in ids:
        assert client.wait_finished(sid)["result"] == "OK"

    pages, cursor = [], None
    for _ in range(10):
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = list_page(client, query)
        pages.append([s["id"] for s in page["submissions"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1], pages
    seen = [sid for p in pages for sid in p]
    assert seen == list(reversed(ids)), "not newest first, or duplicates/gaps across pages"

    # A cursor stays valid while newer submissions arrive: no duplicates, no gaps.
    first = list_page(client, "limit=3")
    newest = client.submit(submission({"run.sh": "echo newest"}))["id"]
    rest = list_page(client, f"limit=1000&cursor={first['next_cursor']}")
    assert [s["id"] for s in rest["submissions"]] == list(reversed(ids))[3:], rest
    assert rest["next_cursor"] is None
    client.wait_finished(newest)

    # Default limit and the whole list.
    assert [s["id"] for s in list_page(client, "")["submissions"]] == [newest] + list(
        reversed(ids)
    )

    # Status filter.
    finished = list_page(client, "status=FINISHED&limit=1000")["submissions"]
    assert len(finished) == 8 and all(s["status"] == "FINISHED" for s in finished)
    assert list_page(client, "status=QUEUED")["submissions"] == []
    sid, _ = occupy_worker(client)
    try:
        running = list_page(client, "status=RUNNING")["submissions"]
        assert [s["id"] for s in running] == [sid], running
    finally:
        cancel(client, sid)


@pytest.mark.parametrize(
    "query",
    [
        "cursor=garbage",
        "cursor=%00%01",
        "limit=0",
        "limit=-1",
        "limit=1001",
        "limit=abc",
        "limit=1.5",
        "status=BOGUS",
        "status=OK",  # a result, not a status
    ],
)
def test_list_bad_parameters_are_400(one_worker, query):
    r = one_worker.client.get(f"/api/v1/submissions?{query}")
    assert_error_shape(r, 400)


def test_list_limit_1000_is_accepted(one_worker):
    assert one_worker.client.get("/api/v1/submissions?limit=1000").status == 200


# --- the queue bound --------------------------------------------------------------------


def test_full_queue_is_refused_with_retry_after_and_nothing_stored(make_server):
    srv = make_server(["--workers", "1", "--max-queue", "2"])
    client = srv.client
    sleeper, _ = occupy_worker(client)
    accepted, refused = [sleeper], []
    try:
        for i in range(6):
            r = client.post("/api/v1/submissions", submission({"run.sh": f"echo {i}"}))
            if r.status == 202:
                accepted.append(r.json()["id"])
            else:
                refused.append(r)
        assert refused, "six submissions behind a busy worker with --max-queue 2 all accepted"
        assert len(accepted) <= 3, accepted
        for r in refused:
            assert r.status in (429, 503), r
            assert "retry-after" in r.headers, r.headers
            assert_error_shape(r, r.status)
        assert client.stored_count() == len(accepted)
    finally:
        cancel(client, sleeper)
    for sid in accepted[1:]:
        assert client.wait_finished(sid)["result"] == "OK"
    # Room again: a new one is accepted.
    assert client.post("/api/v1/submissions", submission({"run.sh": "true"})).status == 202


def test_an_empty_query_string_is_no_parameter(client):
    # "?" alone and a trailing "&" add no parameter; a nameless "=x" or an unknown name does.
    for path in ("/api/v1/submissions?", "/api/v1/submissions?limit=1&"):
        r = client.get(path)
        assert r.status == 200, (path, r)
        assert set(r.json()) == {"submissions", "next_cursor"}
    for path in ("/api/v1/submissions?=x", "/api/v1/submissions?bogus"):
        assert client.get(path).status == 400, path
