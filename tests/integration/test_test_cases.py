"""Test cases (issue 14) through the real binary: compile once, run many, judge verdicts.

The C program is compiled with the host's gcc (the default environment shows /usr).
"""

import re

import pytest

from helpers import b64, submission

ADD_C = r"""
#include <stdio.h>
int main(void) { long a, b; if (scanf("%ld %ld", &a, &b) != 2) return 3; printf("%ld\n", a + b); return 0; }
"""

# Each verdict on purpose: the program reads a mode word, then misbehaves in that way.
MODES_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
  char mode[32] = "";
  if (scanf("%31s", mode) != 1) return 9;
  if (!strcmp(mode, "ok")) { puts("fine"); return 0; }
  if (!strcmp(mode, "wrong")) { puts("nope"); return 0; }
  if (!strcmp(mode, "spin")) { for (volatile unsigned long i = 0;; ++i) {} }
  if (!strcmp(mode, "eat")) { for (;;) { char *p = malloc(1 << 20); if (!p) return 7; memset(p, 1, 1 << 20); } }
  if (!strcmp(mode, "flood")) { for (;;) fputs("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", stdout); }
  if (!strcmp(mode, "crash")) { return 42; }
  return 8;
}
"""

COMPILE_SH = "gcc -O1 -o prog main.c\n"
RUN_SH = "./prog\n"


def c_submission(source, tests, **extra):
    return submission(
        {"compile.sh": COMPILE_SH, "run.sh": RUN_SH, "main.c": source}, tests=tests, **extra
    )


def stage_counts(client):
    r = client.get("/metrics")
    assert r.status == 200, r
    counts = {}
    for line in r.body.decode().splitlines():
        m = re.match(r'cutor_stage_duration_seconds_count\{stage="(\w+)"\} (\d+)', line)
        if m:
            counts[m.group(1)] = int(m.group(2))
        m = re.match(r"cutor_test_case_runs_total (\d+)", line)
        if m:
            counts["tests"] = int(m.group(1))
    return counts


def verdicts(sub):
    return [t["verdict"] for t in sub["tests"]]


def test_fifty_tests_compile_once(client):
    tests = [
        {"name": f"t{i}", "stdin": f"{i} {i * 3}\n", "expected_output": f"{i * 4}\n"}
        for i in range(50)
    ]
    # The compile stage leaves a mark in the compiled workspace, which every test prints
    # on stderr; /metrics counts the stage runs (this module's tests run one at a time).
    before = stage_counts(client)
    body = submission(
        {
            "compile.sh": "echo compiled >> compiles.log\n" + COMPILE_SH,
            "run.sh": "cat compiles.log >&2\n./prog\n",
            "main.c": ADD_C,
        },
        tests=tests,
    )
    sub = client.run(body)
    assert sub["result"] == "ACCEPTED", sub
    assert sub["compile"]["status"] == "OK", sub["compile"]
    assert len(sub["tests"]) == 50
    for i, t in enumerate(sub["tests"]):
        assert t["name"] == f"t{i}"
        assert t["verdict"] == "ACCEPTED", t
        assert t["stdout"] == f"{i * 4}\n"
        assert t["stderr"] == "compiled\n", t  # compile.sh ran once, before every test
        assert t["status"] == "OK" and t["code"] == 0
        assert t["checker_message"] == ""
    # run holds the last test when every test passed
    assert sub["run"]["stdout"] == "196\n", sub["run"]
    after = stage_counts(client)
    assert after["compile"] - before["compile"] == 1, (before, after)
    assert after["run"] - before["run"] == 1, (before, after)  # the recorded run stage
    assert after["tests"] - before["tests"] == 50, (before, after)


def test_each_verdict_on_purpose(client):
    tests = [
        {"name": "accepted", "stdin": "ok", "expected_output": "fine\n"},
        {"name": "wrong", "stdin": "wrong", "expected_output": "fine\n"},
        {"name": "tle", "stdin": "spin", "limits": {"cpu_time_ms": 300, "wall_time_ms": 2000}},
        {"name": "mle", "stdin": "eat", "limits": {"memory_bytes": 64 << 20}},
        {"name": "ole", "stdin": "flood", "limits": {"output_bytes": 4096}},
        {"name": "re", "stdin": "crash"},
        {"name": "no-expected", "stdin": "wrong"},
    ]
    sub = client.run(c_submission(MODES_C, tests))
    assert verdicts(sub) == [
        "ACCEPTED",
        "WRONG_ANSWER",
        "TIME_LIMIT_EXCEEDED",
        "MEMORY_LIMIT_EXCEEDED",
        "OUTPUT_LIMIT_EXCEEDED",
        "RUNTIME_ERROR",
        "ACCEPTED",  # no expected output: the run alone decides
    ], sub["tests"]
    assert sub["result"] == "WRONG_ANSWER", sub
    assert sub["tests"][1]["checker_message"] == "line 1: expected 'fine', got 'nope'"
    assert sub["tests"][5]["code"] == 42
    # run holds the first failing test
    assert sub["run"]["stdout"] == "nope\n", sub["run"]


def test_stop_on_first_failure_skips_the_rest(client):
    tests = [
        {"stdin": "ok", "expected_output": "fine\n"},
        {"stdin": "crash"},
        {"stdin": "ok", "expected_output": "fine\n"},
    ]
    sub = client.run(c_submission(MODES_C, tests, stop_on_first_failure=True))
    assert verdicts(sub) == ["ACCEPTED", "RUNTIME_ERROR", "SKIPPED"], sub["tests"]
    assert [t["name"] for t in sub["tests"]] == ["1", "2", "3"]
    assert sub["tests"][2]["status"] == "SKIPPED"
    assert sub["result"] == "RUNTIME_ERROR"
    # without it, every test runs
    sub = client.run(c_submission(MODES_C, tests))
    assert verdicts(sub) == ["ACCEPTED", "RUNTIME_ERROR", "ACCEPTED"], sub["tests"]


def test_a_compile_error_skips_every_test(client):
    sub = client.run(c_submission("int main( {", [{"stdin": "1 2"}, {"stdin": "3 4"}]))
    assert sub["result"] == "COMPILE_ERROR", sub
    assert verdicts(sub) == ["SKIPPED", "SKIPPED"]


def test_tests_are_isolated(client):
    # Test 1 writes a file into its workspace and /tmp; test 2 must see neither.
    run_sh = (
        'if [ -e left.txt ] || [ -e /tmp/left.txt ]; then echo seen; else echo clean; fi\n'
        "echo x > left.txt; echo x > /tmp/left.txt\n"
    )
    tests = [{"expected_output": "clean\n"} for _ in range(3)]
    sub = client.run(submission({"run.sh": run_sh}, tests=tests, checker={"type": "exact"}))
    assert verdicts(sub) == ["ACCEPTED"] * 3, sub["tests"]


def test_args_and_binary_stdin_per_test(client):
    tests = [
        {"args": ["a", "b c"], "stdin_base64": b64(b"\x00\xff"), "expected_output_base64": b64(b"a|b c|2\n")},
        {"args": [], "stdin": "", "expected_output": "|0\n"},
    ]
    run_sh = 'printf "%s|" "$@"; wc -c | tr -d " \\n"; echo\n'
    sub = client.run(submission({"run.sh": run_sh}, tests=tests, checker={"type": "exact"}))
    assert verdicts(sub) == ["ACCEPTED", "ACCEPTED"], sub["tests"]


@pytest.mark.parametrize(
    "checker,expected,actual,verdict",
    [
        ({"type": "exact"}, "3\n", "3 \n", "WRONG_ANSWER"),
        ({"type": "lines"}, "3\n", "3  \n\n\n", "ACCEPTED"),
        ({"type": "lines"}, "3\n", " 3\n", "WRONG_ANSWER"),
        ({"type": "tokens"}, "1 2\n3", " 1\n2 3 \n", "ACCEPTED"),
        ({"type": "tokens"}, "1 2", "1 2 3", "WRONG_ANSWER"),
        ({"type": "float"}, "0.0", "-0.0", "ACCEPTED"),
        ({"type": "float", "abs": 1e-9, "rel": 0}, "1.0", "1.0000000009", "ACCEPTED"),
        ({"type": "float", "abs": 1e-9, "rel": 0}, "1.0", "1.000000002", "WRONG_ANSWER"),
        ({"type": "lines"}, "", "", "ACCEPTED"),
        ({"type": "exact"}, "", "x", "WRONG_ANSWER"),
    ],
)
def test_checker_edge_cases(client, checker, expected, actual, verdict):
    tests = [{"stdin": actual, "expected_output": expected}]
    sub = client.run(submission({"run.sh": "cat\n"}, tests=tests, checker=checker))
    assert verdicts(sub) == [verdict], sub["tests"]


CHECK_SH = r"""
# $1 input, $2 expected, $3 actual: accepts when actual = 2 x input
want=$(( $(cat "$1") * 2 ))
got=$(cat "$3")
if [ "$got" = "$want" ]; then echo "ok $got"; exit 0; fi
if [ "$got" = "boom" ]; then exit 5; fi
echo "expected $want, got $got"; exit 1
"""


def test_script_checker(client):
    tests = [
        {"stdin": "21", "expected_output": "unused"},
        {"stdin": "5", "expected_output": "unused"},
        {"stdin": "boom", "expected_output": "unused"},
    ]
    run_sh = 'read x; if [ "$x" = boom ]; then echo boom; elif [ "$x" = 5 ]; then echo 11; else echo $((x * 2)); fi\n'
    sub = client.run(
        submission(
            {"run.sh": run_sh, "check.sh": CHECK_SH},
            tests=tests,
            checker={"type": "script", "file": "check.sh"},
        )
    )
    assert verdicts(sub) == ["ACCEPTED", "WRONG_ANSWER", "CHECKER_ERROR"], sub["tests"]
    assert sub["tests"][0]["checker_message"] == "ok 42\n"
    assert sub["tests"][1]["checker_message"] == "expected 10, got 11\n"
    assert "exit code 5" in sub["tests"][2]["checker_message"], sub["tests"][2]
    assert sub["result"] == "WRONG_ANSWER"


def test_running_submission_shows_finished_tests(client):
    # The second test waits for a file the test itself never makes: it runs until its
    # wall limit, long enough to see the first test's verdict while RUNNING.
    tests = [
        {"stdin": "fast", "expected_output": "fast\n"},
        {"stdin": "slow", "limits": {"wall_time_ms": 3000}},
    ]
    run_sh = 'read x; if [ "$x" = slow ]; then sleep 30; fi; echo $x\n'
    sid = client.submit(submission({"run.sh": run_sh}, tests=tests))["id"]
    seen = client.poll_until(
        sid, lambda s: s["status"] == "RUNNING" and s["tests"][0]["verdict"] == "ACCEPTED"
    )
    assert seen["tests"][1]["verdict"] == "PENDING", seen["tests"]
    done = client.wait_finished(sid)
    assert verdicts(done) == ["ACCEPTED", "TIME_LIMIT_EXCEEDED"]


def test_cancel_during_tests(client):
    tests = [{"stdin": "x"}, {"stdin": "y"}]
    sid = client.submit(submission({"run.sh": "sleep 30\n"}, tests=tests))["id"]
    client.poll_until(sid, lambda s: s["status"] == "RUNNING")
    r = client.delete(f"/api/v1/submissions/{sid}")
    assert r.status == 200, r
    done = client.wait_finished(sid)
    assert done["result"] == "CANCELLED", done
    assert verdicts(done) == ["SKIPPED", "SKIPPED"], done["tests"]


def test_info_shows_max_tests(client):
    assert client.info()["max_tests"] == 1000


BAD_FIELDS = [
    ("tests", "no"),
    ("tests", []),
    ("tests", [1]),
    ("tests", [{"nme": "x"}]),
    ("tests", [{"name": ""}]),
    ("tests", [{"name": 5}]),
    ("tests", [{"name": "a"}, {"name": "a"}]),
    ("tests", [{"name": "2"}, {}]),
    ("tests", [{"stdin": 1}]),
    ("tests", [{"stdin": "a", "stdin_base64": "YQ=="}]),
    ("tests", [{"stdin_base64": "!!"}]),
    ("tests", [{"expected_output": "a", "expected_output_base64": "YQ=="}]),
    ("tests", [{"expected_output_base64": "a"}]),
    ("tests", [{"args": "a"}]),
    ("tests", [{"args": [1]}]),
    ("tests", [{"args": ["a\u0000"]}]),
    ("tests", [{"limits": {"cpu_time_ms": 0}}]),
    ("tests", [{"limits": {"cpu_time_ms": 10**12}}]),
    ("tests", [{"limits": {"nope": 1}}]),
    ("tests", [{"limits": 5}]),
    ("checker", "lines"),
    ("checker", {}),
    ("checker", {"type": "regex"}),
    ("checker", {"type": "lines", "abs": 1}),
    ("checker", {"type": "float", "abs": -1}),
    ("checker", {"type": "float", "rel": "x"}),
    ("checker", {"type": "script"}),
    ("checker", {"type": "script", "file": "missing.sh"}),
    ("checker", {"type": "script", "file": "run.sh"}),
    ("checker", {"type": "exact", "file": "run.sh"}),
    ("checker", {"type": "lines", "extra": 1}),
    ("stop_on_first_failure", "yes"),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS)
def test_malformed_fields_are_400_and_store_nothing(client, field, value):
    body = submission({"run.sh": "cat\n"})
    body["tests"] = [{"stdin": "1"}]
    body[field] = value
    before = client.stored_count()
    r = client.post("/api/v1/submissions", body)
    assert r.status == 400, (field, value, r)
    err = r.json()["error"]
    assert err["code"] == "invalid_request", err
    assert err["field"].startswith(field), err
    assert client.stored_count() == before


@pytest.mark.parametrize("field", ["stdin", "inputs", "args"])
def test_tests_with_top_level_input_is_400(client, field):
    body = submission({"run.sh": "cat\n"}, tests=[{"stdin": "1"}])
    body[field] = [] if field == "args" else "x"
    before = client.stored_count()
    r = client.post("/api/v1/submissions", body)
    assert r.status == 400, r
    assert r.json()["error"]["field"] == field
    assert client.stored_count() == before


@pytest.mark.parametrize("field,value", [("checker", {"type": "lines"}), ("stop_on_first_failure", True)])
def test_judge_fields_without_tests_are_400(client, field, value):
    body = submission({"run.sh": "cat\n"}, **{field: value})
    r = client.post("/api/v1/submissions", body)
    assert r.status == 400, r
    assert r.json()["error"]["field"] == field


def test_too_many_tests_is_400(make_server):
    srv = make_server(["--max-tests", "3"])
    c = srv.client
    assert c.info()["max_tests"] == 3
    body = submission({"run.sh": "cat\n"}, tests=[{}] * 4)
    r = c.post("/api/v1/submissions", body)
    assert r.status == 400, r
    assert "at most 3" in r.json()["error"]["message"]
    body["tests"] = [{}] * 3
    assert c.run(body)["result"] == "ACCEPTED"


# --- interactive problems ---------------------------------------------------------------

# The interactor: a secret from the test's input ($1); answers "lower"/"higher" to each
# guess, "correct" at the end; at most 20 guesses. Exit 0 accepts, 1 refuses.
GUESS_INTERACTOR = r"""
secret=$(cat "$1")
n=0
while read guess; do
  n=$((n + 1))
  if [ "$guess" = "$secret" ]; then echo correct; echo "found in $n" >&2; exit 0; fi
  if [ "$n" -ge 20 ]; then echo "too many guesses" >&2; exit 1; fi
  if [ "$guess" -gt "$secret" ]; then echo lower; else echo higher; fi
done
echo "no answer" >&2
exit 1
"""

# A binary search over 1..1000, reading the interactor's replies.
GUESS_PROGRAM = r"""
lo=1; hi=1000
while :; do
  mid=$(( (lo + hi) / 2 ))
  echo $mid
  read reply
  case $reply in
    correct) exit 0 ;;
    lower) hi=$((mid - 1)) ;;
    higher) lo=$((mid + 1)) ;;
  esac
done
"""


def interactive(program, tests, interactor=GUESS_INTERACTOR, **extra):
    return submission(
        {"run.sh": program, "interactor.sh": interactor},
        tests=tests,
        interactor={"file": "interactor.sh"},
        **extra,
    )


def test_interactive_guessing_game(client):
    tests = [{"name": f"s{v}", "stdin": str(v)} for v in (1, 500, 777, 1000)]
    sub = client.run(interactive(GUESS_PROGRAM, tests))
    assert sub["result"] == "ACCEPTED", sub
    assert verdicts(sub) == ["ACCEPTED"] * 4, sub["tests"]
    assert sub["tests"][1]["checker_message"] == "found in 1\n"  # 500 is the first guess
    # A program that guesses badly is refused by the interactor.
    sub = client.run(interactive("while :; do echo 1; read r; done\n", [{"stdin": "2"}]))
    assert verdicts(sub) == ["WRONG_ANSWER"], sub["tests"]
    assert sub["tests"][0]["checker_message"] == "too many guesses\n"


def test_interactive_deadlock_is_stopped_by_the_wall_limit(client):
    # Both sides wait to read: the program's wall limit ends it, never a hang.
    tests = [{"stdin": "5", "limits": {"wall_time_ms": 1000}}]
    sub = client.run(interactive("read x\n", tests, interactor='read x\n'))
    assert verdicts(sub) == ["TIME_LIMIT_EXCEEDED"], sub["tests"]
    assert sub["tests"][0]["status"] == "WALL_TIME_LIMIT_EXCEEDED"


def test_interactive_flood_is_stopped(client):
    # The program floods an interactor that reads one line and gives up: the program is
    # refused (its writes then fail), and the run ends at once.
    flood = "while :; do echo 1; done\n"
    quits = 'read x; echo "one is enough" >&2; exit 1\n'
    sub = client.run(interactive(flood, [{"stdin": "5", "limits": {"wall_time_ms": 5000}}], interactor=quits))
    assert verdicts(sub) == ["WRONG_ANSWER"], sub["tests"]
    assert sub["tests"][0]["wall_time_ms"] < 4000, sub["tests"][0]
    # An interactor that never reads: the flood fills the pipe and the wall limit stops it.
    sub = client.run(
        interactive(flood, [{"stdin": "5", "limits": {"wall_time_ms": 1000}}], interactor="sleep 30\n")
    )
    assert verdicts(sub) == ["TIME_LIMIT_EXCEEDED"], sub["tests"]


def test_interactor_error_is_checker_error(client):
    sub = client.run(interactive("read x\n", [{"stdin": "5"}], interactor="echo hi; exit 3\n"))
    assert verdicts(sub) == ["CHECKER_ERROR"], sub["tests"]
    assert "exit code 3" in sub["tests"][0]["checker_message"]
    assert sub["result"] == "CHECKER_ERROR"


@pytest.mark.parametrize(
    "value,field",
    [
        ("interactor.sh", "interactor"),
        ({}, "interactor.file"),
        ({"file": "missing.sh"}, "interactor.file"),
        ({"file": "run.sh"}, "interactor.file"),
        ({"file": 3}, "interactor.file"),
        ({"file": "interactor.sh", "x": 1}, "interactor.x"),
    ],
)
def test_malformed_interactor_is_400(client, value, field):
    body = interactive("cat\n", [{"stdin": "1"}])
    body["interactor"] = value
    before = client.stored_count()
    r = client.post("/api/v1/submissions", body)
    assert r.status == 400, r
    assert r.json()["error"]["field"] == field, r.json()
    assert client.stored_count() == before


def test_interactor_with_checker_or_without_tests_is_400(client):
    body = interactive("cat\n", [{"stdin": "1"}], checker={"type": "exact"})
    r = client.post("/api/v1/submissions", body)
    assert r.status == 400 and r.json()["error"]["field"] == "checker", r
    body = submission({"run.sh": "cat\n", "i.sh": ""}, interactor={"file": "i.sh"})
    r = client.post("/api/v1/submissions", body)
    assert r.status == 400 and r.json()["error"]["field"] == "interactor", r
