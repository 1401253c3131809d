"""GET /api/v1/openapi.json (docs/openapi.json built into the binary) is a valid OpenAPI
3.1 document, and it describes what the server really answers: a set of requests covering
every endpoint, its success and each error shape is checked against the document
(openapi_contract.py), and every response the document describes must have been seen.

Adding an endpoint: describe it in docs/openapi.json, add its requests to `exchanges()`
(success and errors), and list in UNTESTABLE only what no test can provoke.
"""

import json
import os
import re
import socket
import time
import uuid

import jsonschema
import pytest

from helpers import FINISH_TIMEOUT_S, Server, submission, wait_until
from openapi_contract import Contract

SOURCE_DIR = os.environ.get(
    "CUTOR_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
DOCUMENT = os.path.join(SOURCE_DIR, "docs", "openapi.json")
# The OpenAPI Initiative's schema of 3.1 documents, from npm (scripts/setup.sh installs
# tests/compat's packages); Debian 12 has no python3-openapi-spec-validator.
OAS_SCHEMA = os.path.join(SOURCE_DIR, "tests", "compat", "node_modules", "@apidevtools",
                          "openapi-schemas", "schemas", "v3.1", "schema.json")
NIXPKGS = os.path.join(SOURCE_DIR, "tests", "nixpkgs")
MAKE_NIX = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.gnumake ]; }"
TOKEN = "openapi-token"

# Responses the document describes that no request of a healthy test server can provoke.
UNTESTABLE = {
    "500": "internal_error is a bug",
    "503": "health's failing needs a broken sandbox (test_faults.py), store_unavailable needs a failing store (test_faults.py), too_many_connections a "
           "flood (test_http_abuse.py), unavailable a host without Nix; queue_full is tested",
}
TESTED_503 = {("/api/v1/submissions", "POST")}


def raw_request(port, data):
    """Sends raw bytes; answers (status, headers, body) of the single response."""
    import http.client

    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        r = http.client.HTTPResponse(s)
        r.begin()
        from helpers import Response

        return Response(r.status, r.getheaders(), r.read())


@pytest.fixture(scope="module")
def document():
    with open(DOCUMENT) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("openapi")
    token_file = base / "tokens"
    token_file.write_text(TOKEN + "\n")
    main = Server(base / "main-data", base / "main-log" if False else base, extra_args=[
        "--workers", "2", "--nix-path", f"nixpkgs={NIXPKGS}", "--substituters", "",
        "--max-queue", "3", "--max-wait-ms", "1500"])
    auth_base = tmp_path_factory.mktemp("openapi-auth")
    auth = Server(auth_base / "data", auth_base, extra_args=["--auth-token-file", str(token_file)],
                  token=TOKEN)
    main.start()
    try:
        auth.start()
    except BaseException:
        main.cleanup()
        raise
    yield main, auth
    auth.cleanup()
    main.cleanup()


def test_document_is_valid_openapi_3_1(document, servers):
    with open(OAS_SCHEMA) as f:
        oas = json.load(f)
    jsonschema.Draft202012Validator(oas).validate(document)
    assert document["openapi"].startswith("3.1.")
    contract = Contract(document)
    for where, schema in contract.schemas():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            raise AssertionError(f"{where}: not a JSON Schema 2020-12 schema: {e.message}")
    # Every $ref points at something.
    for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(document)):
        contract.resolve({"$ref": ref})
    # The binary serves exactly the repository's file.
    main, _ = servers
    r = main.client.get("/api/v1/openapi.json")
    assert r.status == 200 and r.headers["content-type"] == "application/json", r
    assert json.loads(r.body) == document


def test_routes_in_the_code_are_in_the_document(document):
    """A tripwire for a route added without its description: every path literal and path
    segment the v1 router compares against appears in the document's paths."""
    paths = list(document["paths"])
    segments = {s for p in paths for s in p.split("/")}
    api_dir = os.path.join(SOURCE_DIR, "src", "api")
    missing = []
    for name in sorted(os.listdir(api_dir)):
        # The peers' APIs (Judge0, Piston, envicutor) are documented in docs/compat.md.
        if not name.endswith(".cpp") or name.startswith(("judge0", "piston", "envicutor")):
            continue
        with open(os.path.join(api_dir, name)) as f:
            code = f.read()
        for literal in re.findall(r'path == "(/[^"]*)"', code):
            if not literal.startswith("/api/v2") and literal not in paths:
                missing.append(f"{name}: {literal}")
        for word in re.findall(r'parts\[\d\] == "([^"]+)"', code):
            if word not in segments:
                missing.append(f"{name}: segment {word}")
    assert not missing, f"routes missing from docs/openapi.json: {missing}"


def exchanges(main, auth, document):
    """Yields (method, path, response) of every request of the drift check, in order."""
    c = main.client
    big_header = {"X-Padding": "a" * (17 * 1024)}
    json_ct = {"Content-Type": "application/json"}

    def req(method, path, body=None, **kw):
        return method, path, c.request(method, path, body=body, **kw)

    # Submissions: success shapes (plain, wait, tests, base64, a 202 past max_wait_ms).
    yield req("POST", "/api/v1/submissions", submission({"run.sh": "echo hi"}))
    quick = c.post("/api/v1/submissions?wait=true", submission({"run.sh": "printf '\\377'"}))
    yield "POST", "/api/v1/submissions?wait=true", quick
    sid = quick.json()["id"]
    yield req("GET", f"/api/v1/submissions/{sid}")
    yield req("GET", f"/api/v1/submissions/{sid}?encoding=base64")
    tests = submission({"run.sh": "read a b; echo $((a + b))"},
                       tests=[{"stdin": "1 2", "expected_output": "3\n"},
                              {"name": "bad", "stdin": "2 2", "expected_output": "5\n"}],
                       checker={"type": "tokens"})
    judged = c.post("/api/v1/submissions?wait=true", tests)
    yield "POST", "/api/v1/submissions?wait=true", judged
    assert judged.json()["result"] == "WRONG_ANSWER", judged
    slow = c.post("/api/v1/submissions?wait=true", submission({"run.sh": "sleep 30"}))
    yield "POST", "/api/v1/submissions?wait=true", slow
    assert slow.status == 202 and slow.json()["status"] != "FINISHED", slow
    slow_id = slow.json()["id"]
    yield req("GET", f"/api/v1/submissions/{slow_id}?wait=true")
    yield req("GET", "/api/v1/submissions")
    yield req("GET", "/api/v1/submissions?status=FINISHED&limit=1")
    # Submissions: errors.
    yield req("POST", "/api/v1/submissions", b"{not json", headers=json_ct)
    yield req("POST", "/api/v1/submissions", {"files": []})
    yield req("POST", "/api/v1/submissions?wait=maybe", submission({"run.sh": "true"}))
    yield req("POST", "/api/v1/submissions", b"{}", headers={"Content-Type": "text/plain"})
    big = raw_request(main.port, b"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 17000000\r\n\r\n")
    yield "POST", "/api/v1/submissions", big
    yield req("POST", "/api/v1/submissions", submission({"run.sh": "true"}), headers=big_header)
    yield req("GET", "/api/v1/submissions?limit=0")
    yield req("GET", f"/api/v1/submissions/{uuid.uuid4()}")
    yield req("GET", f"/api/v1/submissions/{sid}?encoding=hex")
    yield req("DELETE", f"/api/v1/submissions/{sid}")
    yield req("DELETE", f"/api/v1/submissions/{uuid.uuid4()}")
    yield req("DELETE", f"/api/v1/submissions/{sid}?wait=true")
    # Queue full (--max-queue 3): the slow one plus two more fill it.
    fillers = [c.submit(submission({"run.sh": "sleep 30"}))["id"] for _ in range(2)]
    yield req("POST", "/api/v1/submissions", submission({"run.sh": "true"}))
    for f in fillers + [slow_id]:
        yield req("DELETE", f"/api/v1/submissions/{f}")

    # Server.
    for path in ("/api/v1/info", "/metrics", "/api/v1/openapi.json"):
        yield req("GET", path)
        yield req("GET", path + "?x=1")
    yield req("GET", "/api/v1/health")
    yield req("GET", "/api/v1/health", headers=big_header)
    etag = c.get("/api/v1/openapi.json").headers["etag"]
    yield req("GET", "/api/v1/openapi.json", headers={"If-None-Match": etag})

    # Dependencies.
    nix = f"# {uuid.uuid4()}\n{MAKE_NIX}"
    built = c.post("/api/v1/dependencies", {"nix": nix})
    yield "POST", "/api/v1/dependencies", built
    key = built.json()["key"]
    yield req("POST", "/api/v1/dependencies", {"nix": 3})
    yield req("POST", "/api/v1/dependencies", b"x", headers={"Content-Type": "text/plain"})
    yield "POST", "/api/v1/dependencies", raw_request(
        main.port, b"POST /api/v1/dependencies HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 17000000\r\n\r\n")
    yield req("GET", "/api/v1/dependencies?x=1")
    user = c.submit(submission({"cutor.nix": nix, "run.sh": "sleep 3"}))["id"]
    c.poll_until(user, lambda s: s["status"] == "RUNNING", timeout=FINISH_TIMEOUT_S)
    yield req("GET", "/api/v1/dependencies")
    yield req("DELETE", f"/api/v1/dependencies/{key}")  # 409: in use
    assert c.wait_finished(user)["result"] == "OK"
    yield req("DELETE", f"/api/v1/dependencies/{key}?x=1")
    yield req("DELETE", f"/api/v1/dependencies/{key}")
    wait_until(lambda: all(d["key"] != key for d in c.get("/api/v1/dependencies").json()[
        "dependencies"]), 60, what="evicted")
    yield req("DELETE", f"/api/v1/dependencies/{key}")

    # Runtimes.
    name = f"t{uuid.uuid4().hex[:8]}"
    runtime = {"name": name, "version": "1.0.0", "aliases": [], "source_file": "main.sh",
               "run_sh": "sh main.sh"}
    yield req("GET", "/api/v1/runtimes")
    yield req("GET", "/api/v1/runtimes?x=1")
    yield req("POST", "/api/v1/runtimes", runtime)
    yield req("POST", "/api/v1/runtimes", runtime)  # 409
    yield req("POST", "/api/v1/runtimes", {**runtime, "name": "Bad Name"})
    yield req("POST", "/api/v1/runtimes", b"{}", headers={"Content-Type": "text/plain"})
    yield "POST", "/api/v1/runtimes", raw_request(
        main.port, b"POST /api/v1/runtimes HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 17000000\r\n\r\n")
    yield req("DELETE", f"/api/v1/runtimes/{name}/1.0.0?x=1")
    yield req("DELETE", f"/api/v1/runtimes/{name}/1.0.0")
    yield req("DELETE", f"/api/v1/runtimes/{name}/1.0.0")

    # The playground's files.
    page = c.get("/")
    yield "GET", "/", page
    yield req("GET", "/", headers={"If-None-Match": page.headers["etag"]})
    for f in ("app.js", "app.css", "favicon.svg"):
        asset = c.get(f"/assets/{f}")
        yield "GET", f"/assets/{f}", asset
        yield req("GET", f"/assets/{f}", headers={"If-None-Match": asset.headers["etag"]})

    # Every documented path: a method it lacks (405 naming the documented ones) and, per
    # operation, headers over the limit (431) and, on the token server, no token (401).
    samples = {"{id}": sid, "{key}": key, "{name}": name, "{version}": "1.0.0", "{file}": "app.js"}
    for template, item in document["paths"].items():
        path = template
        for k, v in samples.items():
            path = path.replace(k, v)
        yield req("PATCH", path, b"")
        for method, operation in item.items():
            if method not in ("get", "post", "delete"):
                continue
            yield req(method.upper(), path, headers=big_header)
            if operation.get("security", document["security"]) != []:
                yield method.upper(), path, auth.client.request(method.upper(), path, token="")


def test_real_answers_match_the_document(document, servers):
    main, auth = servers
    contract = Contract(document)
    for method, path, response in exchanges(main, auth, document):
        contract.check(method, path, response)
    missing = sorted(
        (t, m, s) for t, m, s in contract.operations() - contract.seen
        if not (s in UNTESTABLE and (s != "503" or (t, m) not in TESTED_503))
    )
    assert not missing, (
        "responses docs/openapi.json describes that no request produced (add a request to "
        f"exchanges(), or fix the document): {missing}")
