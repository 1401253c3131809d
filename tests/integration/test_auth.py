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
