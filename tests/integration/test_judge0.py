"""Judge0 CE's API (issue 15) through the real server, over the test channel's runtimes.

The examples are Judge0's documented requests and responses (judge0/judge0
docs/api/submissions/*.md and the 1.13.1 behaviour noted in docs/compat.md), replayed field
by field; Judge0's language ids (4, 70...) are replaced by the id cutor gives the same
language. Every Judge0 submission is a stored cutor submission: refusals are checked to
store nothing through the v1 listing.
"""

import base64
import json
import os
import re
import time

import pytest

from helpers import Server

SOURCE_DIR = os.environ.get("CUTOR_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NIXPKGS = os.path.join(SOURCE_DIR, "tests", "nixpkgs")
RUNTIMES = os.path.join(SOURCE_DIR, "tests", "runtimes")
SERVER_ARGS = ["--workers", "2", "--nix-path", f"nixpkgs={NIXPKGS}", "--substituters", "",
               "--runtimes", RUNTIMES]
DEFAULT_FIELDS = {"stdout", "time", "memory", "stderr", "token", "compile_output", "message",
                  "status"}
ALL_FIELDS = DEFAULT_FIELDS | {
    "source_code", "language_id", "stdin", "expected_output", "status_id", "created_at",
    "finished_at", "number_of_runs", "cpu_time_limit", "cpu_extra_time", "wall_time_limit",
    "memory_limit", "stack_limit", "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit",
    "max_file_size", "exit_code", "exit_signal", "wall_time", "compiler_options",
    "command_line_arguments", "redirect_stderr_to_stdout", "callback_url", "additional_files",
    "enable_network", "language"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SECONDS = re.compile(r"^\d+\.\d+$")

# Judge0's documented C program (create_a_submission.md).
HELLO_C = ('#include <stdio.h>\n\nint main(void) {\n  char name[10];\n  scanf("%s", name);\n'
           '  printf("hello, %s\\n", name);\n  return 0;\n}')
HELLO_C_BASE64 = ("I2luY2x1ZGUgPHN0ZGlvLmg+CgppbnQgbWFpbih2b2lkKSB7CiAgY2hhciBuYW1lWzEwXTsKICBzY2Fu"
                  "ZigiJXMiLCBuYW1lKTsKICBwcmludGYoImhlbGxvLCAlc1xuIiwgbmFtZSk7CiAgcmV0dXJuIDA7Cn0=")


def judge0_id(name, version):
    """docs/compat.md's rule: FNV-1a (32 bits) of "name@version", low 31 bits, 0 as 1."""
    h = 2166136261
    for byte in f"{name}@{version}".encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) or 1


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("judge0")
    s = Server(base / "data", base, extra_args=SERVER_ARGS)
    s.start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def lang(srv):
    r = srv.client.get("/languages")
    assert r.status == 200, r
    return {item["name"].split(" ")[0]: item["id"] for item in r.json()}


def post(srv, body, query=""):
    return srv.client.post("/submissions" + query, body, timeout=120)


def run(srv, body, query="?wait=true"):
    r = post(srv, body, query)
    assert r.status == 201, r
    return r.json()


def wait_done(srv, tokens, query="", timeout=120):
    """Polls GET /submissions/batch until every status id is past 2 (Judge0's rule), then
    answers the batch read with `query`."""
    deadline = time.monotonic() + timeout
    batch = f"/submissions/batch?tokens={','.join(tokens)}"
    while True:
        r = srv.client.get(batch + "&fields=status_id")
        assert r.status == 200, r
        subs = r.json()["submissions"]
        if all(s is not None and s["status_id"] > 2 for s in subs):
            break
        assert time.monotonic() < deadline, subs
        time.sleep(0.05)
    r = srv.client.get(batch + ("&" + query if query else ""))
    assert r.status == 200, r
    return r.json()["submissions"]


def test_documented_create_then_get_default_fields(srv, lang):
    before = srv.client.stored_count()
    r = post(srv, {"source_code": HELLO_C, "language_id": lang["c"], "stdin": "world"})
    assert r.status == 201, r
    body = r.json()
    assert set(body) == {"token"} and UUID.match(body["token"])
    got = wait_done(srv, [body["token"]])[0]
    assert set(got) == DEFAULT_FIELDS
    assert got["token"] == body["token"]
    assert got["stdout"] == "hello, world\n"
    assert got["status"] == {"id": 3, "description": "Accepted"}
    assert SECONDS.match(got["time"]) and isinstance(got["memory"], int) and got["memory"] > 0
    assert got["stderr"] is None and got["compile_output"] is None and got["message"] is None
    # The token is the cutor submission id, stored with the runtime's files.
    assert srv.client.stored_count() == before + 1
    sub = srv.client.get_submission(body["token"])
    assert sub["result"] == "OK" and sub["run"]["stdout"] == "hello, world\n"


def test_documented_wait_example_with_a_string_language_id(srv, lang):
    got = run(srv, {"source_code": HELLO_C, "language_id": str(lang["c"]), "stdin": "Judge0",
                    "expected_output": "hello, Judge0"})
    assert set(got) == DEFAULT_FIELDS
    assert got["stdout"] == "hello, Judge0\n"
    assert got["status"] == {"id": 3, "description": "Accepted"}
    assert (got["stderr"], got["compile_output"], got["message"]) == (None, None, None)


def test_documented_base64_example(srv, lang):
    # The docs' base64 request names stdin "input", an attribute Judge0 does not have.
    before = srv.client.stored_count()
    r = post(srv, {"source_code": HELLO_C_BASE64, "language_id": lang["c"], "input": "SnVkZ2Uw"},
             "?base64_encoded=true")
    assert r.status == 422 and list(r.json()) == ["input"], r
    assert srv.client.stored_count() == before
    got = run(srv, {"source_code": HELLO_C_BASE64, "language_id": lang["c"], "stdin": "SnVkZ2Uw"},
              "?base64_encoded=true&wait=true")
    # get_a_submission.md: Ruby's Base64.encode64, with its trailing line break.
    assert got["stdout"] == "aGVsbG8sIEp1ZGdlMAo=\n"
    assert got["status"] == {"id": 3, "description": "Accepted"}
    # The same submission read back plain, and with every attribute base64.
    plain = srv.client.get(f"/submissions/{got['token']}?fields=stdout,source_code,stdin").json()
    assert plain == {"source_code": HELLO_C, "stdin": "Judge0", "stdout": "hello, Judge0\n"}


def test_base64_round_trip_of_bytes_that_are_not_utf8(srv, lang):
    data = bytes(range(256)) * 2
    src = "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"
    got = run(srv, {"source_code": base64.b64encode(src.encode()).decode(),
                    "language_id": lang["python"],
                    "stdin": base64.b64encode(data).decode()},
              "?base64_encoded=true&wait=true&fields=stdout,status_id,token")
    assert got["status_id"] == 3
    assert all(len(line) <= 60 for line in got["stdout"].split("\n"))
    assert base64.b64decode(got["stdout"]) == data[::-1]
    r = srv.client.get(f"/submissions/{got['token']}")
    assert r.status == 400 and r.json() == {"error": (
        "some attributes for this submission cannot be converted to UTF-8, use "
        "base64_encoded=true query parameter")}
    r = srv.client.get(f"/submissions/{got['token']}?base64_encoded=true&fields=stdin")
    assert base64.b64decode(r.json()["stdin"]) == data


def test_each_status_on_purpose(srv, lang):
    py, c = lang["python"], lang["c"]
    cases = [
        ({"language_id": py, "source_code": "print(input())", "stdin": "7",
          "expected_output": "7"}, 3, None),
        ({"language_id": py, "source_code": "print(6)", "expected_output": "7"}, 4, None),
        ({"language_id": py, "source_code": "while True: pass", "cpu_time_limit": 0.3}, 5,
         "Time limit exceeded"),
        ({"language_id": py, "source_code": "import time\ntime.sleep(5)",
          "wall_time_limit": 0.5}, 5, "Time limit exceeded (wall clock)"),
        ({"language_id": c, "source_code": "int main(void) { return x; }"}, 6, None),
        ({"language_id": py, "source_code": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)"},
         7, "Caught fatal signal 11"),
        ({"language_id": py, "source_code": "import os, signal\nos.kill(os.getpid(), signal.SIGFPE)"},
         9, "Caught fatal signal 8"),
        ({"language_id": py, "source_code": "import os\nos.abort()"}, 10, "Caught fatal signal 6"),
        ({"language_id": py, "source_code": "import sys\nsys.exit(3)"}, 11,
         "Exited with error status 3"),
        ({"language_id": py, "source_code": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"},
         12, "Caught fatal signal 9"),
        ({"language_id": py, "source_code": "x = bytearray(400 * 1024 * 1024)",
          "memory_limit": 65536}, 12, "Memory limit exceeded"),
        ({"language_id": py, "source_code": "print('x' * 3_000_000)"}, 8, "Output limit exceeded"),
    ]
    r = srv.client.post("/submissions/batch", {"submissions": [b for b, _, _ in cases]})
    assert r.status == 201, r
    tokens = [item["token"] for item in r.json()]
    got = wait_done(srv, tokens, "fields=status,message,compile_output,stdout,exit_code,"
                                 "exit_signal,time")
    for (body, status, message), g in zip(cases, got):
        assert g["status"]["id"] == status, (body, g)
        assert g["message"] == message, (body, g)
    names = ["Accepted", "Wrong Answer", "Time Limit Exceeded", "Time Limit Exceeded",
             "Compilation Error", "Runtime Error (SIGSEGV)", "Runtime Error (SIGFPE)",
             "Runtime Error (SIGABRT)", "Runtime Error (NZEC)", "Runtime Error (Other)",
             "Runtime Error (Other)", "Runtime Error (SIGXFSZ)"]
    assert [g["status"]["description"] for g in got] == names
    ce = got[4]
    assert "error" in ce["compile_output"] and ce["stdout"] is None and ce["time"] is None
    assert (got[8]["exit_code"], got[8]["exit_signal"]) == (3, None)
    assert (got[5]["exit_code"], got[5]["exit_signal"]) == (0, 11)  # Judge0: 0 when signalled


def test_a_cancel_through_v1_is_internal_error(srv, lang):
    r = post(srv, {"language_id": lang["bash"], "source_code": "sleep 30"})
    token = r.json()["token"]
    srv.client.poll_until(token, lambda s: s["status"] == "RUNNING")
    assert srv.client.get(f"/submissions/{token}?fields=status_id").json() == {"status_id": 2}
    assert srv.client.delete(f"/api/v1/submissions/{token}").status == 200
    got = srv.client.get(f"/submissions/{token}?fields=status,message,finished_at").json()
    assert got["status"] == {"id": 13, "description": "Internal Error"}
    assert got["message"] == f"cancelled through DELETE /api/v1/submissions/{token}"
    assert got["finished_at"] is not None


# stdout, expected_output, status: Judge0 1.13.1's comparison (isolate_job.rb's strip).
COMPARISONS = [
    ("3\n", "3", 3), ("3", "3\n", 3), ("3 \n", "3", 3), ("a \nb\n", "a\nb", 3),
    ("3\r\n", "3", 3), (" 3\n", "3", 4), ("a\n\nb\n", "a\nb", 4), ("3\t\n\n\n", "3  ", 3),
    ("", "", 4),  # empty stdout is null, and strip("") == nil is false
]


def test_expected_output_is_compared_as_judge0_does(srv, lang):
    bodies = [{"language_id": lang["python"], "expected_output": expected,
               "source_code": f"import sys\nsys.stdout.write({out!r})"}
              for out, expected, _ in COMPARISONS]
    r = srv.client.post("/submissions/batch", {"submissions": bodies})
    assert r.status == 201, r
    got = wait_done(srv, [t["token"] for t in r.json()], "fields=status_id")
    assert [g["status_id"] for g in got] == [s for _, _, s in COMPARISONS]


def test_fields_filter(srv, lang):
    got = run(srv, {"language_id": lang["python"], "source_code": "print(42)",
                    "expected_output": "41"},
              "?wait=true&fields=token,status_id,stdout,time,memory,exit_code")
    assert set(got) == {"token", "status_id", "stdout", "time", "memory", "exit_code"}
    assert (got["stdout"], got["status_id"], got["exit_code"]) == ("42\n", 4, 0)
    full = srv.client.get(f"/submissions/{got['token']}?fields=*").json()
    assert set(full) == ALL_FIELDS
    assert full["language"] == {"id": lang["python"], "name": "python (3.11.2)"}
    assert full["language_id"] == lang["python"] and full["source_code"] == "print(42)"
    assert full["expected_output"] == "41" and full["stdin"] is None
    assert (full["cpu_time_limit"], full["cpu_extra_time"], full["wall_time_limit"]) == (
        "5.0", "0.0", "10.0")
    assert (full["memory_limit"], full["max_file_size"], full["number_of_runs"]) == (
        524288, 65536, 1)
    assert SECONDS.match(full["wall_time"]) and full["finished_at"] >= full["created_at"]
    r = srv.client.get(f"/submissions/{got['token']}?fields=stdout,bogus_field")
    assert r.status == 400 and r.json() == {"error": "invalid fields: [bogus_field]"}


def test_limits_arguments_and_redirect(srv, lang):
    got = run(srv, {"language_id": lang["python"], "command_line_arguments": "alpha  beta",
                    "redirect_stderr_to_stdout": True,
                    "source_code": "import sys\nprint(sys.argv[1:], flush=True)\nprint('err', file=sys.stderr)"})
    assert got["stdout"] == "['alpha', 'beta']\nerr\n" and got["stderr"] is None
    # Within cpu_extra_time the program finishes, past cpu_time_limit it is still a TLE.
    got = run(srv, {"language_id": lang["python"], "cpu_time_limit": 0.2, "cpu_extra_time": 3,
                    "source_code": "import time\nt = time.process_time()\n"
                                   "while time.process_time() - t < 0.6: pass\nprint('done')"})
    assert got["status"]["id"] == 5 and got["stdout"] == "done\n", got
    assert float(got["time"]) >= 0.6


@pytest.mark.parametrize("extra,field,message", [
    ({"additional_files": "@@"}, "additional_files",
     "is not valid base64 (a zip, always base64)"),
    ({"callback_url": "http://127.0.0.1:9/cb"}, "callback_url",
     "is not supported yet: cutor has no webhook delivery; poll GET /submissions/{token}"),
    ({"enable_network": True}, "enable_network", "is not supported: the sandbox has no network"),
    ({"number_of_runs": 3}, "number_of_runs",
     "is not supported: cutor runs a program once; only 1 is accepted"),
    ({"stack_limit": 64000}, "stack_limit",
     "is not supported: cutor has no stack limit of its own (the stack counts toward "
     "memory_limit); leave it out"),
    ({"compiler_options": "-O3"}, "compiler_options",
     "is not supported: a runtime's compile.sh takes no options"),
    ({"enable_per_process_and_thread_time_limit": True},
     "enable_per_process_and_thread_time_limit",
     "is not supported: cutor's limits hold for all processes together"),
    ({"enable_per_process_and_thread_memory_limit": True},
     "enable_per_process_and_thread_memory_limit",
     "is not supported: cutor's limits hold for all processes together"),
    ({"redirect_stderr_to_stdout": "yes"}, "redirect_stderr_to_stdout", "must be true or false"),
    ({"cpu_time_limit": 0}, "cpu_time_limit", "must be greater than 0"),
    ({"cpu_time_limit": 301}, "cpu_time_limit", "must be less than or equal to 300.0"),
    ({"wall_time_limit": "x"}, "wall_time_limit", "is not a number"),
    ({"memory_limit": 8388609}, "memory_limit", "must be less than or equal to 8388608"),
    ({"max_processes_and_or_threads": 1.5}, "max_processes_and_or_threads",
     "must be an integer"),
    ({"max_file_size": 1048577}, "max_file_size", "must be less than or equal to 1048576"),
    ({"cpu_time_limit": 200, "cpu_extra_time": 101}, "cpu_extra_time",
     "must be less than or equal to 100.0 (with cpu_time_limit, at most the server's maximum)"),
    ({"command_line_arguments": "a;rm -rf /"}, "command_line_arguments",
     "must be words separated by spaces, without any of $&;<>|`'\"\\*?[]{}()~#!"),
    ({"command_line_arguments": "a" * 129}, "command_line_arguments",
     "is too long (maximum is 128 characters)"),
    ({"stdout": "x"}, "stdout", "is not an attribute a Judge0 client can set (docs/compat.md)"),
    ({"source_code": ""}, "source_code", "can't be blank"),
    ({"source_code": 5}, "source_code", "must be a string"),
])
def test_each_bad_field_is_422_naming_it_and_stores_nothing(srv, lang, extra, field, message):
    before = srv.client.stored_count()
    body = {"language_id": lang["bash"], "source_code": "echo hi", **extra}
    r = post(srv, body)
    assert r.status == 422, r
    assert r.json() == {field: [message]}
    assert srv.client.stored_count() == before


def test_documented_422_examples_and_all_errors_at_once(srv, lang):
    before = srv.client.stored_count()
    r = post(srv, {"source_code": HELLO_C})
    assert r.status == 422 and r.json() == {"language_id": ["can't be blank"]}
    r = post(srv, {"source_code": HELLO_C, "language_id": 150000, "stdin": "world",
                   "expected_output": "hello, world"})
    assert r.status == 422
    assert r.json() == {"language_id": ["language with id 150000 doesn't exist"]}
    # The docs' wall_time_limit example: cutor's maximum is 600 s, and it has no stack_limit.
    r = post(srv, {"source_code": HELLO_C, "language_id": lang["c"], "number_of_runs": 1,
                   "stdin": "Judge0", "expected_output": "hello, Judge0", "cpu_time_limit": 1,
                   "cpu_extra_time": 0.5, "wall_time_limit": 100000, "memory_limit": 128000,
                   "stack_limit": 128000, "enable_per_process_and_thread_time_limit": False,
                   "enable_per_process_and_thread_memory_limit": False, "max_file_size": 1024})
    assert r.status == 422
    assert set(r.json()) == {"wall_time_limit", "stack_limit"}
    assert r.json()["wall_time_limit"] == ["must be less than or equal to 600.0"]
    r = post(srv, {"source_code": "SGk=!", "language_id": lang["bash"], "stdin": 3},
             "?base64_encoded=true")
    assert r.json() == {"source_code": ["is not valid base64 (base64_encoded=true)"],
                        "stdin": ["must be a string"]}
    assert srv.client.stored_count() == before


def test_batch_limits_and_unknown_tokens(srv, lang):
    before = srv.client.stored_count()
    one = {"language_id": lang["bash"], "source_code": "echo hi"}
    r = srv.client.post("/submissions/batch", {"submissions": [one] * 21})
    assert r.status == 400 and r.json() == {
        "error": "number of submissions in a batch should be less than or equal to 20"}
    r = srv.client.post("/submissions/batch?wait=true", {"submissions": [one]})
    assert r.status == 400
    assert srv.client.stored_count() == before
    # A bad item gets its errors in place; the others are queued.
    r = srv.client.post("/submissions/batch", {"submissions": [one, {"source_code": "x"}]})
    assert r.status == 201
    items = r.json()
    assert UUID.match(items[0]["token"]) and items[1] == {"language_id": ["can't be blank"]}
    assert srv.client.stored_count() == before + 1
    unknown = "00000000-0000-4000-8000-000000000000"
    got = wait_done(srv, [items[0]["token"]], "fields=stdout,status_id")
    r = srv.client.get(f"/submissions/batch?tokens={items[0]['token']},{unknown}"
                       "&fields=stdout,status_id")
    assert r.json() == {"submissions": [got[0], None]}
    assert got[0] == {"stdout": "hi\n", "status_id": 3}
    assert srv.client.get(f"/submissions/{unknown}").status == 404
    # A v1 submission is not a Judge0 one.
    v1 = srv.client.submit({"files": [{"name": "run.sh", "content": "echo"}]})["id"]
    assert srv.client.get(f"/submissions/{v1}").status == 404


def test_statuses_about_config_and_language_detail(srv, lang):
    statuses = srv.client.get("/statuses").json()
    assert statuses == [{"id": i + 1, "description": d} for i, d in enumerate([
        "In Queue", "Processing", "Accepted", "Wrong Answer", "Time Limit Exceeded",
        "Compilation Error", "Runtime Error (SIGSEGV)", "Runtime Error (SIGXFSZ)",
        "Runtime Error (SIGFPE)", "Runtime Error (SIGABRT)", "Runtime Error (NZEC)",
        "Runtime Error (Other)", "Internal Error", "Exec Format Error"])]
    about = srv.client.get("/about").json()
    assert set(about) == {"version", "homepage", "source_code", "maintainer"}
    assert about["version"] == srv.client.info()["version"]
    config = srv.client.get("/config_info").json()
    assert config["max_cpu_time_limit"] == "300.0" and config["memory_limit"] == 524288
    assert config["enable_callbacks"] is False and config["max_submission_batch_size"] == 20
    assert config["enable_additional_files"] is True and config["enable_wait_result"] is True
    detail = srv.client.get(f"/languages/{lang['c']}").json()
    assert detail == {"id": lang["c"], "name": "c (12.2.0)", "is_archived": False,
                      "source_file": "main.c", "compile_cmd": "gcc -O2 -o main main.c -lm\n",
                      "run_cmd": 'exec ./main "$@"\n'}
    r = srv.client.get("/languages/1")
    assert r.status == 404 and r.json() == {"error": "language with id 1 doesn't exist"}


def test_language_ids_follow_the_documented_rule_and_survive_a_restart(make_server):
    srv = make_server(SERVER_ARGS)
    first = srv.client.get("/languages").json()
    versions = {"bash": "5.2.15", "c": "12.2.0", "c++": "12.2.0", "javascript": "20.20.2",
                "multi-file": "1.0.0", "python": "3.11.2"}
    for item in first:
        name, version = re.match(r"^(\S+) \((\S+)\)$", item["name"]).groups()
        assert item["id"] == judge0_id(name, version), item
    assert {re.match(r"^(\S+)", i["name"]).group(1) for i in first} == set(versions)
    srv.stop()
    srv.start()
    assert srv.client.get("/languages").json() == first


def test_x_auth_token(make_server, tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text("judge0-secret\n")
    srv = make_server(SERVER_ARGS + ["--auth-token-file", str(token_file)], token="judge0-secret")
    c = srv.client
    assert c.get("/statuses", token="").status == 401
    assert c.get("/statuses", token="", headers={"X-Auth-Token": "wrong"}).status == 401
    r = c.get("/statuses", token="", headers={"X-Auth-Token": "judge0-secret"})
    assert r.status == 200 and len(r.json()) == 14
    # Judge0's header is Judge0's only: /api/v1 keeps its bearer token.
    assert c.get("/api/v1/info", token="", headers={"X-Auth-Token": "judge0-secret"}).status == 401
    before = c.stored_count()
    r = c.post("/submissions", {"language_id": 1, "source_code": "x"}, token="",
               headers={"X-Auth-Token": "wrong"})
    assert r.status == 401 and c.stored_count() == before
