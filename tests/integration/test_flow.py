"""A user's programs, end to end through real HTTP: SPEC §1, §2 and §3.

Every submission here uses the server's default environment (no cutor.nix), which
shows the host's /usr read-only, so /usr/bin/python3 and gcc are there.
"""

import calendar
import hashlib
import json
import re
import time

from helpers import (
    LIMIT_NAMES,
    LIMITED_STAGES,
    STATUS_ORDER,
    assert_idle_stage,
    assert_submission_shape,
    b64,
    is_subsequence,
    submission,
    unb64,
)

REVERSE_PY = (
    "import sys\n"
    "data = sys.stdin.buffer.read().decode('utf-8')\n"
    "sys.stdout.buffer.write(data[::-1].encode('utf-8'))\n"
)

PROM_SAMPLE_RE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(?P<value>\S+)(\s+-?\d+)?$"
)

ARGV_JSON_PY = "import sys, json\nprint(json.dumps(sys.argv[1:]))\n"


def ok(sub):
    assert sub["status"] == "FINISHED", sub
    assert sub["result"] == "OK", sub
    assert sub["run"]["status"] == "OK", sub["run"]
    assert sub["run"]["code"] == 0, sub["run"]
    return sub


# --- health, info, metrics -----------------------------------------------------------


def test_health_answers(client):
    r = client.get("/api/v1/health")
    assert r.status == 200, r


def test_info_lists_limits_and_bounds(client):
    r = client.get("/api/v1/info")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    info = r.json()
    assert isinstance(info["version"], str) and info["version"], info
    for stage in LIMITED_STAGES:
        assert stage in info["limits"], info["limits"]
        for name in LIMIT_NAMES:
            entry = info["limits"][stage][name]
            assert type(entry["default"]) is int and type(entry["max"]) is int, (stage, name)
            assert 0 < entry["default"] <= entry["max"], (stage, name, entry)
    # Defaults of the server started without flags (SPEC §2).
    assert info["max_body_bytes"] == 16 * 1024 * 1024, info
    assert info["max_files"] == 1000, info
    assert type(info["max_wait_ms"]) is int and info["max_wait_ms"] > 0, info


def test_metrics_is_prometheus_text_with_cutor_metrics(client):
    client.run(submission({"run.sh": "echo hi"}))
    r = client.get("/metrics")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    text = r.body.decode()
    samples = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert any(ln.startswith("cutor_") for ln in samples), text[:2000]
    for ln in samples:
        m = PROM_SAMPLE_RE.match(ln)
        assert m, f"not a Prometheus sample line: {ln!r}"
        float(m.group("value"))  # raises on a malformed value
    assert "# TYPE cutor_" in text, text[:2000]


# --- programs -------------------------------------------------------------------------


def test_python_reverses_non_ascii_stdin(client):
    text = "héllo wörld ✓ 日本\n"
    sub = ok(
        client.run(
            submission({"run.sh": "python3 main.py", "main.py": REVERSE_PY}, stdin=text)
        )
    )
    assert sub["run"]["stdout"] == text[::-1]
    assert sub["run"]["stderr"] == ""


def test_stdin_is_delivered_byte_exact(client):
    text = "line one\r\n\ttabbed  \x01\x7f é\n\nno newline at end"
    sub = ok(client.run(submission({"run.sh": "cat"}, stdin=text)))
    assert sub["run"]["stdout"] == text


def test_large_stdin_is_delivered_whole(client):
    text = ("0123456789abcdef" * 64 + "\n") * 300  # about 300 KiB, far above a pipe buffer
    sub = ok(
        client.run(
            submission(
                {
                    "run.sh": "python3 -c \"import sys,hashlib;"
                    "print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())\""
                },
                stdin=text,
            )
        )
    )
    assert sub["run"]["stdout"].strip() == hashlib.sha256(text.encode()).hexdigest()


def test_empty_stdin_by_default(client):
    sub = ok(client.run(submission({"run.sh": "wc -c"})))
    assert sub["run"]["stdout"].strip() == "0"


def test_inputs_is_an_alias_for_stdin(client):
    sub = ok(client.run(submission({"run.sh": "cat"}, inputs="from inputs ✓")))
    assert sub["run"]["stdout"] == "from inputs ✓"


def test_args_with_spaces_and_quotes_are_delivered_exactly(client):
    args = ["a b", "it's", '"quoted"', "", "$HOME", "*", "back\\slash", "ünï", "-n", "a\nb"]
    sub = ok(
        client.run(
            submission(
                {"run.sh": 'python3 argv.py "$@"', "argv.py": ARGV_JSON_PY}, args=args
            )
        )
    )
    assert json.loads(sub["run"]["stdout"]) == args


def test_env_is_set_for_compile_and_run(client):
    env = {"MY_VAR": "hello world", "OTHER": "x=y ü", "EMPTY": ""}
    sub = ok(
        client.run(
            submission(
                {
                    "compile.sh": 'printf %s "$MY_VAR" > from_compile.txt',
                    "run.sh": "cat from_compile.txt; echo; python3 env.py",
                    "env.py": "import os, json\n"
                    "print(json.dumps({k: os.environ.get(k) for k in "
                    "('MY_VAR', 'OTHER', 'EMPTY')}))\n",
                },
                env=env,
            )
        )
    )
    first, second = sub["run"]["stdout"].split("\n", 1)
    assert first == "hello world"
    assert json.loads(second) == env


def test_base64_and_hex_files_are_byte_exact(client):
    blob = bytes(range(256)) * 3 + b"\x00\xff\n\r"
    hex_blob = bytes(reversed(blob))
    sub = ok(
        client.run(
            submission(
                {
                    "run.sh": "python3 hash.py data.bin data.hex empty.bin",
                    "hash.py": "import sys, hashlib\n"
                    "for p in sys.argv[1:]:\n"
                    "    print(hashlib.sha256(open(p, 'rb').read()).hexdigest())\n",
                    "data.bin": (b64(blob), "base64"),
                    "data.hex": (hex_blob.hex(), "hex"),
                    "empty.bin": ("", "base64"),
                },
            )
        )
    )
    assert sub["run"]["stdout"].split() == [
        hashlib.sha256(blob).hexdigest(),
        hashlib.sha256(hex_blob).hexdigest(),
        hashlib.sha256(b"").hexdigest(),
    ]


def test_od_shows_the_exact_bytes(client):
    sub = ok(
        client.run(
            submission(
                {"run.sh": "od -An -tx1 data.bin", "data.bin": ("AAEC/w==", "base64")}
            )
        )
    )
    assert sub["run"]["stdout"].split() == ["00", "01", "02", "ff"]


def test_utf8_encoding_named_explicitly_keeps_text(client):
    sub = ok(
        client.run(
            {
                "files": [
                    {"name": "run.sh", "content": "cat t.txt", "encoding": "utf8"},
                    {"name": "t.txt", "content": "ünï ✓\n", "encoding": "utf8"},
                ]
            }
        )
    )
    assert sub["run"]["stdout"] == "ünï ✓\n"


def test_nested_paths_are_created(client):
    sub = ok(
        client.run(
            submission(
                {
                    "run.sh": "python3 main.py && cat a/b/c/d/e/f/deep.txt",
                    "main.py": "from src.lib.util import shout\nprint(shout('hi'))\n",
                    "src/lib/util.py": "def shout(s):\n    return s.upper() + '!'\n",
                    "a/b/c/d/e/f/deep.txt": "deep\n",
                }
            )
        )
    )
    assert sub["run"]["stdout"] == "HI!\ndeep\n"


def test_odd_but_valid_names_are_accepted(client):
    long_component = "n" * 255
    sub = ok(
        client.run(
            submission(
                {
                    "run.sh": "cat '..foo' 'foo..' .hidden 'my file.txt' ünï.txt "
                    f"dir/{long_component}",
                    "..foo": "1",
                    "foo..": "2",
                    ".hidden": "3",
                    "my file.txt": "4",
                    "ünï.txt": "5",
                    f"dir/{long_component}": "6",
                }
            )
        )
    )
    assert sub["run"]["stdout"] == "123456"


def test_c_program_compiled_then_run(client):
    sub = ok(
        client.run(
            submission(
                {
                    "compile.sh": "gcc -O1 -o hello hello.c",
                    "run.sh": "./hello",
                    "hello.c": '#include <stdio.h>\nint main(void){puts("hello");return 0;}\n',
                }
            )
        )
    )
    assert sub["compile"]["status"] == "OK" and sub["compile"]["code"] == 0, sub["compile"]
    assert sub["run"]["stdout"] == "hello\n"


def test_compile_error_skips_run(client):
    sub = client.run(
        submission(
            {
                "compile.sh": "gcc -o bad bad.c",
                "run.sh": "./bad",
                "bad.c": "int main(void) { this is not C; }\n",
            }
        )
    )
    assert sub["status"] == "FINISHED" and sub["result"] == "COMPILE_ERROR", sub
    comp = sub["compile"]
    assert comp["status"] == "NONZERO_EXIT", comp
    assert type(comp["code"]) is int and comp["code"] != 0, comp
    assert "bad.c" in comp["stderr"] and "error" in comp["stderr"], comp
    assert "error" in comp["output"], comp
    assert_idle_stage(sub["run"], "SKIPPED", "run")


def test_nonzero_exit_is_runtime_error(client):
    sub = client.run(submission({"run.sh": "echo out; echo err >&2; exit 3"}))
    assert sub["result"] == "RUNTIME_ERROR", sub
    run = sub["run"]
    assert run["status"] == "NONZERO_EXIT" and run["code"] == 3 and run["signal"] is None, run
    assert run["stdout"] == "out\n" and run["stderr"] == "err\n", run


def test_stage_times_are_written_in_decimal_notation(client):
    """`time` reads as the SPEC shows it (0.004), never in exponent form (4E-3, 0E0), and
    an exponent inside a program's output is left as it was."""
    sid = client.submit(submission({"run.sh": "echo 2.5E-3 1E0"}))["id"]
    client.wait_finished(sid)
    r = client.get(f"/api/v1/submissions/{sid}")
    assert r.status == 200, r
    text = r.body.decode()
    times = re.findall(r'"time":([^,}]*)', text)
    assert len(times) == 4, text
    for t in times:
        assert re.fullmatch(r"\d+\.\d+", t), (t, text)
    assert '"time":0.0,' in text, text  # the skipped stages
    assert '"stdout":"2.5E-3 1E0\\n"' in text, text


def test_output_interleaves_stdout_and_stderr_in_write_order(client):
    script = "echo 1; sleep 0.1; echo 2 >&2; sleep 0.1; echo 3; sleep 0.1; echo 4 >&2"
    sub = ok(client.run(submission({"run.sh": script})))
    run = sub["run"]
    assert run["stdout"] == "1\n3\n" and run["stderr"] == "2\n4\n", run
    assert run["output"] == "1\n2\n3\n4\n", run


def test_shell_killing_itself_with_sigsegv(client):
    sub = client.run(submission({"run.sh": "echo before; kill -SEGV $$; echo after"}))
    assert sub["result"] == "RUNTIME_ERROR", sub
    run = sub["run"]
    assert run["status"] == "SIGNALED", run
    assert run["signal"] == "SIGSEGV" and run["code"] is None, run
    assert run["stdout"] == "before\n", run


def test_c_abort_is_sigabrt(client):
    sub = client.run(
        submission(
            {
                "compile.sh": "gcc -o boom boom.c",
                "run.sh": "exec ./boom",
                "boom.c": "#include <stdlib.h>\n#include <stdio.h>\n"
                'int main(void){printf("going\\n");fflush(stdout);abort();}\n',
            }
        )
    )
    assert sub["result"] == "RUNTIME_ERROR", sub
    run = sub["run"]
    assert run["status"] == "SIGNALED" and run["signal"] == "SIGABRT", run
    assert run["code"] is None, run
    assert run["stdout"] == "going\n", run


def test_wall_time_limit_keeps_output_before_the_kill(client):
    t0 = time.monotonic()
    sub = client.run(
        submission(
            {"run.sh": "echo before; echo err-before >&2; sleep 5; echo after"},
            limits={"run": {"wall_time_ms": 300}},
        )
    )
    elapsed = time.monotonic() - t0
    assert sub["result"] == "TIME_LIMIT_EXCEEDED", sub
    run = sub["run"]
    assert run["status"] == "WALL_TIME_LIMIT_EXCEEDED", run
    assert run["stdout"] == "before\n" and run["stderr"] == "err-before\n", run
    assert run["code"] is None, run
    assert 300 <= run["wall_time_ms"] < 3000, run
    assert elapsed < 4.5, f"the run was not stopped at its wall limit ({elapsed:.1f}s)"


def test_wall_time_limit_kills_background_children_too(client):
    # The stage ends when the script's process exits; a background child holding
    # stdout open must not keep the stage (or the submission) alive.
    t0 = time.monotonic()
    sub = ok(client.run(submission({"run.sh": "(sleep 20; echo late) & echo done"})))
    assert time.monotonic() - t0 < 10, "a background child kept the stage running"
    assert sub["run"]["stdout"] == "done\n", sub["run"]


def test_cpu_time_limit(client):
    sub = client.run(
        submission(
            {"run.sh": "while :; do :; done"},
            limits={"run": {"cpu_time_ms": 300, "wall_time_ms": 20000}},
        )
    )
    assert sub["result"] == "TIME_LIMIT_EXCEEDED", sub
    run = sub["run"]
    assert run["status"] == "TIME_LIMIT_EXCEEDED", run
    assert run["cpu_time_ms"] >= 250, run
    assert run["wall_time_ms"] < 10000, run


def test_cpu_time_limit_counts_the_whole_process_tree(client):
    # Four busy children each stay under 300 ms for a while; together they pass it.
    sub = client.run(
        submission(
            {
                "run.sh": "for i in 1 2 3 4; do (while :; do :; done) & done; wait",
            },
            limits={"run": {"cpu_time_ms": 300, "wall_time_ms": 20000}},
        )
    )
    assert sub["result"] == "TIME_LIMIT_EXCEEDED", sub
    assert sub["run"]["status"] == "TIME_LIMIT_EXCEEDED", sub["run"]


def test_output_limit_truncates_at_exactly_the_cap(client):
    sub = client.run(submission({"run.sh": "yes"}, limits={"run": {"output_bytes": 1000}}))
    assert sub["result"] == "OUTPUT_LIMIT_EXCEEDED", sub
    run = sub["run"]
    assert run["status"] == "OUTPUT_LIMIT_EXCEEDED", run
    assert run["stdout"] == "y\n" * 500, (len(run["stdout"]), run["stdout"][:50])
    assert run["truncated"] is True, run
    assert len(run["output"].encode()) <= 2000, len(run["output"])


def test_output_limit_applies_to_stderr_too(client):
    sub = client.run(
        submission({"run.sh": "yes err >&2"}, limits={"run": {"output_bytes": 1000}})
    )
    assert sub["result"] == "OUTPUT_LIMIT_EXCEEDED", sub
    assert len(sub["run"]["stderr"].encode()) == 1000, len(sub["run"]["stderr"])
    assert sub["run"]["truncated"] is True


def test_memory_limit(client):
    sub = client.run(
        submission(
            {"run.sh": "python3 -c \"b = b'x' * (256 * 1024 * 1024); print(len(b))\""},
            limits={"run": {"memory_bytes": 64 * 1024 * 1024}},
        )
    )
    assert sub["result"] == "MEMORY_LIMIT_EXCEEDED", sub
    assert sub["run"]["status"] == "MEMORY_LIMIT_EXCEEDED", sub["run"]


def test_non_utf8_output_default_and_base64(client):
    script = "printf 'ok\\377\\376\\n'; printf '\\200' >&2"
    sub = client.run(submission({"run.sh": script}))
    assert sub["result"] == "OK", sub
    run = sub["run"]
    assert run["stdout"] == b"ok\xff\xfe\n".decode("utf-8", "replace"), run
    assert run["stdout"] == "ok\ufffd\ufffd\n", run
    assert run["stderr"] == "\ufffd", run

    exact = client.get_submission(sub["id"], "?encoding=base64")
    assert exact["id"] == sub["id"] and exact["result"] == "OK"
    run = exact["run"]
    assert unb64(run["stdout"]) == b"ok\xff\xfe\n", run
    assert unb64(run["stderr"]) == b"\x80", run
    assert sorted(unb64(run["output"])) == sorted(b"ok\xff\xfe\n\x80"), run
    for st in ("environment", "build", "compile"):
        for k in ("stdout", "stderr", "output"):
            unb64(exact[st][k])  # every stage's output is base64 too

    # The list endpoint honours it as well.
    r = client.get("/api/v1/submissions?limit=1000&encoding=base64")
    assert r.status == 200, r
    mine = [s for s in r.json()["submissions"] if s["id"] == sub["id"]]
    assert len(mine) == 1 and unb64(mine[0]["run"]["stdout"]) == b"ok\xff\xfe\n", mine


def test_finished_submission_shape(client):
    t_before = time.time()
    sub = ok(client.run(submission({"run.sh": "sleep 0.2; echo olleh"}, stdin="hello")))
    assert_submission_shape(sub)
    assert set(sub) >= {"id", "status", "result", "created_at", "finished_at"}
    assert sub["build"]["status"] == "OK", sub["build"]
    run = sub["run"]
    assert run["stdout"] == "olleh\n" and run["output"] == "olleh\n" and run["stderr"] == ""
    assert run["code"] == 0 and run["signal"] is None and run["truncated"] is False
    assert run["wall_time_ms"] >= 200, run
    assert abs(run["time"] - run["wall_time_ms"] / 1000.0) < 0.05, run
    assert run["memory_bytes"] > 0, run
    # created_at is a real, recent UTC time.
    created = calendar.timegm(time.strptime(sub["created_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(created - t_before) < 120, (sub["created_at"], t_before)


def test_no_compile_and_no_nix_are_skipped_and_never_shown(client):
    body = submission({"run.sh": "sleep 1; echo done"})
    sid = client.submit(body)["id"]
    seen = []
    deadline = time.monotonic() + 60
    sub = None
    while time.monotonic() < deadline:
        sub = client.get_submission(sid)
        if not seen or seen[-1] != sub["status"]:
            seen.append(sub["status"])
        if sub["status"] == "FINISHED":
            break
        time.sleep(0.02)
    assert seen[-1] == "FINISHED", seen
    assert "COMPILING" not in seen, seen
    assert "SETTING_UP_ENVIRONMENT" not in seen, seen
    assert "RUNNING" in seen, seen  # a 1 s run is seen by a 20 ms poll
    assert is_subsequence(seen, STATUS_ORDER), seen
    assert sub["result"] == "OK", sub
    assert_idle_stage(sub["compile"], "SKIPPED", "compile")
    assert_idle_stage(sub["environment"], "SKIPPED", "environment")


def test_statuses_move_forward_in_spec_order(client):
    body = submission({"compile.sh": "sleep 1", "run.sh": "sleep 1; echo ran"})
    sid = client.submit(body)["id"]
    seen = []
    deadline = time.monotonic() + 60
    sub = None
    while time.monotonic() < deadline:
        sub = client.get_submission(sid)
        if not seen or seen[-1] != sub["status"]:
            seen.append(sub["status"])
        if sub["status"] == "FINISHED":
            break
        if sub["status"] == "COMPILING":
            # The compile stage may already show its end just before the status moves
            # on; the run stage cannot have started.
            assert sub["compile"]["status"] != "SKIPPED", sub["compile"]
            assert sub["run"]["status"] == "PENDING", sub["run"]
        time.sleep(0.02)
    assert is_subsequence(seen, STATUS_ORDER), seen
    assert seen[-1] == "FINISHED", seen
    assert "COMPILING" in seen and "RUNNING" in seen, seen
    assert sub["result"] == "OK" and sub["run"]["stdout"] == "ran\n", sub
    assert sub["compile"]["status"] == "OK", sub["compile"]


def test_workspace_is_shared_between_compile_and_run_but_tmp_is_fresh(client):
    sub = ok(
        client.run(
            submission(
                {
                    "compile.sh": "echo artefact > built.txt; echo secret > /tmp/compile-tmp",
                    "run.sh": "cat built.txt; test -e /tmp/compile-tmp && echo tmp-kept || "
                    "echo tmp-fresh",
                }
            )
        )
    )
    assert sub["run"]["stdout"] == "artefact\ntmp-fresh\n", sub["run"]


def test_post_location_header_points_at_the_submission(client):
    r = client.post("/api/v1/submissions", submission({"run.sh": "true"}))
    assert r.status == 202, r
    body = r.json()
    assert body["status"] == "QUEUED" and set(body) >= {"id", "status"}, body
    loc = r.headers.get("location", "")
    assert loc.endswith(f"/api/v1/submissions/{body['id']}"), r.headers
    client.wait_finished(body["id"])


def test_content_type_with_charset_is_accepted(client):
    r = client.post(
        "/api/v1/submissions",
        json.dumps(submission({"run.sh": "true"})).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status == 202, r
    client.wait_finished(r.json()["id"])


def test_limits_at_exactly_the_maximum_are_accepted(client):
    info = client.info()
    limits = {
        stage: {name: info["limits"][stage][name]["max"] for name in LIMIT_NAMES}
        for stage in ("compile", "run")
    }
    sub = ok(client.run(submission({"run.sh": "echo fine"}, limits=limits)))
    assert sub["run"]["stdout"] == "fine\n"
