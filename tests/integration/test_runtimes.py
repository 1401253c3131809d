"""The runtime catalogue through /api/v1 (issue 15): listing, adding, deleting, and
submissions that name a runtime instead of giving cutor.nix and run.sh."""

import os

import pytest

from helpers import TEST_NIXPKGS, TEST_RUNTIMES, Server, catalogue_server

NIXPKGS = TEST_NIXPKGS
RUNTIMES = TEST_RUNTIMES


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from catalogue_server(tmp_path_factory, "runtimes")


def read(path):
    with open(path) as f:
        return f.read()


def test_lists_the_shipped_runtimes_with_their_files(srv):
    r = srv.client.get("/api/v1/runtimes")
    assert r.status == 200
    by_name = {x["name"]: x for x in r.json()["runtimes"]}
    assert set(by_name) >= {"bash", "c", "c++", "javascript", "python"}
    c = by_name["c"]
    assert c["version"] == "12.2.0" and c["aliases"] == ["gcc"] and c["source_file"] == "main.c"
    assert c["nix"] == read(os.path.join(RUNTIMES, "c", "cutor.nix"))
    assert c["compile_sh"] == read(os.path.join(RUNTIMES, "c", "compile.sh"))
    assert c["run_sh"] == read(os.path.join(RUNTIMES, "c", "run.sh"))
    assert by_name["python"]["compile_sh"] is None


def test_submission_naming_a_runtime_is_stored_with_its_files(srv):
    sub = srv.client.run({"runtime": "py", "version": "^3.11",
                          "files": [{"name": "main.py", "content": "print(input() * 2)"}],
                          "stdin": "ab"})
    assert sub["result"] == "OK" and sub["run"]["stdout"] == "abab\n"
    r = srv.client.get("/api/v1/runtimes").json()["runtimes"]
    py = next(x for x in r if x["name"] == "python")
    stored = srv.client.get(f"/api/v1/submissions/{sub['id']}")
    assert stored.status == 200
    # The record says exactly what ran: the environment stage built the runtime's cutor.nix.
    assert sub["environment"]["status"] == "OK"
    assert py["run_sh"] == 'exec python3 main.py "$@"\n'


@pytest.mark.parametrize("extra,field", [
    ({"runtime": "cobol"}, "runtime"),
    ({"runtime": "python", "version": "2.x"}, "runtime"),
    ({"runtime": "python", "version": ">>3"}, "version"),
    ({"runtime": 3}, "runtime"),
    ({"runtime": "python", "version": 3}, "version"),
    ({"version": "3"}, "version"),  # a version without a runtime is an unknown field
])
def test_bad_runtime_fields_are_400_and_store_nothing(srv, extra, field):
    before = srv.client.stored_count()
    body = {"files": [{"name": "main.py", "content": "print(1)"}], **extra}
    r = srv.client.post("/api/v1/submissions", body)
    assert r.status == 400, r
    assert r.json()["error"]["field"] == field
    assert srv.client.stored_count() == before


def test_runtime_and_its_own_run_sh_conflict(srv):
    r = srv.client.post("/api/v1/submissions", {
        "runtime": "bash", "files": [{"name": "main.sh", "content": "echo"},
                                     {"name": "run.sh", "content": "echo"}]})
    assert r.status == 400 and r.json()["error"]["field"] == "files[1].name"


def test_add_use_and_delete_a_runtime(srv):
    entry = {"name": "shout", "version": "1.0.0", "aliases": ["loud"], "source_file": "in.txt",
             "run_sh": "tr a-z A-Z < in.txt\n"}
    r = srv.client.post("/api/v1/runtimes", entry)
    assert r.status == 201, r
    assert r.json() == {**entry, "nix": None, "compile_sh": None}
    assert srv.client.post("/api/v1/runtimes", entry).status == 409
    sub = srv.client.run({"runtime": "loud", "files": [{"name": "in.txt", "content": "hi"}]})
    assert sub["run"]["stdout"] == "HI"
    r = srv.client.post("/api/v2/execute", {"language": "shout", "version": "1",
                                            "files": [{"content": "abc"}]})
    assert r.status == 200 and r.json()["run"]["stdout"] == "ABC"
    assert srv.client.delete("/api/v1/runtimes/shout/1.0.0").status == 204
    assert srv.client.delete("/api/v1/runtimes/shout/1.0.0").status == 404
    names = [x["name"] for x in srv.client.get("/api/v1/runtimes").json()["runtimes"]]
    assert "shout" not in names


@pytest.mark.parametrize("change,field", [
    ({"name": "Bad Name"}, "name"),
    ({"version": "1.0"}, "version"),
    ({"source_file": "a/b"}, "source_file"),
    ({"source_file": "run.sh"}, "source_file"),
    ({"run_sh": ""}, "run_sh"),
    ({"aliases": ["ok", "NO"]}, "aliases[1]"),
    ({"shell": "x"}, "shell"),
])
def test_bad_runtime_entries_are_400(srv, change, field):
    entry = {"name": "x", "version": "1.0.0", "source_file": "m", "run_sh": "cat m", **change}
    r = srv.client.post("/api/v1/runtimes", entry)
    assert r.status == 400, r
    assert r.json()["error"]["field"] == field
    names = [x["name"] for x in srv.client.get("/api/v1/runtimes").json()["runtimes"]]
    assert "x" not in names


def test_runtimes_added_through_the_api_survive_a_restart(tmp_path):
    s = Server(tmp_path / "data", tmp_path, extra_args=[
        "--workers", "1", "--nix-path", f"nixpkgs={NIXPKGS}", "--substituters", "",
        "--runtimes", RUNTIMES])
    s.start()
    try:
        entry = {"name": "kept", "version": "2.0.0", "source_file": "in.txt",
                 "run_sh": "rev < in.txt\n"}
        assert s.client.post("/api/v1/runtimes", entry).status == 201
        s.stop()
        s.start()
        by_name = {x["name"]: x for x in s.client.get("/api/v1/runtimes").json()["runtimes"]}
        assert by_name["kept"]["run_sh"] == "rev < in.txt\n", by_name.get("kept")
        assert "python" in by_name  # the shipped ones are there too
        sub = s.client.run({"runtime": "kept", "files": [{"name": "in.txt", "content": "abc\n"}]})
        assert sub["run"]["stdout"] == "cba\n", sub["run"]
    finally:
        s.cleanup()
