"""Piston's v2 API and the runtime catalogue behind it (issue 15), through the real server.

The server runs the test channel's runtimes (tests/runtimes over tests/nixpkgs, offline).
The unmodified npm piston-client (tests/compat, installed by scripts/setup.sh) drives
`runtimes` and `execute`; the other tests check Piston's fields one by one.
"""

import json
import os
import shutil
import subprocess

import pytest

from helpers import SOURCE_DIR, catalogue_server

COMPAT = os.path.join(SOURCE_DIR, "tests", "compat")
STAGE_KEYS = {"stdout", "stderr", "output", "code", "signal", "message", "status", "cpu_time",
              "wall_time", "memory"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from catalogue_server(tmp_path_factory, "piston")


def execute(srv, body, **kw):
    return srv.client.post("/api/v2/execute", body, timeout=120, **kw)


def test_unmodified_piston_client_runs_runtimes_and_execute(srv):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/setup.sh installs nodejs)"
    assert os.path.isdir(os.path.join(COMPAT, "node_modules", "piston-client")), (
        "piston-client is not installed: run scripts/setup.sh (npm install --prefix tests/compat)")
    out = subprocess.run([node, os.path.join(COMPAT, "piston_client_check.mjs"),
                          f"http://127.0.0.1:{srv.port}"], capture_output=True, text=True,
                         timeout=180, cwd=COMPAT)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    by_name = {r["language"]: r for r in got["runtimes"]}
    assert by_name["python"] == {"language": "python", "version": "3.11.2",
                                 "aliases": ["py", "python3"]}
    assert set(by_name) == {"bash", "c", "c++", "javascript", "multi-file", "python"}
    py = got["python"]
    assert "run" in py, py
    assert py["language"] == "python" and py["version"] == "3.11.2"
    assert "compile" not in py
    # piston-client sends args ["1", "2", "3"] unless told otherwise.
    assert py["run"]["stdout"] == "hello ['1', '2', '3']\n"
    assert py["run"]["code"] == 0 and py["run"]["status"] is None
    assert set(py["run"]) == STAGE_KEYS
    c = got["c_error"]
    assert c["compile"]["status"] == "RE" and c["compile"]["code"] == 1
    assert "error" in c["compile"]["stderr"]
    assert c["run"] == c["compile"]  # Piston's quirk: a failed compile is the run too


def test_no_or_text_content_type_is_json_but_another_type_is_415(srv):
    body = json.dumps({"language": "bash", "version": "*",
                       "files": [{"content": "echo hi"}]}).encode()
    r = execute(srv, body, headers={"Content-Type": None})
    assert r.status == 200, r
    assert r.json()["run"]["stdout"] == "hi\n"
    # piston-client's node-fetch labels its JSON string text/plain.
    r = execute(srv, body, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status == 200, r
    r = execute(srv, body, headers={"Content-Type": "application/xml"})
    assert r.status == 415 and r.json() == {"message": "Content-Type must be application/json"}


def test_compiled_run_gets_stdin_args_and_named_extra_files(srv):
    r = execute(srv, {
        "language": "cpp", "version": "12", "stdin": "5",
        "args": ["a b"],
        "files": [{"name": "prog.cpp", "content":
                   '#include <iostream>\n#include "extra.h"\n'
                   'int main(int c, char** v) { int n; std::cin >> n; '
                   'std::cout << n * K << " " << v[1] << std::endl; }'},
                  {"name": "extra.h", "content": "const int K = 3;"}]})
    assert r.status == 200, r
    body = r.json()
    assert body["language"] == "c++" and body["version"] == "12.2.0"
    assert set(body["compile"]) == STAGE_KEYS and body["compile"]["code"] == 0
    assert body["run"]["stdout"] == "15 a b\n"
    assert body["run"]["status"] is None and body["run"]["message"] is None
    assert body["run"]["wall_time"] >= 0 and body["run"]["memory"] > 0


def test_nonzero_exit_is_RE_signal_is_SG_timeout_is_TO(srv):
    r = execute(srv, {"language": "bash", "version": "*",
                      "files": [{"content": "echo out; exit 3"}]}).json()["run"]
    assert (r["status"], r["code"], r["signal"], r["message"]) == (
        "RE", 3, None, "Exited with error status 3")
    r = execute(srv, {"language": "python", "version": "*",
                      "files": [{"content": "import os, signal\nos.kill(os.getpid(), 9)"}]})
    r = r.json()["run"]
    assert (r["status"], r["code"], r["signal"]) == ("SG", None, "SIGKILL")
    assert r["message"] == "Caught fatal signal 9"
    r = execute(srv, {"language": "bash", "version": "*", "run_timeout": 300,
                      "files": [{"content": "echo before; sleep 5"}]}).json()["run"]
    assert r["status"] == "TO" and r["signal"] == "SIGKILL"
    assert r["stdout"] == "before\n"
    assert 300 <= r["wall_time"] < 3000


def test_unknown_runtime_or_version_is_400_message(srv):
    r = execute(srv, {"language": "cobol", "version": "*", "files": [{"content": "x"}]})
    assert r.status == 400 and r.json() == {"message": "cobol-* runtime is unknown"}
    r = execute(srv, {"language": "python", "version": "2.x", "files": [{"content": "x"}]})
    assert r.status == 400 and r.json() == {"message": "python-2.x runtime is unknown"}


@pytest.mark.parametrize("body,message", [
    ({"version": "*", "files": [{"content": "x"}]}, "language is required as a string"),
    ({"language": "bash", "files": [{"content": "x"}]}, "version is required as a string"),
    ({"language": "bash", "version": "*"}, "files is required as an array"),
    ({"language": "bash", "version": "*", "files": []}, "files must have at least one item"),
    ({"language": "bash", "version": "*", "files": [{"content": "x"}], "run_timeout": 10**9},
     "run_timeout cannot exceed the configured limit of 600000"),
    ({"language": "bash", "version": "*", "files": [{"content": "x"}], "run_timeout": "1"},
     "run_timeout must be a number"),
    ({"language": "bash", "version": "*", "files": [{"content": "x", "encoding": "rot13"}]},
     "files[0].encoding must be utf8, base64 or hex"),
    ({"language": "bash", "version": "*", "files": [{"content": "x"}, {"name": "run.sh",
      "content": "y"}]}, "files[1].name run.sh is reserved by the runtime"),
    ({"language": "bash", "version": "*", "files": [{"content": "x"}], "packages": []},
     "packages is not a field cutor's Piston API supports"),
])
def test_bad_execute_is_400_message_and_stores_nothing(srv, body, message):
    before = srv.client.stored_count()
    r = execute(srv, body)
    assert r.status == 400 and r.json() == {"message": message}
    assert srv.client.stored_count() == before


def test_execute_is_a_stored_submission_with_the_runtime_files(srv):
    r = execute(srv, {"language": "py", "version": "3.11.2",
                      "files": [{"content": "print(1)"}]})
    assert r.status == 200
    sid = r.headers["location"].rsplit("/", 1)[1]
    sub = srv.client.get_submission(sid)
    assert sub["status"] == "FINISHED" and sub["result"] == "OK"
    assert sub["run"]["stdout"] == "1\n"
