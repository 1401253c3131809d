"""HTTP-level abuse (issue 6, SPEC §6 "keep the service from answering others"):
slow headers, stalled and truncated bodies, huge headers, bad chunked encoding,
pipelined garbage. Each is answered (4xx with the error shape) or closed on a timeout,
and other clients keep being served meanwhile.

The server's read timeout for one request is 30 s (HttpServerConfig::read_timeout);
a stalled request must be over by READ_TIMEOUT_BOUND_S.
"""

import json
import socket
import threading
import time

import pytest

from helpers import assert_error_shape, submission, Response
from robust_helpers import (
    LONG,
    WrappedServer,
    connect,
    http_bytes,
    parse_responses,
    read_until_closed,
    timed_health,
)

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """conftest's module server, as a WrappedServer: a sanitizer report fails the module."""
    base = tmp_path_factory.mktemp("abuse")
    srv = WrappedServer(base / "data", base, extra_args=["--workers", "4"])
    srv.start()
    yield srv
    srv.cleanup()


READ_TIMEOUT_BOUND_S = 45.0  # 30 s read timeout + margin
QUICK_S = 5.0  # a malformed request must be refused well within this


def quick_body():
    return json.dumps(submission({"run.sh": "echo abuse-ok"})).encode()


def post_bytes(body, extra=None):
    headers = {"Content-Type": "application/json"}
    if extra:
        headers.update(extra)
    return http_bytes("POST", "/api/v1/submissions", body, headers)


def refused(data, statuses):
    """The server answered exactly one error response with one of `statuses` and the
    SPEC error shape (it may have closed right after)."""
    responses = parse_responses(data)
    assert responses, f"no HTTP response, got {data[:300]!r}"
    status, headers, body = responses[0]
    assert status in statuses, (status, body[:300])
    assert_error_shape(Response(status, list(headers.items()), body), status)
    return responses


def send_and_read(port, payload, timeout=QUICK_S, half_close=False):
    s = connect(port)
    try:
        s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        return read_until_closed(s, timeout)
    finally:
        s.close()


def test_protocol_errors_have_the_spec_error_shape(server):
    data, _ = send_and_read(server.port, b"GET / HTTP/9.9\r\n\r\n")
    status, headers, body = parse_responses(data)[0]
    assert_error_shape(Response(status, list(headers.items()), body), 400)


def test_valid_chunked_post_is_accepted(server):
    """Control for the chunked tests below: a well-formed chunked body is 202."""
    body = quick_body()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5]) for i in range(0, len(body), 5))
    payload = (
        b"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    data, closed = send_and_read(server.port, payload)
    responses = parse_responses(data)
    assert responses and responses[0][0] == 202, data[:500]
    sid = json.loads(responses[0][2])["id"]
    done = server.client.wait_finished(sid)
    assert done["run"]["stdout"] == "abuse-ok\n", done


BAD_CHUNKED = {
    "non-hex size": b"zz\r\nabc\r\n0\r\n\r\n",
    "size overflows 64 bits": b"ffffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "negative size": b"-5\r\nabcde\r\n0\r\n\r\n",
    "missing CRLF after data": b"3\r\nabcXYZ0\r\n\r\n",
    "chunk longer than said": b"2\r\nabcdef\r\n0\r\n\r\n",
    "bad chunk extension": b"3;\x00=\x01\r\nabc\r\n0\r\n\r\n",
    "garbage trailer": b"3\r\nabc\r\n0\r\nno colon here\r\n\r\n",
    "space in size": b"3 4\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("what", sorted(BAD_CHUNKED))
def test_bad_chunked_encoding_is_400_and_closed(server, what):
    before = server.client.stored_count()
    payload = (
        b"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + BAD_CHUNKED[what]
    )
    t0 = time.monotonic()
    data, closed = send_and_read(server.port, payload)
    assert time.monotonic() - t0 < QUICK_S
    refused(data, {400})
    assert closed, "the connection must be closed after a framing error"
    assert server.client.stored_count() == before


def test_content_length_and_chunked_together_cannot_smuggle(server):
    """CL + TE: the body must not be framed by Content-Length (RFC 9112 §6.3); either a
    400 or chunked framing. A request hidden in the body must never be served."""
    smuggled = b"GET /api/v1/submissions/00000000-0000-4000-8000-000000000000 HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    payload = (
        b"POST /api/v1/info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    data, _ = send_and_read(server.port, payload)
    responses = parse_responses(data)
    assert responses, data[:300]
    assert responses[0][0] in (400, 405), responses[0]
    # If the server framed by chunked, the "smuggled" request is a real next request on
    # the same connection and a 404 for it is fine; with CL framing it would have read
    # "0\r\n\r\n" as the body and then parsed garbage: check no 2xx was answered for it.
    for status, _, _ in responses[1:]:
        assert status in (400, 404), responses


def test_conflicting_content_lengths_are_400(server):
    payload = (
        b"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nContent-Length: 7\r\n\r\n{}{}{}{}"
    )
    data, _ = send_and_read(server.port, payload)
    refused(data, {400})


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1e3", b"99999999999999999999999"])
def test_bad_content_length_is_400(server, value):
    payload = (
        b"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + value + b"\r\n\r\n{}"
    )
    data, _ = send_and_read(server.port, payload)
    refused(data, {400, 413})


def test_huge_declared_body_is_413_without_reading_it(server):
    payload = (
        b"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000000\r\n\r\n{"
    )
    t0 = time.monotonic()
    data, _ = send_and_read(server.port, payload)
    assert time.monotonic() - t0 < QUICK_S
    refused(data, {413})


def test_huge_header_value_is_431(server):
    payload = b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    data, closed = send_and_read(server.port, payload, timeout=10)
    refused(data, {431, 400})


def test_many_headers_are_431(server):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(20000))
    payload = b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    data, closed = send_and_read(server.port, payload, timeout=10)
    refused(data, {431, 400})


def test_huge_request_target_is_refused(server):
    payload = b"GET /api/v1/submissions?cursor=" + b"x" * (200 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    data, closed = send_and_read(server.port, payload, timeout=10)
    refused(data, {414, 431, 400})


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS ClientHello
        b"\x00" * 64 + b"\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /api/v1/info HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"GET /api/v1/info HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"G\xffT /api/v1/info HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\r\n\r\n",
    ],
)
def test_garbage_request_is_400_and_closed(server, garbage):
    data, closed = send_and_read(server.port, garbage)
    refused(data, {400, 505})
    assert closed


def test_pipelined_requests_then_garbage(server):
    """Two good requests and garbage in one write: two answers in order, then a 400,
    then the connection closes."""
    payload = (
        http_bytes("GET", "/api/v1/health")
        + http_bytes("GET", "/api/v1/info")
        + b"\x01\x02garbage garbage\r\n\r\n"
        + http_bytes("GET", "/api/v1/health")
    )
    data, closed = send_and_read(server.port, payload)
    responses = parse_responses(data)
    assert [r[0] for r in responses[:2]] == [200, 200], responses
    assert b"max_wait_ms" in responses[1][2]
    assert len(responses) == 3 and responses[2][0] == 400, [r[0] for r in responses]
    assert closed


def test_hundred_pipelined_requests_answered_in_order(server):
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(100)]
    payload = b"".join(http_bytes("GET", f"/api/v1/submissions/{i}") for i in ids)
    payload += http_bytes("GET", "/api/v1/health", headers={"Connection": "close"})
    data, closed = send_and_read(server.port, payload, timeout=15)
    responses = parse_responses(data)
    assert len(responses) == 101, len(responses)
    for i, (status, _, body) in zip(ids, responses[:100]):
        assert status == 404 and i.encode() in body, (i, status, body)
    assert responses[100][0] == 200
    assert closed


def test_truncated_body_then_half_close_is_answered_quickly(server):
    before = server.client.stored_count()
    body = quick_body()
    payload = post_bytes(body)[: -len(body) // 2]  # headers say N bytes, half of them come
    t0 = time.monotonic()
    data, closed = send_and_read(server.port, payload, half_close=True)
    assert time.monotonic() - t0 < QUICK_S, "a half-closed truncated body must not wait for the timeout"
    # Either a 400 or a plain close; never a 2xx, never a hang.
    for status, _, _ in parse_responses(data):
        assert status == 400, data[:300]
    assert closed
    assert server.client.stored_count() == before


def test_stalled_clients_time_out_while_others_are_served(server):
    """Slowloris headers, a stalled body and a trickled body, 30 of each at once: every
    one is answered 408 or closed within the read timeout bound, and meanwhile health,
    info, POST and GET keep answering quickly."""
    n = 30
    socks = []
    kinds = []
    try:
        for i in range(n):
            s = connect(server.port, timeout=READ_TIMEOUT_BOUND_S)
            s.sendall(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
            kinds.append("slow headers")
            s = connect(server.port, timeout=READ_TIMEOUT_BOUND_S)
            body = quick_body()
            s.sendall(post_bytes(body)[: -10])
            socks.append(s)
            kinds.append("stalled body")
            s = connect(server.port, timeout=READ_TIMEOUT_BOUND_S)
            s.sendall(post_bytes(b"{" + b" " * 100000 + b"}")[:200])
            socks.append(s)
            kinds.append("trickled body")

        outcome = [None] * len(socks)
        stop = threading.Event()

        def trickle():
            # One byte a second per connection: never finishes the request in 30 s.
            while not stop.is_set():
                for s, kind in zip(socks, kinds):
                    if kind != "stalled body":
                        try:
                            s.send(b"a" if kind == "slow headers" else b" ")
                        except OSError:
                            pass
                stop.wait(1.0)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        started = time.monotonic()
        worst = 0.0
        sid = server.client.submit(submission({"run.sh": "echo served"}))["id"]
        try:
            # Others are served while the abusers hold their connections.
            while time.monotonic() - started < 12:
                worst = max(worst, timed_health(server.client))
                assert server.client.get("/api/v1/info", timeout=5).status == 200
                time.sleep(0.2)
            assert server.client.wait_finished(sid, timeout=30)["run"]["stdout"] == "served\n"
            assert worst < 1.0, f"health took {worst:.3f}s while clients stalled"

            def reader(i):
                data, closed = read_until_closed(
                    socks[i], READ_TIMEOUT_BOUND_S - (time.monotonic() - started)
                )
                outcome[i] = (data, closed, time.monotonic() - started)

            readers = [threading.Thread(target=reader, args=(i,)) for i in range(len(socks))]
            for r in readers:
                r.start()
            for r in readers:
                r.join(READ_TIMEOUT_BOUND_S + 5)
        finally:
            stop.set()
            t.join(5)
        for (data, closed, at), kind in zip(outcome, kinds):
            assert closed, f"{kind}: still open after {at:.1f}s (got {data[:200]!r})"
            for status, _, _ in parse_responses(data):
                assert status in (408, 400), (kind, status, data[:300])
        # And the server is still fine afterwards.
        assert timed_health(server.client) < 1.0
    finally:
        for s in socks:
            s.close()


@pytest.mark.skipif(not LONG, reason="long run: CUTOR_LONG=1 (waits for the 60 s keep-alive timeout)")
def test_idle_connections_are_closed_after_keep_alive_timeout(server):
    socks = [connect(server.port, timeout=90) for _ in range(200)]
    try:
        t0 = time.monotonic()
        assert timed_health(server.client) < 1.0
        for s in socks:
            data, closed = read_until_closed(s, 90 - (time.monotonic() - t0))
            assert closed and data == b"", data[:200]
        assert time.monotonic() - t0 < 80
    finally:
        for s in socks:
            s.close()
