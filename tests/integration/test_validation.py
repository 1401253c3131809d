"""Malformed submissions are refused with 400/413/415, the error shape, and nothing stored.

SPEC §2. Each case is a body a careless or hostile client could send. For each, the
reply's status, the error shape {"error": {"code", "message", "field"}}, a field that
names the culprit, and the number of stored submissions are checked.
"""

import json

import pytest

from helpers import assert_error_shape, submission

RUN = {"name": "run.sh", "content": "echo hi"}


def body_with(**top):
    body = {"files": [RUN]}
    body.update(top)
    return body


def files_body(*files):
    return {"files": [RUN, *files]}


def limits_body(limits):
    return {"files": [RUN], "limits": limits}


def run_limit(name, value):
    return limits_body({"run": {name: value}})


def deep_name(total):
    """A relative name of exactly `total` (> 4019) bytes, each component under 256."""
    name = "/".join(["d" * 200] * 20)  # 4019 bytes
    name += "/" + "e" * (total - len(name) - 1)
    assert len(name) == total and max(len(c) for c in name.split("/")) < 256
    return name


# Field checks: None means "a body-level error" (field null or empty); a string means the
# field must start with it; a tuple accepts any of its prefixes.
BODY = None

# (id, body: dict | bytes | callable(info) -> dict | bytes, field)
CASES = [
    # The body itself.
    ("not_json", b"{files: [", BODY),
    ("truncated_json", b'{"files": [{"name": "run.sh", "content": "x"}', BODY),
    ("empty_body", b"", BODY),
    ("invalid_utf8_json", b'{"files": [{"name": "run.sh", "content": "\xff"}]}', BODY),
    ("array_body", b"[]", BODY),
    ("null_body", b"null", BODY),
    ("number_body", b"42", BODY),
    ("string_body", b'"files"', BODY),
    ("trailing_garbage", b'{"files": [{"name": "run.sh", "content": "x"}]} xx', BODY),
    # Top-level fields.
    ("unknown_top_level_field", body_with(language="python"), "language"),
    ("no_files_field", {"stdin": "x"}, "files"),
    ("files_not_array", {"files": {"run.sh": "echo"}}, "files"),
    ("files_null", {"files": None}, "files"),
    ("files_empty", {"files": []}, "files"),
    ("too_many_files", lambda info: {
        "files": [RUN] + [{"name": f"f{i}", "content": ""} for i in range(info["max_files"])]
    }, "files"),
    ("no_run_sh", {"files": [{"name": "main.py", "content": "print(1)"}]}, "files"),
    ("run_sh_only_nested", {"files": [{"name": "sub/run.sh", "content": "echo"}]}, "files"),
    ("run_sh_case_differs", {"files": [{"name": "RUN.SH", "content": "echo"}]}, "files"),
    # One file.
    ("file_not_object", files_body("main.py"), "files[1]"),
    ("file_unknown_field", files_body({"name": "a", "content": "", "mode": 755}), "files[1]"),
    ("file_missing_name", files_body({"content": "x"}), "files[1]"),
    ("file_missing_content", files_body({"name": "a.txt"}), "files[1]"),
    ("name_not_string", files_body({"name": 7, "content": ""}), "files[1].name"),
    ("content_not_string", files_body({"name": "a", "content": None}), "files[1].content"),
    ("content_is_array", files_body({"name": "a", "content": ["x"]}), "files[1].content"),
    ("encoding_not_string", files_body({"name": "a", "content": "", "encoding": 1}),
     "files[1].encoding"),
    ("unknown_encoding", files_body({"name": "a", "content": "", "encoding": "utf16"}),
     "files[1].encoding"),
    ("bad_base64_chars", files_body({"name": "a", "content": "!!!!", "encoding": "base64"}),
     "files[1]"),
    ("bad_base64_padding", files_body({"name": "a", "content": "AAE", "encoding": "base64"}),
     "files[1]"),
    ("hex_odd_length", files_body({"name": "a", "content": "abc", "encoding": "hex"}),
     "files[1]"),
    ("hex_not_hex", files_body({"name": "a", "content": "zz", "encoding": "hex"}), "files[1]"),
    # Names.
    ("name_empty", files_body({"name": "", "content": ""}), "files[1].name"),
    ("name_absolute", files_body({"name": "/etc/passwd", "content": ""}), "files[1].name"),
    ("name_dotdot", files_body({"name": "..", "content": ""}), "files[1].name"),
    ("name_dotdot_prefix", files_body({"name": "../escape", "content": ""}), "files[1].name"),
    ("name_dotdot_inside", files_body({"name": "a/../../b", "content": ""}), "files[1].name"),
    ("name_dotdot_last", files_body({"name": "a/..", "content": ""}), "files[1].name"),
    ("name_dot", files_body({"name": ".", "content": ""}), "files[1].name"),
    ("name_dot_component", files_body({"name": "./x", "content": ""}), "files[1].name"),
    ("name_dot_inside", files_body({"name": "a/./b", "content": ""}), "files[1].name"),
    ("name_nul", files_body({"name": "a\x00b", "content": ""}), "files[1].name"),
    ("name_backslash", files_body({"name": "a\\b", "content": ""}), "files[1].name"),
    ("name_backslash_dotdot", files_body({"name": "..\\x", "content": ""}), "files[1].name"),
    ("name_empty_component", files_body({"name": "a//b", "content": ""}), "files[1].name"),
    ("name_trailing_slash", files_body({"name": "dir/", "content": ""}), "files[1].name"),
    ("name_component_256", files_body({"name": "c" * 256, "content": ""}), "files[1].name"),
    ("name_total_4096", files_body({"name": deep_name(4096), "content": ""}), "files[1].name"),
    ("name_duplicate", files_body({"name": "a.txt", "content": "1"},
                                  {"name": "a.txt", "content": "2"}), "files"),
    ("name_duplicate_run_sh", files_body({"name": "run.sh", "content": "echo 2"}), "files"),
    # stdin, inputs, args, env.
    ("stdin_not_string", body_with(stdin=5), "stdin"),
    ("stdin_array", body_with(stdin=["a"]), "stdin"),
    ("inputs_not_string", body_with(inputs={"a": 1}), "inputs"),
    ("stdin_and_inputs", body_with(stdin="a", inputs="b"), ("stdin", "inputs")),
    ("args_not_array", body_with(args="a b"), "args"),
    ("arg_not_string", body_with(args=["a", 1]), "args"),
    ("arg_null", body_with(args=[None]), "args"),
    ("arg_with_nul", body_with(args=["ok", "a\x00b"]), "args"),
    ("env_not_object", body_with(env=["A=1"]), "env"),
    ("env_value_not_string", body_with(env={"A": 1}), "env"),
    ("env_key_empty", body_with(env={"": "x"}), "env"),
    ("env_key_with_equals", body_with(env={"A=B": "x"}), "env"),
    ("env_key_with_nul", body_with(env={"A\x00B": "x"}), "env"),
    ("env_value_with_nul", body_with(env={"A": "x\x00y"}), "env"),
    # Limits.
    ("limits_not_object", body_with(limits=[1]), "limits"),
    ("limits_stage_not_object", limits_body({"run": 5}), "limits"),
    ("limits_unknown_stage", limits_body({"execute": {"wall_time_ms": 100}}), "limits"),
    ("limits_build_stage", limits_body({"build": {"wall_time_ms": 100}}), "limits"),
    ("limits_unknown_name", run_limit("time_ms", 100), "limits.run"),
    ("limit_zero", run_limit("wall_time_ms", 0), "limits.run"),
    ("limit_negative", run_limit("memory_bytes", -1), "limits.run"),
    ("limit_float", run_limit("cpu_time_ms", 1.5), "limits.run"),
    ("limit_string", run_limit("processes", "10"), "limits.run"),
    ("limit_bool", run_limit("output_bytes", True), "limits.run"),
    ("limit_huge", run_limit("file_size_bytes", 10**30), "limits.run"),
    ("limit_above_max_run", lambda info: run_limit(
        "wall_time_ms", info["limits"]["run"]["wall_time_ms"]["max"] + 1), "limits.run"),
    ("limit_above_max_compile", lambda info: limits_body({"compile": {
        "memory_bytes": info["limits"]["compile"]["memory_bytes"]["max"] + 1}}),
     "limits.compile"),
    ("limit_above_max_environment", lambda info: limits_body({"environment": {
        "cpu_time_ms": info["limits"]["environment"]["cpu_time_ms"]["max"] + 1}}),
     "limits.environment"),
]


def field_ok(expected):
    def check(field):
        if expected is BODY:
            return field in (None, "")
        if field is None:
            return False
        prefixes = expected if isinstance(expected, tuple) else (expected,)
        return any(field.startswith(p) for p in prefixes)

    return check


def test_there_are_enough_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id,body,field", CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_refused_and_not_stored(client, case_id, body, field):
    if callable(body):
        body = body(client.info())
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    before = client.stored_count()
    r = client.post(
        "/api/v1/submissions", body, headers={"Content-Type": "application/json"}
    )
    # SPEC §2's example error is a field's: code "invalid_request". A body that is not
    # a JSON object may name its own code (e.g. "invalid_json").
    code = None if field is BODY else "invalid_request"
    assert_error_shape(r, 400, code=code, field_check=field_ok(field))
    assert client.stored_count() == before, f"{case_id}: a refused submission was stored"


def test_the_count_does_move_for_a_good_request(client):
    """Proves the `stored_count` checks above can fail."""
    before = client.stored_count()
    sid = client.submit(submission({"run.sh": "echo hi"}))["id"]
    assert client.stored_count() == before + 1
    client.wait_finished(sid)


def send_big_body(client, total):
    """Sends a valid-looking JSON body of `total` bytes; returns the reply.

    The server may answer 413 and close before reading it all: a send error is
    tolerated, but there must be a reply."""
    import http.client

    prefix = b'{"files": [{"name": "run.sh", "content": "true"}], "stdin": "'
    suffix = b'"}'
    fill = total - len(prefix) - len(suffix)
    conn = http.client.HTTPConnection(client.host, client.port, timeout=30)
    try:
        conn.putrequest("POST", "/api/v1/submissions")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(total))
        if client.token:
            conn.putheader("Authorization", f"Bearer {client.token}")
        conn.endheaders()
        chunk = b"a" * (1 << 20)
        try:
            conn.send(prefix)
            left = fill
            while left > 0:
                conn.send(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
            conn.send(suffix)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = conn.getresponse()
        from helpers import Response

        return Response(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def test_body_over_the_limit_is_413(client):
    limit = client.info()["max_body_bytes"]
    before = client.stored_count()
    r = send_big_body(client, limit + 1)
    assert_error_shape(r, 413)
    assert client.stored_count() == before


def test_body_just_under_the_limit_is_accepted(client):
    limit = client.info()["max_body_bytes"]
    r = send_big_body(client, limit - 1024)
    assert r.status == 202, r
    sub = client.wait_finished(r.json()["id"])
    assert sub["result"] == "OK", sub


def test_text_plain_is_415(client):
    before = client.stored_count()
    r = client.post(
        "/api/v1/submissions",
        json.dumps(submission({"run.sh": "echo hi"})).encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert_error_shape(r, 415)
    assert client.stored_count() == before


def test_missing_content_type_is_415(client):
    before = client.stored_count()
    r = client.post(
        "/api/v1/submissions",
        json.dumps(submission({"run.sh": "echo hi"})).encode(),
        headers={"Content-Type": None},
    )
    assert_error_shape(r, 415)
    assert client.stored_count() == before


def test_name_of_exactly_4095_bytes_and_255_byte_components_is_accepted(client):
    name = deep_name(4095)
    sub = client.run(
        submission({"run.sh": 'cat "$1"', name: "deepest\n"}, args=[name])
    )
    assert sub["result"] == "OK", sub
    assert sub["run"]["stdout"] == "deepest\n", sub["run"]


def test_exactly_max_files_is_accepted(client):
    n = client.info()["max_files"]
    files = {"run.sh": "ls f | wc -l"}
    files.update({f"f/{i}": "" for i in range(n - 1)})
    sub = client.run(submission(files))
    assert sub["result"] == "OK", sub
    assert sub["run"]["stdout"].strip() == str(n - 1), sub["run"]
