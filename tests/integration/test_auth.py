"""Bearer tokens: SPEC §5 (--auth-token-file)."""

import pytest

from helpers import assert_error_shape, submission

TOKENS = ["tok-alpha-0123456789", "tok-beta-abcdefghij"]


@pytest.fixture
def auth_server(make_server, tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text(f"\n{TOKENS[0]}\n\n\n{TOKENS[1]}\n\n")
    return make_server(["--workers", "2", "--auth-token-file", str(token_file)], token=TOKENS[0])


def test_health_needs_no_token(auth_server):
    r = auth_server.client.get("/api/v1/health", token="")
    assert r.status == 200, r


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        f"Bearer {TOKENS[0][:-1]}",
        f"Bearer {TOKENS[0]}x",
        f"Bearer {TOKENS[0].upper()}",
        f"Basic {TOKENS[0]}",
        TOKENS[0],
        f"Bearer {TOKENS[0]} {TOKENS[1]}",
    ],
    ids=lambda a: repr(a),
)
def test_requests_without_a_valid_token_are_401(auth_server, authorization):
    client = auth_server.client
    hdrs = {"Authorization": authorization}
    for method, path in [
        ("GET", "/api/v1/info"),
        ("GET", "/api/v1/submissions"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/dependencies"),
    ]:
        r = client.request(method, path, headers=hdrs, token="")
        assert_error_shape(r, 401)
    r = client.request(
        "POST", "/api/v1/submissions", body=submission({"run.sh": "echo hi"}),
        headers=hdrs, token="",
    )
    assert_error_shape(r, 401)
    assert client.stored_count() == 0, "an unauthorised POST was stored"


@pytest.mark.parametrize("token", TOKENS)
def test_either_token_works(auth_server, token):
    client = auth_server.client
    r = client.get("/api/v1/info", token=token)
    assert r.status == 200, r
    r = client.post("/api/v1/submissions", submission({"run.sh": "echo hi"}), token=token)
    assert r.status == 202, r
    sid = r.json()["id"]
    r = client.get(f"/api/v1/submissions/{sid}", token=token)
    assert r.status == 200, r
    assert client.wait_finished(sid)["run"]["stdout"] == "hi\n"
    r = client.get("/metrics", token=token)
    assert r.status == 200, r


def test_unauthorised_cancel_is_refused_and_changes_nothing(auth_server):
    client = auth_server.client
    sid = client.submit(submission({"run.sh": "sleep 1; echo fine"}))["id"]
    r = client.delete(f"/api/v1/submissions/{sid}", token="", headers={"Authorization": None})
    assert_error_shape(r, 401)
    assert client.wait_finished(sid)["result"] == "OK"


def _send_headers_only(server, headers):
    """Sends a POST's headers announcing a 16 MiB body and no body byte; returns what the
    server answers within 10 s (it must answer before any of the body is sent)."""
    import socket
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        head = "POST /api/v1/submissions HTTP/1.1\r\nHost: 127.0.0.1\r\n" \
               "Content-Type: application/json\r\nContent-Length: 16777216\r\n"
        sock.sendall((head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n")
                     .encode())
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got.decode("latin-1")
    finally:
        sock.close()


@pytest.mark.parametrize("expect", [None, "100-continue"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token"])
def test_unauthenticated_16mib_body_is_refused_before_it_is_read(auth_server, expect,
                                                                   authorization):
    headers = {}
    if expect:
        headers["Expect"] = expect
    if authorization:
        headers["Authorization"] = authorization
    got = _send_headers_only(auth_server, headers)
    # 401 from the headers alone: no 100 Continue, and the connection is not kept for the
    # body it never read.
    assert got.startswith("HTTP/1.1 401 "), got
    assert "100 Continue" not in got, got
    assert "connection: close" in got.lower(), got
    assert 'www-authenticate: bearer realm="cutor"' in got.lower(), got
    assert auth_server.client.stored_count() == 0


def test_authenticated_large_body_gets_100_continue(auth_server):
    # The control: with a valid token the server asks for the body.
    got = _send_headers_only(auth_server, {"Expect": "100-continue",
                                           "Authorization": f"Bearer {TOKENS[1]}"})
    assert got.startswith("HTTP/1.1 100 Continue"), got
