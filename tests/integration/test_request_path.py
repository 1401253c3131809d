"""The request path (issue 12): the open-connection cap, long-polls that notice their
client leaving, and the retention sweep, each through the real binary over loopback."""

import pytest

from helpers import Response, Server, assert_error_shape, scaled, wait_until
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
