"""envicutor's API (issue 15) through the real server: /runtimes, /execute, project zips
unpacked in the sandbox (hostile ones refused with their exact outcome), and Judge0's
additional_files over the same extract step. Runs the test channel's runtimes offline."""
import base64
import io
import os
import stat
import zipfile

import pytest

from helpers import catalogue_server

STAGE_KEYS = {"memory", "exit_code", "exit_signal", "exit_message", "exit_status", "stdout",
              "stderr", "cpu_time", "wall_time"}
NIX = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.python3 ]; }"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from catalogue_server(tmp_path_factory, "envicutor")


def ids(srv):
    r = srv.client.get("/runtimes")
    assert r.status == 200, r
    return {x["name"]: x["id"] for x in r.json()}


def execute(srv, body, query=""):
    return srv.client.post("/execute" + query, body, timeout=120)


def zip_b64(entries, links=(), deflate=False):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for name, content in entries:
            z.writestr(name, content)
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return base64.b64encode(buf.getvalue()).decode()


def count_submissions(srv):
    return len(srv.client.get("/api/v1/submissions?limit=100").json()["submissions"])


@pytest.fixture(scope="module")
def py(srv):
    """An envicutor runtime like envicutor's own tests add (a multi-file project one)."""
    r = srv.client.post("/runtimes", {
        "name": "py-project", "nix_shell": NIX, "compile_script": "",
        "run_script": "python3 first.py", "source_file_name": "first.py"})
    assert r.status == 200, r
    assert r.json()["stdout"] == "" and r.json()["stderr"] == ""
    return r.json()["id"]


def test_runtimes_lists_the_catalogue_with_stable_ids(srv, py):
    got = ids(srv)
    assert got["py-project"] == py
    assert "python (3.11.2)" in got and "bash (5.2.15)" in got
    # The same entries as /api/v1/runtimes.
    v1 = srv.client.get("/api/v1/runtimes").json()["runtimes"]
    assert {(e["name"], e["version"]) for e in v1} >= {("py-project", "0.0.0"),
                                                        ("python", "3.11.2")}


def test_execute_runs_and_answers_envicutor_stages(srv, py):
    r = execute(srv, {"runtime_id": py, "source_code": "print(input())", "input": "Hello world"})
    assert r.status == 200, r
    body = r.json()
    assert set(body) == {"extract", "compile", "run"}
    assert body["extract"] is None and body["compile"] is None
    run = body["run"]
    assert set(run) == STAGE_KEYS
    assert run["stdout"] == "Hello world\n" and run["exit_code"] == 0
    assert run["exit_status"] is None and run["exit_message"] is None
    assert run["exit_signal"] is None and run["memory"] > 0
    assert isinstance(run["wall_time"], float)


def test_compile_failure_leaves_run_null(srv):
    c = ids(srv)["c (12.2.0)"]
    r = execute(srv, {"runtime_id": c, "source_code": "int main()x { return 0; }"})
    assert r.status == 200, r
    body = r.json()
    assert body["run"] is None
    assert body["compile"]["exit_code"] == 1 and body["compile"]["exit_status"] == "RE"
    assert body["compile"]["exit_message"] == "Exited with error status 1"


def test_runtime_errors_each_answer_envicutor_message(srv, py):
    before = count_submissions(srv)
    cases = [
        ({"name": "py-project", "nix_shell": NIX, "compile_script": "", "run_script": "x",
          "source_file_name": "a.py"}, 400, "A runtime with this name already exists"),
        ({"name": "bad", "nix_shell": NIX, "compile_script": "", "run_script": "x",
          "source_file_name": "../main.py"}, 400, "Invalid source file name"),
        ({"name": "bad", "nix_shell": NIX, "compile_script": "", "run_script": "x",
          "source_file_name": "main.py/"}, 400, "Invalid source file name"),
        ({"name": "", "nix_shell": NIX, "compile_script": "", "run_script": "x",
          "source_file_name": "a"}, 400, "Name can't be empty"),
        ({"name": "b", "nix_shell": "", "compile_script": "", "run_script": "x",
          "source_file_name": "a"}, 400, "Nix shell can't be empty"),
        ({"name": "b", "nix_shell": NIX, "compile_script": "", "run_script": "",
          "source_file_name": "a"}, 400, "Run command can't be empty"),
        ({"name": "b", "nix_shell": NIX, "compile_script": "", "run_script": "x",
          "source_file_name": ""}, 400, "Source file name can't be empty"),
    ]
    listed = ids(srv)
    for body, status, message in cases:
        r = srv.client.post("/runtimes", body)
        assert (r.status, r.json()["message"]) == (status, message), (body, r)
    r = srv.client.post("/runtimes", {"name": "Bad Name", "nix_shell": NIX, "compile_script": "",
                                      "run_script": "x", "source_file_name": "a"})
    assert r.status == 400 and r.json()["message"].startswith("Invalid runtime name"), r
    r = srv.client.post("/runtimes", {"name": "b"})
    assert r.status == 422 and "missing field `nix_shell`" in r.json()["message"], r
    r = srv.client.post("/runtimes", b"{", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["message"].startswith("Failed to parse"), r
    r = srv.client.post("/runtimes", {"name": "b", "nix_shell": NIX, "compile_script": "",
                                      "run_script": "x", "source_file_name": "a", "extra": 1})
    assert r.status == 422 and "extra is not a field" in r.json()["message"], r
    assert ids(srv) == listed and count_submissions(srv) == before


def test_delete_runtime_and_ids_are_never_reused(srv):
    body = {"name": "gone", "nix_shell": NIX, "compile_script": "", "run_script": "true",
            "source_file_name": "a"}
    first = srv.client.post("/runtimes", body).json()["id"]
    r = srv.client.delete(f"/runtimes/{first}")
    assert r.status == 200 and r.body == b"", r
    assert "gone" not in ids(srv)
    r = srv.client.delete(f"/runtimes/{first}")
    assert (r.status, r.json()) == (404, {"message": "Could not find the specified runtime"})
    r = srv.client.delete("/runtimes/abc")
    assert r.status == 400 and "Cannot parse `abc`" in r.json()["message"], r
    again = srv.client.post("/runtimes", body).json()["id"]
    assert again != first
    r = execute(srv, {"runtime_id": first, "source_code": ""})
    assert (r.status, r.json()) == (400, {"message": f"Runtime with id: {first} does not exist"})
    assert srv.client.delete(f"/runtimes/{again}").status == 200


def test_limits_above_the_maxima_are_refused_naming_them(srv, py):
    lim = srv.client.info()["limits"]
    run, comp = lim["run"], lim["compile"]

    def secs(ms):
        return f"{ms / 1000:g}"

    cases = [
        ("run_limits", {"wall_time": run["wall_time_ms"]["max"] / 1000 + 1},
         f"Invalid run limits: wall_time can't exceed {secs(run['wall_time_ms']['max'])} seconds"),
        ("run_limits", {"cpu_time": run["cpu_time_ms"]["max"] / 1000 + 1},
         f"Invalid run limits: cpu_time can't exceed {secs(run['cpu_time_ms']['max'])} seconds"),
        ("run_limits", {"memory": run["memory_bytes"]["max"] // 1024 + 1},
         f"Invalid run limits: memory can't exceed {run['memory_bytes']['max'] // 1024} kilobytes"),
        ("run_limits", {"cpu_time": 1, "extra_time": run["cpu_time_ms"]["max"] / 1000},
         "Invalid run limits: extra_time can't exceed "
         f"{secs(run['cpu_time_ms']['max'] - 1000)} seconds"),
        ("run_limits", {"max_file_size": run["file_size_bytes"]["max"] // 1024 + 1},
         "Invalid run limits: max_file_size can't exceed "
         f"{run['file_size_bytes']['max'] // 1024} kilobytes"),
        ("run_limits", {"max_number_of_processes": run["processes"]["max"] + 1},
         f"Invalid run limits: max_number_of_processes can't exceed {run['processes']['max']}"),
        ("compile_limits", {"wall_time": comp["wall_time_ms"]["max"] / 1000 + 1},
         "Invalid compile limits: wall_time can't exceed "
         f"{secs(comp['wall_time_ms']['max'])} seconds"),
        ("run_limits", {"max_open_files": 64},
         "Invalid run limits: max_open_files is not supported: cutor's box has no open-file "
         "limit of its own"),
        ("run_limits", {"wall_time": 0}, "Invalid run limits: wall_time must be at least 0.001 "
         "seconds"),
        ("run_limits", {"memory": 1.5}, "Invalid run limits: memory must be a whole number"),
        ("run_limits", {"stack": 1}, "Invalid run limits: stack is not a limit envicutor's API has"),
    ]
    before = count_submissions(srv)
    for key, limits, message in cases:
        r = execute(srv, {"runtime_id": py, "source_code": "print(1)", key: limits})
        assert (r.status, r.json()) == (400, {"message": message}), (limits, r)
    assert count_submissions(srv) == before


@pytest.mark.parametrize("code, limits, check", [
    ("while True: pass", {"cpu_time": 0.2, "extra_time": 0},
     lambda s: s["exit_status"] == "TO" and s["exit_message"] == "Time limit exceeded"),
    ("import time; time.sleep(3)", {"wall_time": 0.5},
     lambda s: s["exit_status"] == "TO" and
     s["exit_message"] == "Time limit exceeded (wall clock)"),
    ("x = bytearray(200 * 1024 * 1024); print(len(x))", {"memory": 32768},
     lambda s: s["exit_status"] == "SG" and s["exit_signal"] == 9),
    ("open('big', 'w').write('A' * (5 << 20))", {"max_file_size": 1024},
     lambda s: s["exit_status"] == "RE" and s["exit_code"] == 1 and
     "File too large" in s["stderr"]),
    ("import os\nfor _ in range(50): os.fork()", {"max_number_of_processes": 4},
     lambda s: s["exit_status"] == "RE" and s["exit_code"] == 1 and "BlockingIOError" in
     s["stderr"]),
])
def test_programs_breaking_each_limit(srv, py, code, limits, check):
    r = execute(srv, {"runtime_id": py, "source_code": code, "run_limits": limits})
    assert r.status == 200, r
    assert check(r.json()["run"]), r.json()["run"]


def test_project_zip_runs(srv, py):
    src = zip_b64([("first.py", "from second import say\nsay()\n"),
                   ("second.py", "def say():\n    print(input())\n")], deflate=True)
    r = execute(srv, {"runtime_id": py, "source_code": src, "input": "Hello world"},
                "?is_project=true")
    assert r.status == 200, r
    body = r.json()
    assert body["extract"]["exit_code"] == 0 and body["extract"]["exit_status"] is None
    assert body["run"]["stdout"] == "Hello world\n", body
    # The v1 view of the same run: the build stage is the unpacking.
    sid = srv.client.get("/api/v1/submissions?limit=1").json()["submissions"][0]["id"]
    sub = srv.client.get(f"/api/v1/submissions/{sid}").json()
    assert sub["build"]["status"] == "OK" and sub["run"]["stdout"] == "Hello world\n", sub


def test_project_with_invalid_base64_is_refused(srv, py):
    before = count_submissions(srv)
    r = execute(srv, {"runtime_id": py, "source_code": "@x@"}, "?is_project=true")
    assert r.status == 400 and "not valid base64" in r.json()["message"], r
    r = execute(srv, {"runtime_id": py, "source_code": ""}, "?is_project=maybe")
    assert r.status == 400, r
    assert count_submissions(srv) == before


@pytest.mark.parametrize("zip_text, code, stderr", [
    (base64.b64encode(b"- not a zip archive -\n").decode(), 9, "End-of-central-directory"),
    (zip_b64([("../evil.txt", "x")]), 3, "cutor: cutor.zip entry '../evil.txt' is outside the "
     "workspace"),
    (zip_b64([("/etc/evil.txt", "x")]), 3, "cutor: cutor.zip entry '/etc/evil.txt' is outside "
     "the workspace"),
    (zip_b64([("ok.txt", "y")], links=[("l", "/etc/passwd")]), 3,
     "cutor: cutor.zip has 1 symbolic link(s); links are refused"),
    (zip_b64([("run.sh", "echo pwned")]), 3,
     "cutor: cutor.zip entry 'run.sh' would replace a file already there"),
    (zip_b64([(f"f{i}", "") for i in range(10001)]), 3,
     "cutor: cutor.zip has 10001 entries, more than 10000"),
])
def test_hostile_project_zips_are_stopped_in_the_extract_stage(srv, py, zip_text, code, stderr):
    r = execute(srv, {"runtime_id": py, "source_code": zip_text}, "?is_project=true")
    assert r.status == 200, r
    body = r.json()
    assert body["compile"] is None and body["run"] is None, body
    assert body["extract"]["exit_code"] == code, body
    assert stderr in body["extract"]["stderr"] + body["extract"]["stdout"], body


def test_zip_bomb_is_stopped_by_the_file_size_limit(srv, py):
    bomb = zip_b64([("zero", b"\0" * (64 << 20))], deflate=True)
    assert len(bomb) < 200_000
    r = execute(srv, {"runtime_id": py, "source_code": bomb,
                      "compile_limits": {"max_file_size": 1024}}, "?is_project=true")
    assert r.status == 200, r
    ex = r.json()["extract"]
    assert r.json()["run"] is None
    # unzip's write fails at RLIMIT_FSIZE: SIGXFSZ (25) ends it.
    assert ex["exit_signal"] == 25 and ex["exit_status"] == "SG", ex


def judge0_language(srv, name):
    for lang in srv.client.get("/languages").json():
        if lang["name"].startswith(name + " ("):
            return lang["id"]
    raise AssertionError(name)


def test_judge0_additional_files_beside_the_source(srv):
    lang = judge0_language(srv, "python")
    extra = zip_b64([("helper.py", "def greet():\n    return 'hi from helper'\n")])
    r = srv.client.post("/submissions?wait=true&fields=stdout,status,additional_files", {
        "language_id": lang, "source_code": "import helper\nprint(helper.greet())\n",
        "additional_files": extra}, timeout=120)
    assert r.status == 201, r
    assert r.json()["stdout"] == "hi from helper\n" and r.json()["status"]["id"] == 3, r.json()
    assert r.json()["additional_files"] == extra


def test_judge0_multi_file_program(srv):
    lang = judge0_language(srv, "multi-file")
    extra = zip_b64([("compile", "gcc -o prog main.c\n"),
                     ("run", "./prog\n"),
                     ("main.c", '#include <stdio.h>\nint main(){puts("multi");return 0;}\n')])
    r = srv.client.post("/submissions?wait=true", {"language_id": lang,
                                                    "additional_files": extra}, timeout=120)
    assert r.status == 201, r
    assert r.json()["stdout"] == "multi\n" and r.json()["status"]["id"] == 3, r.json()
    r = srv.client.post("/submissions", {"language_id": lang})
    assert r.status == 422 and r.json() == {
        "additional_files": ["can't be blank for the multi-file program"]}, r.json()


def test_judge0_bad_additional_files(srv):
    lang = judge0_language(srv, "python")
    r = srv.client.post("/submissions", {"language_id": lang, "source_code": "print(1)",
                                         "additional_files": "@@"})
    assert r.status == 422 and "additional_files" in r.json(), r.json()
    r = srv.client.post("/submissions?wait=true&fields=status,compile_output,message", {
        "language_id": lang, "source_code": "print(1)",
        "additional_files": zip_b64([("../x", "1")])}, timeout=120)
    assert r.status == 201, r
    got = r.json()
    assert got["status"]["id"] == 6 and got["message"] == "additional_files could not be unpacked"
    assert "is outside the workspace" in got["compile_output"], got


def test_paths_do_not_clash(srv):
    # envicutor's, Judge0's and cutor's roots answer each their own shape.
    assert srv.client.get("/execute").status == 405
    assert srv.client.get("/runtimes/1/x").status == 404
    assert srv.client.get("/languages").status == 200
    assert srv.client.get("/api/v1/runtimes").status == 200


def test_the_test_channel_has_unzip_for_runtimes_that_unpack_themselves(srv):
    nix = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.unzip ]; }"
    r = srv.client.post("/runtimes", {"name": "unzip-list", "nix_shell": nix,
                                      "compile_script": "", "run_script": "command -v unzip",
                                      "source_file_name": "a"})
    assert r.status == 200, r
    r = execute(srv, {"runtime_id": r.json()["id"], "source_code": ""})
    assert r.status == 200, r
    out = r.json()["run"]["stdout"]
    assert out.startswith("/nix/store/") and out.endswith("-unzip-6.0/bin/unzip\n"), out
