"""SPEC §1 SETTING_UP_ENVIRONMENT and §4 dependencies, through the real server and real Nix.

The server evaluates cutor.nix against the offline test channel in tests/nixpkgs (real
derivations wrapping host tools) with no substituters.
"""

import concurrent.futures
import os
import re
import uuid

import pytest

from helpers import Server, scaled, submission, wait_until

SOURCE_DIR = os.environ.get(
    "CUTOR_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
NIXPKGS = os.path.join(SOURCE_DIR, "tests", "nixpkgs")

PYTHON_NIX = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.python3 ]; }"
GCC_NIX = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.gcc ]; }"


def fresh(nix):
    """The same environment under a new key (the key hashes the exact bytes)."""
    return f"# {uuid.uuid4()}\n{nix}"


@pytest.fixture(scope="module")
def nix_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("deps")
    srv = Server(
        base / "data",
        base,
        extra_args=["--workers", "4", "--nix-path", f"nixpkgs={NIXPKGS}", "--substituters", ""],
    )
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def client(nix_server):
    return nix_server.client


def nix_invocations(client):
    text = client.get("/metrics").body.decode()
    m = re.search(r"^cutor_nix_invocations_total (\d+)$", text, re.M)
    assert m, "cutor_nix_invocations_total missing from /metrics"
    return int(m.group(1))


def dependency(client, key):
    r = client.get("/api/v1/dependencies")
    assert r.status == 200, r
    for d in r.json()["dependencies"]:
        if d["key"] == key:
            return d
    return None


def test_python_program_runs_in_its_nix_environment(client):
    sub = client.run(
        submission(
            {
                "cutor.nix": fresh(PYTHON_NIX),
                "run.sh": 'command -v python3; python3 -c "print(input()[::-1])"',
            },
            stdin="hello",
        )
    )
    assert sub["result"] == "OK", sub
    assert sub["environment"]["status"] == "OK"
    lines = sub["run"]["stdout"].splitlines()
    assert re.fullmatch(r"/nix/store/[a-z0-9]{32}-python3-3\.11\.2/bin/python3", lines[0]), lines
    assert lines[1] == "olleh"


def test_c_program_compiles_with_the_environments_gcc(client):
    sub = client.run(
        submission(
            {
                "cutor.nix": fresh(GCC_NIX),
                "compile.sh": "command -v gcc >&2; gcc -O2 -o hello main.c",
                "main.c": '#include <stdio.h>\nint main(void){puts("hello from C");return 0;}\n',
                "run.sh": "./hello",
            }
        )
    )
    assert sub["result"] == "OK", sub
    assert sub["compile"]["stderr"].startswith("/nix/store/"), sub["compile"]
    assert sub["run"]["stdout"] == "hello from C\n"


def test_second_identical_submission_is_a_cache_hit_without_nix(client):
    nix = fresh(PYTHON_NIX)
    body = submission({"cutor.nix": nix, "run.sh": "python3 -c 'print(6*7)'"})
    first = client.run(body)
    assert first["result"] == "OK", first
    before = nix_invocations(client)
    second = client.run(body)
    assert second["result"] == "OK", second
    assert second["run"]["stdout"] == "42\n"
    assert nix_invocations(client) == before, "a cache hit started Nix"
    keys = [
        d["key"]
        for d in client.get("/api/v1/dependencies").json()["dependencies"]
        if d["use_count"] == 2 and d["state"] == "ready"
    ]
    assert keys, "the environment's use_count should be 2"


def test_concurrent_identical_cold_submissions_share_one_build(client):
    # What one cold build costs in Nix processes...
    before = nix_invocations(client)
    one = client.run(submission({"cutor.nix": fresh(PYTHON_NIX), "run.sh": "true"}))
    assert one["result"] == "OK", one
    per_build = nix_invocations(client) - before
    assert per_build > 0
    # ...and ten identical cold submissions at once cost exactly that.
    body = submission({"cutor.nix": fresh(PYTHON_NIX), "run.sh": "python3 -c 'print(1)'"})
    before = nix_invocations(client)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        subs = list(pool.map(lambda _: client.run(body), range(10)))
    assert [s["result"] for s in subs] == ["OK"] * 10, [s["environment"] for s in subs]
    assert nix_invocations(client) - before == per_build, "more than one build for one key"


@pytest.mark.parametrize(
    "nix, message",
    [
        ("{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell {", "syntax error"),
        ("let x = x; in x", "infinite recursion"),
        ('{ ... }: builtins.readFile "/etc/passwd"', "forbidden in restricted mode"),
    ],
    ids=["syntax", "recursion", "host-file"],
)
def test_bad_cutor_nix_is_an_environment_error(client, nix, message):
    sub = client.run(submission({"cutor.nix": nix, "run.sh": "echo never"}))
    assert sub["result"] == "ENVIRONMENT_ERROR", sub
    env = sub["environment"]
    assert env["status"] not in ("OK", "SKIPPED", "PENDING")
    assert message in env["stderr"], env["stderr"]
    for stage in ("build", "compile", "run"):
        assert sub[stage]["status"] == "SKIPPED", sub[stage]


def test_build_ahead_listing_and_eviction(client):
    nix = fresh(PYTHON_NIX)
    r = client.post("/api/v1/dependencies", {"nix": nix})
    assert r.status == 202, r
    entry = r.json()
    key = entry["key"]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert entry["state"] in ("building", "ready")
    wait_until(lambda: (dependency(client, key) or {}).get("state") == "ready", 60, what="ready")
    d = dependency(client, key)
    assert d["store_path"].startswith("/nix/store/")
    assert d["size_bytes"] > 0 and d["use_count"] == 0 and d["last_used_at"] is None
    assert d["error"] is None
    python = [p for p in d["packages"] if p["name"] == "python3"]
    assert python and python[0]["version"] == "3.11.2" and python[0]["size_bytes"] > 0
    assert all(p["path"].startswith("/nix/store/") for p in d["packages"])

    # Used by a running submission: 409; afterwards: 202 (evicting, in the background, listed
    # as such until gone), then 404.
    sid = client.submit(submission({"cutor.nix": nix, "run.sh": "sleep 3"}))["id"]
    client.poll_until(sid, lambda s: s["status"] == "RUNNING", timeout=30)
    assert client.delete(f"/api/v1/dependencies/{key}").status == 409
    assert client.wait_finished(sid)["result"] == "OK"
    r = client.delete(f"/api/v1/dependencies/{key}")
    assert r.status == 202, r
    assert r.json()["key"] == key and r.json()["state"] == "evicting", r.json()
    assert r.json()["store_path"] == d["store_path"], r.json()
    wait_until(lambda: dependency(client, key) is None, 60, what="evicted")
    r = client.delete(f"/api/v1/dependencies/{key}")
    assert r.status == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"nix": 3}', b'{"nix": "x", "extra": 1}', b"{}"],
    ids=["not-json", "array", "not-string", "unknown-field", "missing"],
)
def test_build_ahead_refuses_bad_bodies(client, body):
    count = len(client.get("/api/v1/dependencies").json()["dependencies"])
    r = client.post("/api/v1/dependencies", body, headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    assert set(r.json()["error"]) >= {"code", "message", "field"}
    assert len(client.get("/api/v1/dependencies").json()["dependencies"]) == count


def slow_nix(seconds):
    """An environment whose one package takes `seconds` to build (a fresh key each call)."""
    return ("{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ (derivation { "
            f'name = "slow-{uuid.uuid4().hex[:12]}"; system = builtins.currentSystem; '
            f'builder = "/bin/sh"; args = [ "-c" "/bin/sleep {seconds}; /bin/mkdir $out" ]; }}) ]; }}')


@pytest.mark.parametrize("max_builds", [1, 2])
def test_max_builds_queues_distinct_keys_within_their_own_wall_time(make_server, max_builds):
    srv = make_server(["--workers", "3", "--max-builds", str(max_builds), "--nix-path",
                       f"nixpkgs={NIXPKGS}", "--substituters", ""])
    c = srv.client
    assert c.info()["nix"]["max_builds"] == max_builds
    slow = c.submit(submission({"cutor.nix": slow_nix(scaled(8)), "run.sh": "echo slow"}))["id"]
    c.poll_until(slow, lambda s: s["status"] == "SETTING_UP_ENVIRONMENT", timeout=30)
    wait_until(lambda: any(d["state"] == "building"
                           for d in c.get("/api/v1/dependencies").json()["dependencies"]),
               30, what="the slow build started")
    budget = int(scaled(4) * 1000)
    quick = c.run(submission({"cutor.nix": fresh(PYTHON_NIX), "run.sh": "echo quick"},
                             limits={"environment": {"wall_time_ms": budget}}), timeout=60)
    if max_builds == 1:
        # Waited for the one slot, past its own limit, while the slow build held it.
        assert quick["result"] == "ENVIRONMENT_ERROR", quick
        env = quick["environment"]
        assert env["status"] == "WALL_TIME_LIMIT_EXCEEDED", env
        assert "waiting for one of the 1 build slots (--max-builds)" in env["stderr"], env
    else:
        assert quick["result"] == "OK" and quick["run"]["stdout"] == "quick\n", quick
    done = c.wait_finished(slow, timeout=scaled(60))
    assert done["result"] == "OK" and done["run"]["stdout"] == "slow\n", done
